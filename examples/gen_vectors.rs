//! Regenerates the bundle test vectors in tests/vectors (run:
//! `cargo run --example gen_vectors -- tests/vectors`). Keys come from fixed seeds, so the keys
//! are stable; bundles use fresh random file keys and salts, so bytes change on every run.
//! Expected outcomes live in tests/cli/vectors.rs and tests/vectors/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "developer tool over bytes it just produced"
)]

use std::path::Path;

use anyhow::Result;
use rempart::bundle::{
    self, ArtifactInput, MAX_MANIFEST_LEN, PREAMBLE_LEN, RecipientSpec, Role, SIG_CONTEXT,
    SIG_ENTRY_LEN, SealParams,
};
use rempart::crypto::{Secret, chunked};
use rempart::keys::{ApplianceSecret, Kind, PublisherSecret, write_key_file};

fn seed(b: u8) -> Secret<32> {
    Secret::init_with(|s| s.fill(b))
}

struct Keys {
    app: ApplianceSecret,
    other: ApplianceSecret,
    publisher: PublisherSecret,
    stranger: PublisherSecret,
}

fn params(targets: Vec<[u8; 8]>) -> SealParams {
    SealParams {
        name: "vector-model".into(),
        version: 3,
        created: 1_780_000_000,
        expires: None,
        marking: Some("UNCLASSIFIED//TEST".into()),
        architecture: None,
        quantization: None,
        targets,
        // The committed vectors predate AI BOMs: they stay byte-identical (and show that a
        // bundle without one still decodes).
        aibom: None,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + 7) as u8).collect()
}

fn seal_with(
    k: &Keys,
    p: &SealParams,
    pt: &[u8],
    rcpt: &[RecipientSpec<'_>],
    signer: &PublisherSecret,
) -> Result<Vec<u8>> {
    let parts = bundle::seal(
        p,
        &[ArtifactInput {
            role: Role::Gguf,
            plaintext: pt,
        }],
        rcpt,
        &[(signer.key_id(), signer.signing_key())],
        &|_| {},
    )?;
    let _ = k;
    Ok(parts.concat())
}

fn kw(a: &ApplianceSecret) -> RecipientSpec<'_> {
    RecipientSpec::Kw {
        key_id: a.key_id(),
        kek: a.kek(),
    }
}

/// Offsets inside a single-artifact bundle.
struct Layout {
    manifest: usize,
    m_len: usize,
    sigs: usize,
    artifact: usize,
    header_len: usize,
    ct: usize,
}

fn layout(b: &[u8]) -> Layout {
    let m_len = u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize;
    let s_len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
    let artifact = PREAMBLE_LEN + m_len + s_len;
    let body = u32::from_be_bytes(b[artifact + 4..artifact + 8].try_into().unwrap()) as usize;
    let header_len = 8 + body;
    Layout {
        manifest: PREAMBLE_LEN,
        m_len,
        sigs: PREAMBLE_LEN + m_len,
        artifact,
        header_len,
        ct: artifact + header_len,
    }
}

/// Re-signs a bundle whose manifest bytes were replaced by `manifest` (a trusted publisher that
/// emits a malformed manifest: the parser must still refuse it cleanly).
fn resign(b: &[u8], manifest: &[u8], signer: &PublisherSecret) -> Vec<u8> {
    let l = layout(b);
    let mut front = b[..12].to_vec();
    front.extend_from_slice(&(manifest.len() as u32).to_be_bytes());
    let signed = [&front[..], manifest].concat();
    let sig = signer.signing_key().sign(SIG_CONTEXT, &signed).unwrap();
    let mut sig_block = vec![1u8];
    sig_block.extend_from_slice(&signer.key_id());
    sig_block.extend_from_slice(&sig);
    front.extend_from_slice(&(sig_block.len() as u32).to_be_bytes());
    front.extend_from_slice(manifest);
    front.extend_from_slice(&sig_block);
    front.extend_from_slice(&b[l.artifact..]);
    front
}

