//! Opening: check an artifact header against the signed manifest, unwrap the file key, check the
//! commitment, and decrypt every chunk in parallel straight into the caller's locked arena.
//! Also the full-ciphertext check done at `verify` and import time.

use rayon::prelude::*;

use super::header::ArtifactHeader;
use super::{Error, KDF_CONTEXT, KeyIdHex, ReadAt, Recipient, Verified, read_at};
use crate::crypto::chunked::{CHUNK, CT_CHUNK, ChunkKeys, PREFIX, TAG};
use crate::crypto::{Secret, ct_eq, hash};
use crate::secure::LockedBuf;

/// Chunks read and decrypted per parallel task (1 MiB of plaintext).
const GROUP: usize = 64;

/// What [`open_artifact`] found.
#[derive(Debug)]
pub struct Opened {
    /// Which stanza kind unwrapped the key.
    pub stanza_kind: &'static str,
}

fn read_header(
    src: &(impl ReadAt + ?Sized),
    v: &Verified,
    index: usize,
) -> Result<(ArtifactHeader, [u8; 48], u64), Error> {
    let idx16 = u16::try_from(index).map_err(|_| Error::InvalidValue("artifact index"))?;
    let entry = v
        .manifest
        .artifacts
        .get(index)
        .ok_or(Error::InvalidValue("artifact index"))?;
    let offset = *v
        .offsets
        .get(index)
        .ok_or(Error::InvalidValue("artifact index"))?;
    let mut hb = vec![0u8; entry.header_len as usize];
    read_at(src, &mut hb, offset)?;
    let h = hash::sha384(&[&hb]);
    if !ct_eq(&h, &entry.header_sha384) {
        return Err(Error::HeaderMismatch(idx16));
    }
    let header = ArtifactHeader::decode(&hb)?;
    if header.bundle_id != v.manifest.bundle_id
        || usize::from(header.index) != index
        || header.role != entry.role
        || header.model_version != v.manifest.version
        || header.pt_len != entry.pt_len
    {
        return Err(Error::HeaderMismatch(idx16));
    }
    Ok((header, h, offset + u64::from(entry.header_len)))
}

/// Checks artifact `index` against the manifest and this appliance (targets, header hash,
/// recipient stanza) and unwraps its file key. Nothing is decrypted.
pub fn unwrap_file_key(
    src: &(impl ReadAt + ?Sized),
    v: &Verified,
    index: usize,
    recipient: &impl Recipient,
) -> Result<(ArtifactHeader, [u8; 48], u64, Secret<32>, &'static str), Error> {
    let me = recipient.key_id();
    if !v.manifest.targets.is_empty() && !v.manifest.targets.contains(&me) {
        return Err(Error::NotTargeted(KeyIdHex(me)));
    }
    let (header, header_hash, ct_offset) = read_header(src, v, index)?;
    let mut matched = false;
    for s in header.stanzas.iter().filter(|s| s.key_id == me) {
        matched = true;
        if let Some(Ok(k)) = recipient.unwrap(s) {
            let kind = s.kind_name();
            return Ok((header, header_hash, ct_offset, k, kind));
        }
    }
    Err(if matched {
        Error::UnwrapFailed(KeyIdHex(me))
    } else {
        Error::NoRecipient(KeyIdHex(me))
    })
}

/// Decrypts artifact `index` into `arena`, which must be exactly `pt_len` bytes. On any error
/// the arena is wiped: no unauthenticated plaintext is ever left in it.
pub fn open_artifact(
    src: &(impl ReadAt + ?Sized),
    v: &Verified,
    index: usize,
    recipient: &impl Recipient,
    arena: &mut LockedBuf,
) -> Result<Opened, Error> {
    open_artifact_with_progress(src, v, index, recipient, arena, &|_| {})
}

