//! Test helper for tests/cli/residue.rs: the proof that decrypted weights, prompts and file keys
//! do not outlive their use in this process's memory.
//!
//! Usage: `residue_probe ROOT P_MASKED P_MASK Q_MASKED Q_MASK` (hex). P is the 64-byte canary
//! sealed into the installed model's tensor data, Q the 64-byte canary the prompt carries; each
//! arrives split in two random halves (canary = masked XOR mask) so that the canary itself is
//! never in this process until rempart puts it there. The probe:
//! 1. unwraps the installed bundle's file key K through the library (K is masked at once);
//! 2. positive controls: scans its own memory while K is held, and while the model is
//!    decrypted and built (also reading VmLck and the arena's smaps flags), and finds each;
//! 3. runs `rempart ask` in-process (`cli::run`, the binary's own code path) with a prompt
//!    containing Q, after a positive control that finds Q in the prompt;
//! 4. once everything is dropped, scans every readable mapping (/proc/self/maps and
//!    /proc/self/mem) again and prints the counts as JSON. The scan buffer is a separate
//!    mapping that the scan skips and that is wiped after every chunk.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "a test helper: its JSON report is the output, and it reads the kernel's /proc files"
)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use clap::Parser;
use rempart::secure::LockedBuf;

/// A canary known only as two halves: the scan compares `mem[i] ^ mask[i] == masked[i]`.
struct Needle {
    masked: Vec<u8>,
    mask: Vec<u8>,
}

impl Needle {
    fn from_hex(masked: &str, mask: &str) -> Self {
        Self {
            masked: hex::decode(masked).unwrap(),
            mask: hex::decode(mask).unwrap(),
        }
    }

    fn from_secret(secret: &[u8]) -> Self {
        let mut mask = vec![0u8; secret.len()];
        rempart::crypto::rng::fill(&mut mask).unwrap();
        let masked = secret.iter().zip(&mask).map(|(s, m)| s ^ m).collect();
        Self { masked, mask }
    }

    fn matches_at(&self, w: &[u8]) -> bool {
        w.len() >= self.mask.len()
            && w.iter()
                .zip(self.mask.iter().zip(&self.masked))
                .all(|(b, (m, x))| b ^ m == *x)
    }
}

const CHUNK: usize = 1 << 20;

/// Counts the occurrences of each needle in every readable mapping except `skip`.
fn scan(needles: &[&Needle], buf: &mut LockedBuf) -> Vec<usize> {
    let skip = buf.as_slice().as_ptr() as u64;
    let skip_end = skip + buf.len() as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mem = std::fs::File::open("/proc/self/mem").unwrap();
    let overlap = needles.iter().map(|n| n.mask.len()).max().unwrap_or(0);
    let mut counts = vec![0; needles.len()];
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !perms.starts_with('r')
            || name == "[vvar]"
            || name == "[vsyscall]"
            || name == "[vvar_vclock]"
        {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if start >= skip && end <= skip_end {
            continue;
        }
        let mut at = start;
        while at < end {
            let n = usize::try_from((end - at).min(CHUNK as u64)).unwrap();
            let window = &mut buf.as_mut_slice()[..n];
            let Ok(read) = mem.read_at(window, at) else {
                break;
            };
            let got = &window[..read];
            for (c, needle) in counts.iter_mut().zip(needles) {
                let first = needle.masked[0] ^ needle.mask[0];
                // Positions whose first byte matches, then the full compare.
                *c += got
                    .iter()
                    .enumerate()
                    .filter(|&(i, &byte)| byte == first && needle.matches_at(&got[i..]))
                    .count();
            }
            window.fill(0);
            if read < n || at + (n as u64) >= end {
                at += n as u64;
            } else {
                // Step back so a canary straddling two chunks is seen whole.
                at += (n - overlap) as u64;
            }
        }
    }
    counts
}

fn status_field(k: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    rempart::secure::sandbox::status_field(&s, k)
}

