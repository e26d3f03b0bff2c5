//! `remove NAME[@VERSION]`: delete installed versions (recorded first; the rollback counter is
//! kept).

use clap::Args;

use super::args::PassphraseArg;
use super::output;
use crate::appliance::Root;
use crate::error::Result;
use crate::secure::sandbox::FsPolicy;

/// `remove` arguments.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// NAME or NAME@VERSION.
    spec: String,
    /// The appliance key's passphrase (the removal is audited under it).
    #[command(flatten)]
    passphrase: PassphraseArg,
}

impl RemoveArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root)
            .write(root.models())
            .with_read(self.passphrase.files())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        root.remove(&self.spec, &self.passphrase.source(), &mut |i| {
            let m = i.manifest();
            output::info(format!(
                "removed {} version {} (the rollback counter keeps {})",
                m.name, m.version, m.version
            ));
        })
    }
}