/// [`open_artifact`], reporting plaintext bytes decrypted to `progress` as groups of chunks
/// complete (from the worker threads, in any order).
pub fn open_artifact_with_progress(
    src: &(impl ReadAt + ?Sized),
    v: &Verified,
    index: usize,
    recipient: &impl Recipient,
    arena: &mut LockedBuf,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Opened, Error> {
    let (header, header_hash, ct_offset, file_key, kind) =
        unwrap_file_key(src, v, index, recipient)?;
    let artifact = header.index;
    if arena.len() as u64 != header.pt_len {
        return Err(Error::InvalidValue("arena size"));
    }
    let mut prefix = [0u8; PREFIX];
    read_at(src, &mut prefix, ct_offset)?;
    let keys = ChunkKeys::open(file_key.expose(), &prefix, &[KDF_CONTEXT, &header_hash])
        .map_err(|source| Error::Payload { artifact, source })?;
    drop(file_key);
    let result = decrypt_all(
        src,
        &keys,
        ct_offset + PREFIX as u64,
        arena,
        artifact,
        progress,
    );
    if result.is_err() {
        arena.wipe();
    }
    result.map(|()| Opened { stanza_kind: kind })
}

fn decrypt_all(
    src: &(impl ReadAt + ?Sized),
    keys: &ChunkKeys,
    base: u64,
    arena: &mut LockedBuf,
    artifact: u16,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), Error> {
    let pt_len = arena.len();
    let n_full = pt_len / CHUNK;
    let (full, last) = arena.as_mut_slice().split_at_mut(n_full * CHUNK);
    let fail = |source| Error::Payload { artifact, source };
    full.par_chunks_mut(GROUP * CHUNK)
        .enumerate()
        .try_for_each_init(
            Vec::new,
            |scratch: &mut Vec<u8>, (g, slots)| -> Result<(), Error> {
                let first = g * GROUP;
                let count = slots.len() / CHUNK;
                scratch.resize(count * CT_CHUNK, 0);
                read_at(src, scratch, base + (first * CT_CHUNK) as u64)?;
                for (j, (slot, ct)) in slots
                    .chunks_exact_mut(CHUNK)
                    .zip(scratch.chunks_exact(CT_CHUNK))
                    .enumerate()
                {
                    let (data, tag) = ct.split_at(CHUNK);
                    let tag: &[u8; TAG] = tag.try_into().map_err(|_| Error::Truncated("tag"))?;
                    slot.copy_from_slice(data);
                    keys.open_chunk((first + j) as u64, slot, tag)
                        .map_err(fail)?;
                }
                progress(slots.len() as u64);
                Ok(())
            },
        )?;
    // The final chunk is always shorter than CHUNK, possibly empty.
    let mut ct = vec![0u8; last.len() + TAG];
    read_at(src, &mut ct, base + (n_full * CT_CHUNK) as u64)?;
    let (data, tag) = ct.split_at(last.len());
    let tag: &[u8; TAG] = tag.try_into().map_err(|_| Error::Truncated("tag"))?;
    last.copy_from_slice(data);
    keys.open_chunk(n_full as u64, last, tag).map_err(fail)?;
    progress(last.len() as u64);
    Ok(())
}

/// Checks every artifact's header and whole-ciphertext tree hash against the signed manifest
/// (segments hashed in parallel). `progress` receives bytes hashed.
pub fn verify_ciphertexts(
    src: &(impl ReadAt + ?Sized),
    v: &Verified,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), Error> {
    for (i, entry) in v.manifest.artifacts.iter().enumerate() {
        read_header(src, v, i)?;
        let offset = *v
            .offsets
            .get(i)
            .ok_or(Error::InvalidValue("artifact index"))?;
        let total = entry
            .total_len()
            .ok_or(Error::InvalidValue("artifact length"))?;
        let seg = hash::TREE_SEGMENT as u64;
        let n_seg = total.div_ceil(seg);
        let leaves = (0..n_seg)
            .into_par_iter()
            .map(|k| -> Result<[u8; 48], Error> {
                let start = k * seg;
                let len = seg.min(total - start) as usize;
                let mut buf = vec![0u8; len];
                read_at(src, &mut buf, offset + start)?;
                progress(len as u64);
                Ok(hash::sha384(&[&buf]))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_tree(v, i, &leaves)?;
    }
    Ok(())
}

/// Compares artifact `i`'s tree root over `leaves` with the signed manifest.
fn check_tree(v: &Verified, i: usize, leaves: &[[u8; 48]]) -> Result<(), Error> {
    let idx16 = u16::try_from(i).map_err(|_| Error::InvalidValue("artifact index"))?;
    let entry = v
        .manifest
        .artifacts
        .get(i)
        .ok_or(Error::InvalidValue("artifact index"))?;
    let total = entry
        .total_len()
        .ok_or(Error::InvalidValue("artifact length"))?;
    if ct_eq(&hash::tree_root(total, leaves), &entry.ct_tree_sha384) {
        Ok(())
    } else {
        Err(Error::CiphertextMismatch(idx16))
    }
}

/// Why [`copy_verified`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source, or what was read does not match the signed manifest.
    #[error(transparent)]
    Bundle(#[from] Error),
    /// Writing the copy failed (e.g. a full disk).
    #[error("writing the copy: {0}")]
    Write(std::io::Error),
}

/// Copies the whole bundle `src` (already verified as `v`) to `write`, hashing what is written:
/// each artifact's tree hash is computed over the very bytes handed to `write`, segment by
/// segment in parallel with the writing, and compared with the signed manifest at the end.
/// `write` gets the pieces in file order and may also sync them (e.g. `fdatasync`, to overlap
/// write-back with hashing). The source is read exactly once.
pub fn copy_verified(
    src: &(impl ReadAt + ?Sized),
    v: &Verified,
    write: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), CopyError> {
    // The pieces of the file in order: the front (not tree-hashed; the caller checks its
    // digest on the copy), then each artifact's tree-hash segments.
    let seg = hash::TREE_SEGMENT as u64;
    let first = v.offsets.first().copied().unwrap_or(src.len());
    let mut pieces: Vec<(u64, u64, Option<usize>)> = vec![(0, first, None)];
    let mut end = first;
    for (i, entry) in v.manifest.artifacts.iter().enumerate() {
        let (Some(&offset), Some(total)) = (v.offsets.get(i), entry.total_len()) else {
            return Err(Error::InvalidValue("artifact layout").into());
        };
        if offset != end {
            return Err(Error::InvalidValue("artifact layout").into());
        }
        let mut start = 0;
        while start < total {
            pieces.push((offset + start, seg.min(total - start), Some(i)));
            start += seg;
        }
        end = offset + total;
    }
    if end != src.len() {
        return Err(Error::InvalidValue("artifact layout").into());
    }
    let mut leaves: Vec<Vec<[u8; 48]>> = vec![Vec::new(); v.manifest.artifacts.len()];
    let batch = rayon::current_num_threads().max(1);
    // A writer thread (outside the rayon pool, so its waits on the disk never idle a hashing
    // core) writes batch k while batch k+1 is hashed; at most three batches are in memory.
    std::thread::scope(|scope| -> Result<(), CopyError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<Vec<u8>>>>(1);
        let writer = scope.spawn(move || -> std::io::Result<()> {
            for bufs in rx {
                bufs.iter().try_for_each(|b| write(b))?;
            }
            Ok(())
        });
        let mut result = Ok(());
        for group in pieces.chunks(batch) {
            let mut bufs = Vec::with_capacity(group.len());
            for &(off, len, _) in group {
                let mut buf =
                    vec![0u8; usize::try_from(len).map_err(|_| Error::InvalidValue("length"))?];
                if let Err(e) = read_at(src, &mut buf, off) {
                    result = Err(e.into());
                    break;
                }
                bufs.push(buf);
            }
            if result.is_err() {
                break;
            }
            let bufs = std::sync::Arc::new(bufs);
            if tx.send(bufs.clone()).is_err() {
                // The writer stopped on an error, reported below.
                break;
            }
            let hashed: Vec<_> = bufs
                .par_iter()
                .zip(group)
                .map(|(b, p)| p.2.map(|i| (i, hash::sha384(&[b]))))
                .collect();
            for (i, leaf) in hashed.into_iter().flatten() {
                if let Some(l) = leaves.get_mut(i) {
                    l.push(leaf);
                }
            }
            progress(group.iter().map(|p| p.1).sum());
        }
        drop(tx);
        match writer.join() {
            Ok(Ok(())) => result,
            Ok(Err(e)) => Err(CopyError::Write(e)),
            Err(_) => Err(CopyError::Write(std::io::Error::other(
                "writer thread panicked",
            ))),
        }
    })?;
    for (i, l) in leaves.iter().enumerate() {
        check_tree(v, i, l)?;
    }
    Ok(())
}
