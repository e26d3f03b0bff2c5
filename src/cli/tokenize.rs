//! `tokenize`: how an installed model's tokenizer splits a text (only the tokenizer is built).

use clap::Args;
use serde_json::json;

use super::args::{JsonArg, ModelArgs};
use super::ask::read_prompt;
use super::output;
use crate::appliance::Root;
use crate::appliance::load::{Device, Key, LoadOpts};
use crate::audit::Source;
use crate::engine;
use crate::error::Result;
use crate::secure::sandbox::FsPolicy;

/// `tokenize` arguments.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// The text, or `-` for stdin.
    text: String,
    /// Which model, and the appliance key's passphrase.
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    json: JsonArg,
}

impl TokenizeArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root).with_read(self.model.passphrase.files())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        tokenize(root, &self.model, &self.text, self.json.json)
    }
}

fn tokenize(root: &Root, m: &ModelArgs, text: &str, json_out: bool) -> Result<()> {
    let text = read_prompt(text)?;
    let catalog = root.catalog()?;
    let model = catalog.resolve(m.model.as_deref())?;
    let o = LoadOpts {
        require_mlock: false,
        device: Device::Cpu,
        backend: engine::Backend::Auto,
        source: Source::Tokenize,
    };
    let (tok, _) = root
        .load_tokenizer(model, &o, Key::Unlock(&m.passphrase.source()))?
        .built;
    let ids = tok.encode(&text)?;
    if json_out {
        let pieces: Vec<_> = ids
            .iter()
            .map(|&i| json!({"id": i, "piece": tok.piece(i)}))
            .collect();
        output::json(&json!({"count": ids.len(), "ids": ids, "tokens": pieces}));
    } else {
        for &i in &ids {
            output::line(format!("{i:>6}  {:?}", tok.piece(i)));
        }
        output::info(format!("{} tokens", ids.len()));
    }
    Ok(())
}
