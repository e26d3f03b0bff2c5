//! `keygen` and `trust`.

use std::path::Path;

use super::output;
use super::{KeyRole, TrustAction};
use crate::error::Result;
use crate::keys::{
    self, ApplianceSecret, Kind, Passphrase, PassphraseSource, PublisherSecret, TrustStore,
    key_id_hex, write_key_file,
};

pub(super) fn keygen(
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
        let src = match passphrase_file {
            Some(f) => PassphraseSource::File(f.to_owned()),
            None => PassphraseSource::Prompt,
        };
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

pub(super) fn trust(dir: &Path, action: &TrustAction) -> Result<()> {
    let mut store = TrustStore::load(dir)?;
    match action {
        TrustAction::Add { file } => {
            let (id, new) = store.add(file)?;
            if new {
                output::info(format!("trusted publisher key {}", key_id_hex(&id)));
            } else {
                output::info(format!(
                    "publisher key {} was already trusted",
                    key_id_hex(&id)
                ));
            }
        }
        TrustAction::List { json } => {
            if *json {
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
        }
        TrustAction::Remove { key_id } => {
            let id = keys::parse_key_id(key_id).ok_or_else(|| {
                crate::Error::Usage(format!("{key_id:?} is not a key id (16 hex digits)"))
            })?;
            store.remove(&id)?;
            output::info(format!("removed publisher key {}", key_id_hex(&id)));
        }
        TrustAction::Policy { threshold } => {
            if *threshold == 0 {
                return Err(crate::Error::Usage("--threshold must be at least 1".into()));
            }
            store.set_threshold(*threshold)?;
            output::info(format!(
                "bundles now need {threshold} valid trusted signature(s)"
            ));
        }
    }
    Ok(())
}
