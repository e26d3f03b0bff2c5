//! `keygen`: create an appliance or publisher key pair.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::output;
use crate::appliance::Root;
use crate::audit::Event;
use crate::error::Result;
use crate::keys::{
    self, ApplianceSecret, Kind, Passphrase, PublisherSecret, key_id_hex, write_key_file,
};
use crate::secure::sandbox::FsPolicy;

/// Which key pair `keygen` creates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum KeyRole {
    /// The appliance's decryption key (appliance.key, appliance.pub, appliance.kek).
    Appliance,
    /// A publisher's signing key (publisher.key, publisher.pub).
    Publisher,
}

/// `keygen` arguments.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Which key pair.
    role: KeyRole,
    /// Read the passphrase from the first line of this file.
    #[arg(long, conflicts_with = "no_passphrase")]
    passphrase_file: Option<PathBuf>,
    /// Store the secret unencrypted (mode 0600), for unattended appliances.
    #[arg(long)]
    no_passphrase: bool,
    /// A label stored with the key (shown by trust list and inspect).
    #[arg(long, default_value = "")]
    label: String,
    /// Write the files here instead of ROOT/keys.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

impl KeygenArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        match &self.out_dir {
            Some(d) => FsPolicy::default().write(d),
            // The keys in ROOT/keys, the record of an appliance key in ROOT/audit.
            None => super::appliance_policy(root).write(root.keys()),
        }
        .with_read(self.passphrase_file.iter().cloned())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        let dir = self.out_dir.clone().unwrap_or_else(|| root.keys());
        let id = keygen(
            self.role,
            self.passphrase_file.as_deref(),
            self.no_passphrase,
            &self.label,
            &dir,
        )?;
        // The appliance's own key generation is an appliance event; publisher keys are made
        // on publishing stations.
        if self.out_dir.is_none() && matches!(self.role, KeyRole::Appliance) {
            let pass = super::args::source(self.passphrase_file.as_deref());
            if let Some((_, auditor)) = root.auditor_if_any(&pass)? {
                auditor.record(&Event::Keygen {
                    role: "appliance",
                    key_id: key_id_hex(&id),
                })?;
            }
        }
        Ok(())
    }
}

fn keygen(
    role: KeyRole,
    passphrase_file: Option<&Path>,
    no_passphrase: bool,
    label: &str,
    dir: &Path,
) -> Result<[u8; 8]> {
    let (names, kind_names): (&[&str], &str) = match role {
        KeyRole::Appliance => (
            &["appliance.key", "appliance.pub", "appliance.kek"],
            "appliance",
        ),
        KeyRole::Publisher => (&["publisher.key", "publisher.pub"], "publisher"),
    };
    // Refuse before creating anything if any target file exists: keys are never overwritten.
    for n in names {
        let p = dir.join(n);
        if p.exists() {
            return Err(keys::Error::Exists { path: p }.into());
        }
    }
    let pass: Option<Passphrase> = if no_passphrase {
        None
    } else {
        let src = super::args::source(passphrase_file);
        Some(src.get(&dir.join(names.first().copied().unwrap_or_default()), true)?)
    };
    std::fs::create_dir_all(dir).map_err(|source| crate::Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let id = match role {
        KeyRole::Appliance => {
            let k = ApplianceSecret::generate().map_err(keys::Error::from)?;
            write_key_file(
                &dir.join("appliance.key"),
                Kind::ApplianceSecret,
                label,
                None,
                k.seed().expose(),
                pass.as_ref(),
            )?;
            write_key_file(
                &dir.join("appliance.pub"),
                Kind::AppliancePublic,
                label,
                None,
                k.public(),
                None,
            )?;
            write_key_file(
                &dir.join("appliance.kek"),
                Kind::ApplianceKek,
                label,
                Some(k.key_id()),
                k.kek().expose(),
                pass.as_ref(),
            )?;
            k.key_id()
        }
        KeyRole::Publisher => {
            let k = PublisherSecret::generate().map_err(keys::Error::from)?;
            write_key_file(
                &dir.join("publisher.key"),
                Kind::PublisherSecret,
                label,
                None,
                k.seed().expose(),
                pass.as_ref(),
            )?;
            write_key_file(
                &dir.join("publisher.pub"),
                Kind::PublisherPublic,
                label,
                None,
                &k.public().pk.to_bytes(),
                None,
            )?;
            k.key_id()
        }
    };
    let protection = if pass.is_some() {
        "passphrase-protected (Argon2id)"
    } else {
        "unprotected, mode 0600"
    };
    output::info(format!(
        "created {kind_names} key {} in {} ({}; secret {protection})",
        key_id_hex(&id),
        dir.display(),
        names.join(", ")
    ));
    Ok(id)
}
