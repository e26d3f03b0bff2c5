//! `audit verify` and `audit show`, and the helper every command uses to record an event.

use std::path::Path;

use serde_json::json;

use super::{Cli, output};
use crate::audit;
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource};

/// Appends an event to ROOT/audit under the appliance's audit key. Failing to record is an
/// error: nothing is done unaudited.
pub(crate) fn record(
    root: &Path,
    appliance: &ApplianceSecret,
    event: &str,
    details: serde_json::Value,
) -> Result<()> {
    let key = appliance.derive_key(audit::AUDIT_KEY);
    Ok(audit::append(&root.join("audit"), &key, event, details)?)
}

/// The appliance key if this root has one (a publishing station has none), for auditing.
pub(crate) fn appliance_if_any(
    root: &Path,
    pass: &PassphraseSource,
) -> Result<Option<ApplianceSecret>> {
    if !root.join("keys").join("appliance.key").exists() {
        return Ok(None);
    }
    let appliance = super::load_appliance(root, pass)?;
    audit::ready(&root.join("audit"), &appliance.derive_key(audit::AUDIT_KEY))?;
    Ok(Some(appliance))
}

/// Records an event if this root has an appliance key (a publishing station has none).
pub(crate) fn record_if_appliance(
    root: &Path,
    pass: &PassphraseSource,
    event: &str,
    details: serde_json::Value,
) -> Result<()> {
    match appliance_if_any(root, pass)? {
        Some(a) => record(root, &a, event, details),
        None => Ok(()),
    }
}

pub(super) fn verify(cli: &Cli, pass: &PassphraseSource, json_out: bool) -> Result<()> {
    let appliance = super::load_appliance(&cli.root, pass)?;
    let key = appliance.derive_key(audit::AUDIT_KEY);
    let c = audit::verify(&cli.root.join("audit"), &key)?;
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
    super::parse_time(s).ok_or_else(|| {
        crate::Error::Usage(format!(
            "--since {s}: expected a date (2026-11-30), a time (2026-11-30T09:00:00Z) or an age (24h, 7d)"
        ))
    })
}

pub(super) fn show(
    cli: &Cli,
    pass: &PassphraseSource,
    event: Option<&str>,
    since: Option<&str>,
    json_out: bool,
) -> Result<()> {
    let since = since.map(parse_since).transpose()?;
    let appliance = super::load_appliance(&cli.root, pass)?;
    let key = appliance.derive_key(audit::AUDIT_KEY);
    let c = audit::verify(&cli.root.join("audit"), &key)?;
    let rows: Vec<&audit::Record> = c
        .records
        .iter()
        .filter(|r| event.is_none_or(|e| r.event == e))
        // Records were written by this appliance in RFC 3339; one that does not parse is kept
        // rather than hidden.
        .filter(|r| {
            since.is_none_or(|t| !matches!(humantime::parse_rfc3339(&r.time), Ok(rt) if rt < t))
        })
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
