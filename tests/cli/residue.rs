//! Proof of no residue: a synthetic model whose tensor data carry a fresh random 64-byte
//! canary P is sealed, imported and asked a question carrying a second canary Q. The probe
//! (examples/residue_probe.rs) scans its own memory after the query: no P, no Q, no file key,
//! while positive controls during the load find them (so the scan is known to work). No file
//! written during the test under the root, /tmp or /dev/shm holds P or Q.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::util::TestEnv;

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rempart::crypto::rng::fill(&mut b).unwrap();
    b
}

/// 16 random f32 in [-0.1, 0.1): 64 bytes that are still sensible weights.
fn weight_canary() -> Vec<u8> {
    random(64)
        .chunks(4)
        .flat_map(|c| {
            let u = u32::from_le_bytes(c.try_into().unwrap());
            let f = (f64::from(u) / f64::from(u32::MAX) - 0.5) as f32 * 0.2;
            f.to_le_bytes()
        })
        .collect()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Files under `dir` modified since `since`, recursively (unreadable entries are skipped:
/// they are other users' and cannot be ours).
pub fn new_files(dir: &Path, since: SystemTime, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            new_files(&e.path(), since, out);
        } else if m.is_file() && m.modified().is_ok_and(|t| t >= since) {
            out.push(e.path());
        }
    }
}

#[test]
fn weights_prompt_and_file_key_leave_no_residue_in_memory_or_on_disk() {
    let start = SystemTime::now() - std::time::Duration::from_secs(1);
    let env = TestEnv::new().with_keys();
    // The model: a tiny llama with a 512-token context, canary P in the embedding of token 100.
    let mut gguf = rempart::engine::testing::tiny_gguf(&rempart::engine::testing::TinyOpts {
        context: 512,
        ..Default::default()
    });
    let ct = rempart::engine::read_content(&gguf).unwrap();
    let embd = &ct.tensor_infos["token_embd.weight"];
    let at = usize::try_from(ct.tensor_data_offset + embd.offset).unwrap() + 100 * 32 * 4;
    let p = weight_canary();
    gguf[at..at + 64].copy_from_slice(&p);
    let model = env.path("canary.gguf");
    std::fs::write(&model, &gguf).unwrap();
    let b = env.seal(&model, "canary.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    // The prompt canary Q: 64 random capital letters.
    let q: Vec<u8> = random(64).iter().map(|b| b'A' + b % 26).collect();
    let (pm, qm) = (random(64), random(64));
    let probe = PathBuf::from(env!("CARGO_BIN_EXE_rempart"))
        .with_file_name("examples")
        .join("residue_probe");
    let out = Command::new(&probe)
        .arg(&env.root)
        .arg(hex::encode(xor(&p, &pm)))
        .arg(hex::encode(&pm))
        .arg(hex::encode(xor(&q, &qm)))
        .arg(hex::encode(&qm))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // Positive controls: the scan finds each secret while it is in use.
    assert!(v["control"]["file_key"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["control"]["weights_loaded"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["control"]["prompt"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(
        v["ask"],
        serde_json::json!({"Ok": null}),
        "the query ran: {v}"
    );
    // The arena is excluded from core dumps and forks, and locked (VmLck covers it).
    let flags = v["arena"]["vm_flags"].as_str().unwrap();
    assert!(flags.split(' ').any(|f| f == "dd"), "{v}");
    assert!(flags.split(' ').any(|f| f == "wf"), "{v}");
    assert_eq!(v["arena"]["locked"], true, "{v}");
    let lck_kb: u64 = v["vm_lck_loaded"]
        .as_str()
        .unwrap()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    assert!(lck_kb * 1024 >= v["arena"]["len"].as_u64().unwrap(), "{v}");
    // After the query, with the model unloaded: no residue at all.
    assert_eq!(v["after"]["weights"], 0, "{v}");
    assert_eq!(v["after"]["prompt"], 0, "{v}");
    assert_eq!(v["after"]["file_key"], 0, "{v}");
    // On disk: every file written since the start, except the plaintext model we wrote.
    let mut files = Vec::new();
    for d in [env.root.as_path(), Path::new("/tmp"), Path::new("/dev/shm")] {
        new_files(d, start, &mut files);
    }
    files.retain(|f| f != &model);
    assert!(
        files.iter().any(|f| f.starts_with(&env.root)),
        "root scanned"
    );
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        assert_eq!(count(&bytes, &p), 0, "weights canary in {}", f.display());
        assert_eq!(count(&bytes, &q), 0, "prompt canary in {}", f.display());
    }
}
