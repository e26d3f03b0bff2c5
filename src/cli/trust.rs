//! `trust add|list|remove|policy`: the publisher keys this appliance trusts.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::JsonArg;
use super::output;
use crate::appliance::Root;
use crate::appliance::admin::{TrustChange, TrustDone};
use crate::error::Result;
use crate::keys::{self, key_id_hex};
use crate::secure::sandbox::FsPolicy;

/// `trust` arguments.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Trust subcommand.
    #[command(subcommand)]
    action: TrustAction,
    /// Passphrase file for a protected appliance key (changes are audited under it).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
}

/// Trust store actions.
#[derive(Debug, Subcommand)]
pub(super) enum TrustAction {
    /// Trust a publisher public key (FILE.pub); re-adding the same key is harmless.
    Add {
        /// Publisher public key file.
        file: PathBuf,
    },
    /// List trusted publisher keys and the signature threshold.
    List {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Stop trusting a publisher key.
    Remove {
        /// Key id (16 hex digits, as shown by trust list).
        key_id: String,
    },
    /// Set how many distinct trusted signatures a bundle needs (k of n).
    Policy {
        /// The threshold k (at least 1).
        #[arg(long)]
        threshold: usize,
    },
}

impl TrustArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root)
            .write(root.trusted())
            .with_read(self.passphrase_file.iter().cloned())
            .with_read(match &self.action {
                TrustAction::Add { file } => Some(file.clone()),
                _ => None,
            })
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        if let TrustAction::List { json } = &self.action {
            return list(root, json.json);
        }
        // Unlock the audit key first: a change that cannot be audited is not made.
        let audited = root.auditor_if_any(&super::args::source(self.passphrase_file.as_deref()))?;
        let change = match &self.action {
            TrustAction::List { .. } => return Ok(()),
            TrustAction::Add { file } => TrustChange::Add(file.clone()),
            TrustAction::Remove { key_id } => {
                TrustChange::Remove(keys::parse_key_id(key_id).ok_or_else(|| {
                    crate::Error::Usage(format!("{key_id:?} is not a key id (16 hex digits)"))
                })?)
            }
            TrustAction::Policy { threshold } => TrustChange::Policy(*threshold),
        };
        let done = root.change_trust(&change)?;
        output::info(match done {
            TrustDone::Added { id, new: true } => {
                format!("trusted publisher key {}", key_id_hex(&id))
            }
            TrustDone::Added { id, new: false } => {
                format!("publisher key {} was already trusted", key_id_hex(&id))
            }
            TrustDone::Removed(id) => format!("removed publisher key {}", key_id_hex(&id)),
            TrustDone::Policy(k) => format!("bundles now need {k} valid trusted signature(s)"),
        });
        if let Some((_, auditor)) = audited {
            auditor.record(&done.event())?;
        }
        Ok(())
    }
}

fn list(root: &Root, json: bool) -> Result<()> {
    let store = root.trust()?;
    if json {
        let keys: Vec<_> = store
            .keys
            .iter()
            .map(|(k, label)| serde_json::json!({"key_id": key_id_hex(&k.key_id), "label": label}))
            .collect();
        output::json(&serde_json::json!({"threshold": store.threshold, "keys": keys}));
    } else {
        output::line(format!(
            "threshold: {} of {} trusted publisher key(s)",
            store.threshold,
            store.keys.len()
        ));
        for (k, label) in &store.keys {
            output::line(format!("{}  {label}", key_id_hex(&k.key_id)));
        }
    }
    Ok(())
}