fn tlv(tag: u16, v: &[u8]) -> Vec<u8> {
    let mut o = tag.to_be_bytes().to_vec();
    o.extend_from_slice(&(v.len() as u32).to_be_bytes());
    o.extend_from_slice(v);
    o
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tests/vectors".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir.join("keys"))?;
    let k = Keys {
        app: ApplianceSecret::from_seed(seed(0x11)),
        other: ApplianceSecret::from_seed(seed(0x22)),
        publisher: PublisherSecret::from_seed(seed(0x33)),
        stranger: PublisherSecret::from_seed(seed(0x44)),
    };
    let kd = dir.join("keys");
    for f in ["appliance.key", "publisher.pub"] {
        let _ = std::fs::remove_file(kd.join(f));
    }
    write_key_file(
        &kd.join("appliance.key"),
        Kind::ApplianceSecret,
        "vector appliance",
        None,
        k.app.seed().expose(),
        None,
    )?;
    write_key_file(
        &kd.join("publisher.pub"),
        Kind::PublisherPublic,
        "vector publisher",
        None,
        &k.publisher.public().pk.to_bytes(),
        None,
    )?;

    let me = vec![k.app.key_id()];
    let pt = payload(2 * chunked::CHUNK + 232);
    let good = seal_with(&k, &params(me.clone()), &pt, &[kw(&k.app)], &k.publisher)?;
    let l = layout(&good);
    let mut out: Vec<(&str, Vec<u8>)> = Vec::new();
    let m = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };

    // --- good ---
    out.push(("good_aes_kw", good.to_vec()));
    let hybrid_pub = k.app.public().to_vec();
    out.push((
        "good_hybrid",
        seal_with(
            &k,
            &params(me.clone()),
            &pt,
            &[RecipientSpec::Hybrid {
                key_id: k.app.key_id(),
                public: &hybrid_pub,
            }],
            &k.publisher,
        )?,
    ));
    out.push((
        "good_empty",
        seal_with(&k, &params(me.clone()), &[], &[kw(&k.app)], &k.publisher)?,
    ));
    out.push((
        "good_exact_chunk",
        seal_with(
            &k,
            &params(me.clone()),
            &payload(chunked::CHUNK),
            &[kw(&k.other), kw(&k.app)],
            &k.publisher,
        )?,
    ));

    // --- preamble ---
    out.push(("bad_magic", m(&|b| b[1] ^= 0x20)));
    out.push(("unknown_version", m(&|b| b[9] = 2)));
    out.push(("unknown_suite", m(&|b| b[11] = 9)));
    out.push(("truncated_preamble", good[..12].to_vec()));
    out.push((
        "manifest_len_oversized",
        m(&|b| b[12..16].copy_from_slice(&(MAX_MANIFEST_LEN + 1).to_be_bytes())),
    ));
    out.push((
        "manifest_len_past_eof",
        m(&|b| b[12..16].copy_from_slice(&(MAX_MANIFEST_LEN).to_be_bytes())),
    ));
    out.push((
        "sig_block_len_oversized",
        m(&|b| b[16..20].copy_from_slice(&u32::MAX.to_be_bytes())),
    ));
    // --- signatures ---
    out.push(("manifest_bit_flip", m(&|b| b[l.manifest + 30] ^= 1)));
    out.push(("sig_ed25519_flip", m(&|b| b[l.sigs + 1 + 8 + 5] ^= 1)));
    out.push(("sig_mldsa_flip", m(&|b| b[l.sigs + 1 + 8 + 64 + 200] ^= 1)));
    out.push(("sig_count_zero", m(&|b| b[l.sigs] = 0)));
    out.push(("sig_count_two", m(&|b| b[l.sigs] = 2)));
    out.push((
        "untrusted_signer",
        seal_with(&k, &params(me.clone()), &pt, &[kw(&k.app)], &k.stranger)?,
    ));
    // --- artifact header ---
    out.push(("header_magic_flip", m(&|b| b[l.artifact] ^= 1)));
    out.push((
        "header_stanza_flip",
        m(&|b| b[l.artifact + l.header_len - 3] ^= 1),
    ));
    out.push(("header_length_flip", m(&|b| b[l.artifact + 7] ^= 4)));
    // --- payload ---
    out.push(("salt_flip", m(&|b| b[l.ct + 3] ^= 1)));
    out.push(("commitment_flip", m(&|b| b[l.ct + chunked::SALT + 3] ^= 1)));
    out.push((
        "chunk_body_flip",
        m(&|b| b[l.ct + chunked::PREFIX + chunked::CT_CHUNK + 100] ^= 1),
    ));
    out.push((
        "tag_flip",
        m(&|b| b[l.ct + chunked::PREFIX + chunked::CHUNK + 2] ^= 1),
    ));
    out.push((
        "last_tag_flip",
        m(&|b| {
            let n = b.len();
            b[n - 1] ^= 1;
        }),
    ));
    out.push((
        "chunks_swapped",
        m(&|b| {
            let a = l.ct + chunked::PREFIX;
            let c = a + chunked::CT_CHUNK;
            let first = b[a..c].to_vec();
            let second = b[c..c + chunked::CT_CHUNK].to_vec();
            b[a..c].copy_from_slice(&second);
            b[c..c + chunked::CT_CHUNK].copy_from_slice(&first);
        }),
    ));
    out.push((
        "chunk_duplicated",
        m(&|b| {
            let a = l.ct + chunked::PREFIX;
            let first = b[a..a + chunked::CT_CHUNK].to_vec();
            b[a + chunked::CT_CHUNK..a + 2 * chunked::CT_CHUNK].copy_from_slice(&first);
        }),
    ));
    out.push((
        "last_chunk_missing",
        good[..l.ct + chunked::PREFIX + 2 * chunked::CT_CHUNK].to_vec(),
    ));
    out.push((
        "truncated_mid_chunk",
        good[..l.ct + chunked::PREFIX + 1000].to_vec(),
    ));
    out.push(("trailing_byte", m(&|b| b.push(0))));
    out.push((
        "trailing_chunk",
        m(&|b| b.extend_from_slice(&[0u8; chunked::CT_CHUNK])),
    ));
    // --- recipients and policy ---
    out.push((
        "other_appliance_target",
        seal_with(
            &k,
            &params(vec![k.other.key_id()]),
            &pt,
            &[kw(&k.other)],
            &k.publisher,
        )?,
    ));
    out.push((
        "other_appliance_no_target",
        seal_with(&k, &params(vec![]), &pt, &[kw(&k.other)], &k.publisher)?,
    ));
    let mut exp = params(me);
    exp.expires = Some(exp.created + 86_400);
    out.push((
        "expired",
        seal_with(&k, &exp, &pt, &[kw(&k.app)], &k.publisher)?,
    ));
    // --- signed but malformed manifests (a trusted publisher with a buggy tool) ---
    let man = &good[l.manifest..l.manifest + l.m_len];
    let with_unknown = [man, &tlv(0x0fff, b"x")].concat();
    out.push((
        "signed_unknown_field",
        resign(&good, &with_unknown, &k.publisher),
    ));
    let dup_name = [
        &tlv(0x0001, &[7; 16])[..],
        &tlv(0x0001, &[7; 16]),
        &man[22..],
    ]
    .concat();
    out.push((
        "signed_duplicate_field",
        resign(&good, &dup_name, &k.publisher),
    ));
    let traversal = [
        &tlv(0x0001, &[7; 16])[..],
        &tlv(0x0002, b"../../etc/passwd"),
        &skip_tag(man, 0x0002)[22..],
    ]
    .concat();
    out.push((
        "signed_name_traversal",
        resign(&good, &traversal, &k.publisher),
    ));
    let zero_version = replace_tag(man, 0x0003, &0u64.to_be_bytes());
    out.push((
        "signed_zero_version",
        resign(&good, &zero_version, &k.publisher),
    ));
    out.push((
        "signed_trailing_garbage",
        resign(&good, &[man, &[0, 1]].concat(), &k.publisher),
    ));

    // Clear old vectors, write new ones.
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "rpk") {
            std::fs::remove_file(p)?;
        }
    }
    for (name, bytes) in &out {
        std::fs::write(dir.join(format!("{name}.rpk")), bytes)?;
    }
    let _ = SIG_ENTRY_LEN;
    println!("wrote {} vectors to {}", out.len(), dir.display());
    Ok(())
}

fn records(man: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < man.len() {
        let tag = u16::from_be_bytes(man[i..i + 2].try_into().unwrap());
        let len = u32::from_be_bytes(man[i + 2..i + 6].try_into().unwrap()) as usize;
        v.push((tag, man[i + 6..i + 6 + len].to_vec()));
        i += 6 + len;
    }
    v
}

fn replace_tag(man: &[u8], tag: u16, value: &[u8]) -> Vec<u8> {
    records(man)
        .into_iter()
        .flat_map(|(t, v)| tlv(t, if t == tag { value } else { &v }))
        .collect()
}

fn skip_tag(man: &[u8], tag: u16) -> Vec<u8> {
    records(man)
        .into_iter()
        .filter(|(t, _)| *t != tag)
        .flat_map(|(t, v)| tlv(t, &v))
        .collect()
}
