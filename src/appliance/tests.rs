//! The application layer end to end on a real (tiny) sealed model: keys, trust store, an
//! installed bundle, the catalog and the load, with the real crypto and the real engine.

use std::path::Path;

use super::load::{Key, LoadOpts};
use super::*;
use crate::audit::Source;
use crate::bundle::{self, ArtifactInput, RecipientSpec, Role, SealParams};
use crate::engine::testing::{TinyOpts, tiny_gguf};
use crate::keys::{Kind, PublisherSecret, write_key_file};

/// A root with an unprotected appliance key, one trusted publisher and `name` version 1
/// installed (a tiny llama GGUF sealed to the appliance).
fn root_with_model(dir: &Path, name: &str) -> (Root, ApplianceSecret) {
    let root = Root::new(dir);
    std::fs::create_dir_all(root.trusted()).unwrap();
    std::fs::create_dir_all(root.models()).unwrap();
    let appliance = ApplianceSecret::generate().unwrap();
    write_key_file(
        &root.appliance_key(),
        Kind::ApplianceSecret,
        "test",
        None,
        appliance.seed().expose(),
        None,
    )
    .unwrap();
    let publisher = PublisherSecret::generate().unwrap();
    write_key_file(
        &root.trusted().join("publisher.pub"),
        Kind::PublisherPublic,
        "test",
        None,
        &publisher.public().pk.to_bytes(),
        None,
    )
    .unwrap();
    let gguf = tiny_gguf(&TinyOpts::default());
    let parts = bundle::seal(
        &SealParams {
            name: name.into(),
            version: 1,
            created: 1,
            expires: None,
            marking: Some("UNCLASSIFIED".into()),
            architecture: None,
            quantization: None,
            targets: vec![appliance.key_id()],
            aibom: None,
        },
        &[ArtifactInput {
            role: Role::Gguf,
            plaintext: &gguf,
        }],
        &[RecipientSpec::Kw {
            key_id: appliance.key_id(),
            kek: appliance.kek(),
        }],
        &[(publisher.key_id(), publisher.signing_key())],
        &|_| {},
    )
    .unwrap();
    std::fs::write(root.models().join(format!("{name}-v1.rpk")), parts.concat()).unwrap();
    (root, appliance)
}

fn opts() -> LoadOpts {
    LoadOpts {
        require_mlock: false,
        device: Device::Cpu,
        backend: crate::engine::Backend::Auto,
        source: Source::Ask,
    }
}

#[test]
fn a_model_is_verified_once_from_catalog_to_engine() {
    let d = tempfile::tempdir().unwrap();
    let (root, appliance) = root_with_model(d.path(), "m");
    bundle::VERIFICATIONS.with(|c| c.set(0));
    let catalog = root.catalog().unwrap();
    let model = catalog.resolve(Some("m@1")).unwrap();
    assert_eq!(bundle::VERIFICATIONS.with(std::cell::Cell::get), 1);
    let loaded = root
        .load_model(model, &opts(), Key::Held(&appliance), &|_, _| {})
        .unwrap();
    assert_eq!(
        bundle::VERIFICATIONS.with(std::cell::Cell::get),
        1,
        "loading verified the bundle again"
    );
    assert_eq!(
        (loaded.report.model.as_str(), loaded.report.version),
        ("m", 1)
    );
    assert_eq!(loaded.report.marking.as_deref(), Some("UNCLASSIFIED"));
    // The load is recorded, with its source, under the appliance's audit key.
    let log = loaded.auditor.verify().unwrap();
    let rec = log.records.last().unwrap();
    assert_eq!(rec.event, "model_load");
    assert_eq!(rec.details["source"], "ask");
    assert_eq!(rec.details["model"], "m");
}

#[test]
fn the_loaded_bytes_are_the_verified_descriptors_even_if_the_path_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    let (root, appliance) = root_with_model(d.path(), "m");
    let catalog = root.catalog().unwrap();
    let model = catalog.resolve(None).unwrap();
    // The file at the path is replaced after the catalog verified it: the handle still reads
    // the verified file (its descriptor), not whatever the path names now.
    let path = root.models().join("m-v1.rpk");
    std::fs::rename(&path, d.path().join("moved.rpk")).unwrap();
    std::fs::write(&path, b"not a bundle").unwrap();
    let loaded = root
        .load_model(model, &opts(), Key::Held(&appliance), &|_, _| {})
        .unwrap();
    assert_eq!(loaded.report.model, "m");
}

#[test]
fn a_failed_load_is_recorded_as_load_failed() {
    let d = tempfile::tempdir().unwrap();
    let (root, _) = root_with_model(d.path(), "m");
    let other = ApplianceSecret::generate().unwrap();
    let catalog = root.catalog().unwrap();
    let model = catalog.resolve(None).unwrap();
    // Another appliance's key: the bundle is not sealed for it.
    let e = root
        .load_model(model, &opts(), Key::Held(&other), &|_, _| {})
        .unwrap_err();
    assert_eq!(e.exit_code(), crate::error::EXIT_POLICY, "{e}");
    let log = root.auditor(&other).verify().unwrap();
    let rec = log.records.last().unwrap();
    assert_eq!(rec.event, "load_failed");
    assert_eq!(rec.details["class"], "policy");
}

#[test]
fn export_dir_never_overlaps_the_root() {
    let d = tempfile::tempdir().unwrap();
    let root = Root::new(d.path().join("root"));
    let mut config = Config::default();
    config.tui.export_dir = Some(d.path().join("root").join("keys"));
    assert_eq!(root.export_dir(&config), None);
    config.tui.export_dir = Some(d.path().to_owned());
    assert_eq!(root.export_dir(&config), None, "a parent of the root");
    config.tui.export_dir = Some(d.path().join("exports"));
    assert_eq!(root.export_dir(&config), None, "does not exist");
    std::fs::create_dir_all(d.path().join("exports")).unwrap();
    let real = std::fs::canonicalize(d.path()).unwrap();
    assert_eq!(root.export_dir(&config), Some(real.join("exports")));
}

/// Issue 18: the overlap check compared paths as text, so an export directory that is a symlink
/// to the root, or a root named through a symlink, let exports land among the root's files.
#[test]
fn issue_18_symlinks_do_not_get_an_export_into_the_root() {
    let d = tempfile::tempdir().unwrap();
    let real_root = d.path().join("root");
    std::fs::create_dir_all(real_root.join("keys/trusted")).unwrap();
    let mut config = Config::default();
    // An export directory that is a symlink into the root.
    let link = d.path().join("exports");
    std::os::unix::fs::symlink(real_root.join("keys/trusted"), &link).unwrap();
    config.tui.export_dir = Some(link);
    assert_eq!(Root::new(&real_root).export_dir(&config), None);
    // The root named through a symlink, the export directory its real path.
    let root_link = d.path().join("root-link");
    std::os::unix::fs::symlink(&real_root, &root_link).unwrap();
    config.tui.export_dir = Some(real_root);
    assert_eq!(Root::new(&root_link).export_dir(&config), None);
}

#[test]
fn random_seeds_differ() {
    assert_ne!(random_seed().unwrap(), random_seed().unwrap());
}
