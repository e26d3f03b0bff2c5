//! The operator's changes besides import: removing installed models and changing the trust
//! store. Each is recorded in the audit log when the root has an appliance key.

use std::path::PathBuf;

use super::Root;
use crate::audit::{Event, event::TrustAction};
use crate::error::Result;
use crate::keys::{PassphraseSource, key_id_hex};
use crate::secure::fs::sync_dir;
use crate::store::{Installed, ModelSpec};

/// A change to the trust store.
#[derive(Debug, Clone)]
pub enum TrustChange {
    /// Trust the publisher key in this `.pub` file.
    Add(PathBuf),
    /// Stop trusting this key id.
    Remove([u8; 8]),
    /// Require this many trusted signatures per bundle (at least 1).
    Policy(usize),
}

/// What a trust change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustDone {
    /// The key is trusted; `new` is false if it already was.
    Added {
        /// Its id.
        id: [u8; 8],
        /// Whether it was not trusted before.
        new: bool,
    },
    /// The key is no longer trusted.
    Removed([u8; 8]),
    /// The new threshold.
    Policy(usize),
}

impl TrustDone {
    /// The audit event for this change.
    pub fn event(&self) -> Event {
        let (action, key_id, threshold) = match *self {
            Self::Added { id, .. } => (TrustAction::Add, Some(key_id_hex(&id)), None),
            Self::Removed(id) => (TrustAction::Remove, Some(key_id_hex(&id)), None),
            Self::Policy(k) => (TrustAction::Policy, None, Some(k)),
        };
        Event::TrustChange {
            action,
            key_id,
            threshold,
        }
    }
}

impl Root {
    /// Applies `change` to the trust store (the caller has unlocked the auditor first, so a
    /// change that cannot be audited is not made).
    pub fn change_trust(&self, change: &TrustChange) -> Result<TrustDone> {
        let mut store = self.trust()?;
        Ok(match change {
            TrustChange::Add(file) => {
                let (id, new) = store.add(file)?;
                TrustDone::Added { id, new }
            }
            TrustChange::Remove(id) => {
                store.remove(id)?;
                TrustDone::Removed(*id)
            }
            TrustChange::Policy(k) => {
                if *k == 0 {
                    return Err(crate::Error::Usage("--threshold must be at least 1".into()));
                }
                // A threshold no bundle can meet would make every installed model unusable.
                let most = store.keys.len().min(crate::bundle::MAX_SIGNATURES);
                if *k > most {
                    return Err(crate::Error::Usage(format!(
                        "--threshold {k} is more than {most}: the {} trusted publisher key(s) \
                         (and a bundle carries at most {} signatures) could never meet it; \
                         trust more publishers first",
                        store.keys.len(),
                        crate::bundle::MAX_SIGNATURES
                    )));
                }
                store.set_threshold(*k)?;
                TrustDone::Policy(*k)
            }
        })
    }

    /// Removes every installed version `spec` (`NAME` or `NAME@VERSION`) names. Each removal is
    /// recorded before its file is deleted (when the root has an appliance key); `removed` is
    /// told of each. The rollback counter is kept.
    pub fn remove(
        &self,
        spec: &str,
        pass: &PassphraseSource,
        removed: &mut dyn FnMut(&Installed),
    ) -> Result<()> {
        let trust = self.trust()?;
        let spec = ModelSpec::parse(spec)?;
        let catalog = crate::store::Catalog::read(&self.models(), std::sync::Arc::new(trust))?;
        let doomed = catalog.matching(&spec)?;
        let auditor = self.auditor_if_any(pass)?;
        for i in doomed {
            if let Some((_, a)) = &auditor {
                a.record(&Event::Remove {
                    model: i.manifest().name.clone(),
                    version: i.manifest().version,
                })?;
            }
            std::fs::remove_file(&i.path).map_err(|source| crate::Error::Io {
                path: i.path.clone(),
                source,
            })?;
            removed(i);
        }
        let models = self.models();
        sync_dir(&models).map_err(|source| crate::Error::Io {
            path: models.clone(),
            source,
        })
    }
}
