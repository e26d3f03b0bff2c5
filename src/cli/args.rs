//! Flag groups shared by several commands, flattened into each command's arguments (the way
//! rage and ripgrep share theirs): the appliance key's passphrase, the model choice, sampling
//! and `--json`.

use std::path::PathBuf;

use clap::Args;

use crate::keys::PassphraseSource;

/// `--passphrase-file`: how to unlock a protected appliance key.
#[derive(Debug, Clone, Default, Args)]
pub struct PassphraseArg {
    /// Passphrase file for a protected appliance key.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

impl PassphraseArg {
    /// The file if given, else a prompt on the terminal.
    pub fn source(&self) -> PassphraseSource {
        source(self.passphrase_file.as_deref())
    }
    /// The file to grant read access to, if any.
    pub fn files(&self) -> Vec<PathBuf> {
        self.passphrase_file.iter().cloned().collect()
    }
}

/// The passphrase source for an optional `--passphrase-file`.
pub fn source(file: Option<&std::path::Path>) -> PassphraseSource {
    match file {
        Some(f) => PassphraseSource::File(f.to_owned()),
        None => PassphraseSource::Prompt,
    }
}

/// `--model` and the appliance key's passphrase: the commands that load an installed model.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// Installed model: NAME or NAME@VERSION (default: the only one installed).
    #[arg(long)]
    pub model: Option<String>,
    /// The appliance key's passphrase.
    #[command(flatten)]
    pub passphrase: PassphraseArg,
}

/// `--json`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonArg {
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Sampling flags of `ask`.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Maximum tokens to generate.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy, deterministic).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Drop tokens below min-p times the top probability.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repeat penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (same seed, same answer); default: random.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The engine's parameters, with `random` as the seed when none is given.
    pub fn params(&self, random: u64) -> crate::engine::SamplingParams {
        crate::engine::SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed.unwrap_or(random),
        }
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum DeviceArg {
    /// The CPU (the static, default build).
    #[default]
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`; GPU memory is not wiped).
    Cuda,
}

impl From<DeviceArg> for crate::appliance::Device {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Cpu => Self::Cpu,
            DeviceArg::Cuda => Self::Cuda,
        }
    }
}
