//! `audit verify` and `audit show`: the tamper-evident audit log, checked record by record.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::args::JsonArg;
use super::output;
use crate::appliance::Root;
use crate::audit;
use crate::error::Result;
use crate::keys::PassphraseSource;
use crate::secure::sandbox::FsPolicy;

/// `audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Audit subcommand.
    #[command(subcommand)]
    action: AuditAction,
    /// Passphrase file for a protected appliance key.
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
}

/// Audit log actions.
#[derive(Debug, Subcommand)]
pub(super) enum AuditAction {
    /// Verify every record (MAC, hash chain, head); names the first bad record.
    Verify {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Print the records (after verifying them).
    Show {
        /// Only this event (e.g. query, import_accepted).
        #[arg(long)]
        event: Option<String>,
        /// Only records at or after this time: an RFC 3339 date or time (2026-11-30,
        /// 2026-11-30T09:00:00Z) or an age (90m, 24h, 7d).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
}

impl AuditArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root).with_read(self.passphrase_file.iter().cloned())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        let pass = super::args::source(self.passphrase_file.as_deref());
        match &self.action {
            AuditAction::Verify { json } => verify(root, &pass, json.json),
            AuditAction::Show { event, since, json } => {
                show(root, &pass, event.as_deref(), since.as_deref(), json.json)
            }
        }
    }
}

fn verify(root: &Root, pass: &PassphraseSource, json_out: bool) -> Result<()> {
    let c = root.auditor(&root.unlock(pass)?).verify()?;
    if json_out {
        output::json(&json!({
            "ok": true,
            "records": c.records.len(),
            "pending_records": c.pending,
            "interrupted_write_bytes": c.fragment,
        }));
    } else {
        output::info(format!(
            "audit log intact: {} record(s), hash chain, MACs and head verified",
            c.records.len()
        ));
        if c.pending > 0 {
            output::info(format!(
                "note: the last {} record(s) verify but are not yet under the head (an append was interrupted); the next append commits them",
                c.pending
            ));
        }
        if c.fragment > 0 {
            output::info(format!(
                "note: {} byte(s) of an interrupted write follow the last record; the next append discards them and records that it did",
                c.fragment
            ));
        }
    }
    Ok(())
}

/// `--since`: an RFC 3339 date or time, or an age such as `24h` counted back from now.
fn parse_since(s: &str) -> Result<std::time::SystemTime> {
    if let Ok(age) = humantime::parse_duration(s) {
        return std::time::SystemTime::now()
            .checked_sub(age)
            .ok_or_else(|| crate::Error::Usage(format!("--since {s}: too far back")));
    }
    crate::appliance::clock::parse_time(s).ok_or_else(|| {
        crate::Error::Usage(format!(
            "--since {s}: expected a date (2026-11-30), a time (2026-11-30T09:00:00Z) or an age (24h, 7d)"
        ))
    })
}

fn show(
    root: &Root,
    pass: &PassphraseSource,
    event: Option<&str>,
    since: Option<&str>,
    json_out: bool,
) -> Result<()> {
    let since = since.map(parse_since).transpose()?;
    let c = root.auditor(&root.unlock(pass)?).verify()?;
    // From the first record dated at or after `since` to the end: a position in the log, not a
    // filter on each record's time, so no record written later can be left out (times never go
    // back in a log that verifies).
    let from = since.map_or(0, |t| audit::since_index(&c.records, t));
    let rows: Vec<&audit::Record> = c
        .records
        .iter()
        .skip(from)
        .filter(|r| event.is_none_or(|e| r.event == e))
        .collect();
    if json_out {
        output::json(&serde_json::to_value(&rows).unwrap_or_default());
    } else {
        for r in rows {
            output::line(format!(
                "{:>6} {} uid={} {:<16} {}",
                r.seq, r.time, r.uid, r.event, r.details
            ));
        }
    }
    Ok(())
}