/// The VmFlags of the mapping that starts at `addr`.
fn smaps_flags(addr: u64) -> String {
    let s = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for l in s.lines() {
        // A mapping's first line starts with its hex range, "start-end perms ...".
        let start = l
            .split_once('-')
            .filter(|(a, _)| !a.is_empty() && a.chars().all(|c| c.is_ascii_hexdigit()))
            .and_then(|(a, _)| u64::from_str_radix(a, 16).ok());
        if let Some(start) = start {
            inside = start == addr;
        } else if let (true, Some(f)) = (inside, l.strip_prefix("VmFlags:")) {
            return f.trim().to_owned();
        }
    }
    String::new()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let root = Path::new(&args[1]);
    let p = Needle::from_hex(&args[2], &args[3]);
    let q = Needle::from_hex(&args[4], &args[5]);
    // Lock as much as the kernel allows (root may raise the hard limit).
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Memlock,
        rustix::process::Rlimit {
            current: None,
            maximum: None,
        },
    );
    let mut scratch = LockedBuf::new(CHUNK, false).unwrap();

    // 1. The file key, through the library, and its positive control.
    let trust = rempart::keys::TrustStore::load(&root.join("keys/trusted")).unwrap();
    let bundle_path = std::fs::read_dir(root.join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "rpk"))
        .unwrap();
    let src = rempart::bundle::FileAt::new(std::fs::File::open(&bundle_path).unwrap()).unwrap();
    let v = rempart::bundle::Envelope::parse(&src)
        .unwrap()
        .verify(&trust)
        .unwrap();
    let seed = rempart::keys::read_key_file(
        &root.join("keys/appliance.key"),
        rempart::keys::Kind::ApplianceSecret,
        &rempart::keys::PassphraseSource::None,
    )
    .unwrap()
    .secret
    .unwrap();
    let appliance = rempart::keys::ApplianceSecret::from_seed(seed);
    let (_, _, _, file_key, _) = rempart::bundle::unwrap_file_key(&src, &v, 0, &appliance).unwrap();
    let k = Needle::from_secret(file_key.expose());
    let control_k = scan(&[&k], &mut scratch)[0];
    drop(file_key);

    // 2. The decrypted and built model, its positive control, locking and smaps flags.
    let len = usize::try_from(v.manifest.artifacts[0].pt_len).unwrap();
    let mut arena = LockedBuf::new(len, false).unwrap();
    rempart::bundle::open_artifact(&src, &v, 0, &appliance, &mut arena).unwrap();
    drop(appliance);
    let arena_addr = arena.as_slice().as_ptr() as u64;
    let arena_flags = smaps_flags(arena_addr);
    let arena_locked = arena.lock_status().is_locked();
    // As `rempart ask` loads it: the model keeps the arena (its matrices repacked in place).
    let model = rempart::engine::load_arena(
        arena,
        &candle_core::Device::Cpu,
        rempart::engine::Backend::Auto,
    )
    .unwrap();
    let control_p_loaded = scan(&[&p], &mut scratch)[0];
    let vm_lck_loaded = status_field("VmLck");
    drop(model);
    drop(v);
    drop(src);

    // 3. A query whose prompt carries Q, through the binary's own code path.
    let mut prompt = String::from("Please repeat: ");
    prompt.extend(q.masked.iter().zip(&q.mask).map(|(a, b)| char::from(a ^ b)));
    let argv = [
        "rempart".to_owned(),
        "--root".to_owned(),
        root.display().to_string(),
        "ask".to_owned(),
        "--temperature".to_owned(),
        "0".to_owned(),
        "--max-tokens".to_owned(),
        "16".to_owned(),
        prompt,
    ];
    let control_q = scan(&[&q], &mut scratch)[0];
    let cli = rempart::cli::Cli::try_parse_from(argv).unwrap();
    let asked = rempart::cli::run(&cli).map_err(|e| e.to_string());
    drop(cli);

    // 4. Everything is dropped: scan again.
    let after = scan(&[&p, &q, &k], &mut scratch);
    println!(
        "\n{}",
        serde_json::json!({
            "control": {"file_key": control_k, "weights_loaded": control_p_loaded, "prompt": control_q},
            "ask": asked,
            "arena": {"vm_flags": arena_flags, "locked": arena_locked, "len": len},
            "vm_lck_loaded": vm_lck_loaded,
            "after": {"weights": after[0], "prompt": after[1], "file_key": after[2]},
        })
    );
}
