//! `list`: the installed models whose signatures verify, and those that do not.

use clap::Args;
use serde_json::json;

use super::args::JsonArg;
use super::output;
use crate::appliance::Root;
use crate::appliance::clock::{expired, fmt_time, now};
use crate::error::Result;

/// `list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    json: JsonArg,
}

impl ListArgs {
    pub(super) fn run(&self, root: &Root) -> Result<()> {
        list(root, self.json.json)
    }
}

/// The licence an AI BOM states, `(not stated)`, or `(no AI BOM)`.
fn licence(aibom: Option<&str>) -> String {
    crate::aibom::parse(aibom).map_or_else(
        || "(no AI BOM)".to_owned(),
        |d| {
            crate::aibom::summary(&d)
                .license
                .unwrap_or_else(|| "(not stated)".into())
        },
    )
}

fn list(root: &Root, json_out: bool) -> Result<()> {
    let catalog = root.catalog()?;
    let (all, skipped) = (&catalog.models, &catalog.unverified);
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|i| {
            let m = i.manifest();
            json!({
                "name": m.name,
                "version": m.version,
                "bytes": i.bytes,
                "publishers": i.signers().iter().map(crate::keys::key_id_hex).collect::<Vec<_>>(),
                "architecture": m.architecture,
                "quantization": m.quantization,
                "marking": m.marking,
                "installed": i.installed_at.map(fmt_time),
                "created": fmt_time(m.created),
                "expires": m.expires.map(fmt_time),
                "expired": expired(m.expires),
                "file": i.path.display().to_string(),
                "model_card": crate::aibom::summary_json(m.aibom.as_deref()),
            })
        })
        .collect();
    if json_out {
        let skipped: Vec<_> = skipped
            .iter()
            .map(|(p, why)| json!({"file": p.display().to_string(), "reason": why}))
            .collect();
        output::json(&json!({"models": rows, "unverified": skipped}));
        return Ok(());
    }
    for i in all {
        let m = i.manifest();
        output::line(format!(
            "{:<24} v{:<6} {:>10} {:<8} {:<7} {:<20} {:<17} {:<20} expires {:<20} licence {}",
            m.name,
            m.version,
            indicatif::DecimalBytes(i.bytes).to_string(),
            m.architecture.as_deref().unwrap_or("-"),
            m.quantization.as_deref().unwrap_or("-"),
            m.marking.as_deref().unwrap_or("-"),
            i.signers()
                .iter()
                .map(crate::keys::key_id_hex)
                .collect::<Vec<_>>()
                .join(","),
            i.installed_at.map_or("-".to_owned(), fmt_time),
            m.expires.map_or("never".to_owned(), |e| if e <= now() {
                format!("{} (EXPIRED)", fmt_time(e))
            } else {
                fmt_time(e)
            }),
            licence(m.aibom.as_deref()),
        ));
    }
    for (p, why) in skipped {
        output::info(format!("unverified {}: {why}", p.display()));
    }
    if all.is_empty() {
        output::info("no model installed");
    }
    Ok(())
}
