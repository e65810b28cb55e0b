//! Lazy restore: a volume created from a snapshot is usable at once; each 512 KiB block is
//! fetched from the store on first touch, and a background task hydrates the rest.
//!
//! # Block states and the invariant
//! `COLD` → (`FETCHING`) → `CACHED` (in the volume file, not yet durable; a read fetched it) →
//! `LOCAL` (data durable *and* its sidecar bit durable). Reads wait for `CACHED` or `LOCAL`;
//! writes wait for `LOCAL` ([`Hydration::ensure_durable`]), so:
//! - hydration never overwrites a user's write (the write waited for the block);
//! - after a crash, a block whose bit is set holds snapshot data or later user writes, and a
//!   block whose bit is clear (never written by a user) is fetched again.
//!
//! A cold read thus costs a fetch and a page-cache write, not two `fsync`s; the first write to
//! such a block pays for making it durable.
//!
//! # Sidecar (`<volume>.hydrate`, integers little-endian)
//! ```text
//! offset size field
//!      0    8 magic "EBSHYD\0\x01"
//!      8    4 version (1)
//!     12    4 reserved (0)
//!     16    8 number of blocks
//!     24    4 CRC-32 (IEEE) of bytes 0..24
//!     28    4 reserved (0)
//!     32    … bitmap: u64 words, bit i of word w set = block 64·w + i is local
//! ```
//! Words are updated in place (one aligned 8-byte write, then `fdatasync`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use storage_engine::Volume;
use tokio::sync::Notify;

use crate::block::{BLOCK_SIZE, BlockSeal};
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

const MAGIC: [u8; 8] = *b"EBSHYD\0\x01";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 32;

const COLD: u8 = 0;
const FETCHING: u8 = 1;
const LOCAL: u8 = 2;
const CACHED: u8 = 3;

/// A block claimed (`FETCHING`) by one task. If the task is dropped mid-way (a client went
/// away, the runtime stopped), the block goes back to the state it was claimed from and
/// waiters are woken, instead of staying claimed forever.
struct Claim<'a> {
    slot: &'a AtomicU8,
    from: u8,
    changed: &'a Notify,
    armed: bool,
}

impl<'a> Claim<'a> {
    fn new(slot: &'a AtomicU8, from: u8, changed: &'a Notify) -> Claim<'a> {
        Claim {
            slot,
            from,
            changed,
            armed: true,
        }
    }

    /// The claimant published the block's new state itself.
    fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.slot.store(self.from, Ordering::Release);
            self.changed.notify_waiters();
        }
    }
}

/// Why a block could not be made local.
#[derive(Debug, thiserror::Error)]
pub enum HydrateError {
    /// Fetching or verifying the block failed.
    #[error("snapshot {snapshot_id} block {index}: {source}")]
    Fetch {
        /// The snapshot restored from.
        snapshot_id: String,
        /// Block index.
        index: u64,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// Writing the block into the volume or the sidecar failed.
    #[error("hydrating block {index}: {source}")]
    Local {
        /// Block index.
        index: u64,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The sidecar is not a valid hydration file.
    #[error("hydration state {0} is corrupt")]
    Corrupt(PathBuf),
}

/// The lazy-restore state of one open volume.
#[derive(Debug)]
pub struct Hydration {
    store: Store,
    /// The snapshot's seal when it is encrypted.
    seal: Option<Arc<BlockSeal>>,
    manifest: Arc<Manifest>,
    volume: Arc<Volume>,
    state: Vec<AtomicU8>,
    /// Blocks `COLD` (or being fetched from cold).
    cold: AtomicU64,
    /// Blocks `CACHED` (or being made durable from cached).
    volatile: AtomicU64,
    /// Mirror of the sidecar bitmap; written under `sidecar`'s lock.
    bits: Vec<AtomicU64>,
    sidecar: Mutex<File>,
    path: PathBuf,
    changed: Notify,
    stop: AtomicBool,
}

fn header(blocks: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&blocks.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

impl Hydration {
    /// Creates the sidecar of a new volume of `volume_size` bytes restored from a snapshot:
    /// every block cold. Durable when it returns.
    pub fn create(path: &Path, volume_size: u64) -> io::Result<()> {
        let blocks = volume_size.div_ceil(BLOCK_SIZE);
        let mut bytes = header(blocks);
        bytes.resize(HEADER_LEN as usize + blocks.div_ceil(64) as usize * 8, 0);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.write_all_at(&bytes, 0)?;
        f.sync_all()
    }

    /// Opens the state of a volume restoring from `manifest`, whose blocks are sealed under
    /// `seal` if it is encrypted. Blocks the manifest lacks (zero, or past the snapshot's size)
    /// are local from the start.
    pub fn open(
        path: &Path,
        store: Store,
        seal: Option<Arc<BlockSeal>>,
        manifest: Arc<Manifest>,
        volume: Arc<Volume>,
    ) -> Result<Hydration, HydrateError> {
        let corrupt = || HydrateError::Corrupt(path.to_path_buf());
        let local = |source| HydrateError::Local { index: 0, source };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(local)?;
        let bytes = std::fs::read(path).map_err(local)?;
        let blocks = volume.size().div_ceil(BLOCK_SIZE);
        let h = bytes.get(..HEADER_LEN as usize).ok_or_else(corrupt)?;
        let recorded = u64::from_le_bytes(h[16..24].try_into().map_err(|_| corrupt())?);
        if h[..8] != MAGIC
            || crc32fast::hash(&h[..24])
                != u32::from_le_bytes(h[24..28].try_into().map_err(|_| corrupt())?)
            || recorded > blocks
        {
            return Err(corrupt());
        }
        let words = &bytes[HEADER_LEN as usize..];
        if words.len() < recorded.div_ceil(64) as usize * 8 {
            return Err(corrupt());
        }
        let bits: Vec<AtomicU64> = (0..recorded.div_ceil(64) as usize)
            .map(|w| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&words[w * 8..w * 8 + 8]);
                AtomicU64::new(u64::from_le_bytes(a))
            })
            .collect();
        let mut cold = 0;
        let state = (0..blocks)
            .map(|b| {
                let set = b < recorded
                    && bits[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) != 0;
                if set || !manifest.blocks.contains_key(&b) {
                    AtomicU8::new(LOCAL)
                } else {
                    cold += 1;
                    AtomicU8::new(COLD)
                }
            })
            .collect();
        Ok(Hydration {
            store,
            seal,
            manifest,
            volume,
            state,
            cold: AtomicU64::new(cold),
            volatile: AtomicU64::new(0),
            bits,
            sidecar: Mutex::new(f),
            path: path.to_path_buf(),
            changed: Notify::new(),
            stop: AtomicBool::new(false),
        })
    }

    /// The manifest of the snapshot restored from.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// The snapshot restored from.
    pub fn snapshot_id(&self) -> &str {
        &self.manifest.snapshot_id
    }

    /// Whether every block is local and durable.
    pub fn is_complete(&self) -> bool {
        self.cold.load(Ordering::Acquire) == 0 && self.volatile.load(Ordering::Acquire) == 0
    }

    /// (local blocks, all blocks).
    pub fn progress(&self) -> (u64, u64) {
        let all = self.state.len() as u64;
        (all - self.cold.load(Ordering::Acquire), all)
    }

    /// Whether block `index` is local (tests and snapshots).
    pub fn is_local(&self, index: u64) -> bool {
        self.state
            .get(index as usize)
            .is_none_or(|s| matches!(s.load(Ordering::Acquire), LOCAL | CACHED))
    }

    /// The sidecar file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks the background task to stop (shutdown, delete).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Makes every block of `[offset, offset + len)` readable, fetching cold ones.
    pub async fn ensure(&self, offset: u64, len: u64) -> Result<(), HydrateError> {
        if self.cold.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        // Boxed, here and below: fetching blocks is a large future, and every request's future
        // on a restored volume would otherwise be that large, whether or not it has to fetch.
        Box::pin(self.ensure_range(offset, len, false)).await
    }

    /// Makes every block of `[offset, offset + len)` local and durable: call before a write.
    pub async fn ensure_durable(&self, offset: u64, len: u64) -> Result<(), HydrateError> {
        if self.is_complete() {
            return Ok(());
        }
        Box::pin(self.ensure_range(offset, len, true)).await
    }

    async fn ensure_range(&self, offset: u64, len: u64, durable: bool) -> Result<(), HydrateError> {
        if len == 0 {
            return Ok(());
        }
        let first = offset / BLOCK_SIZE;
        let last = (offset.saturating_add(len - 1) / BLOCK_SIZE).min(self.state.len() as u64 - 1);
        for b in first..=last {
            self.ensure_block(b, durable).await?;
        }
        Ok(())
    }

    async fn ensure_block(&self, b: u64, durable: bool) -> Result<(), HydrateError> {
        let slot = &self.state[b as usize];
        loop {
            let from = slot.load(Ordering::Acquire);
            match from {
                LOCAL => return Ok(()),
                CACHED if !durable => return Ok(()),
                COLD | CACHED => {
                    if slot
                        .compare_exchange(from, FETCHING, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        continue;
                    }
                    let claim = Claim::new(slot, from, &self.changed);
                    let mut r = if from == COLD {
                        self.fetch(b, durable).await
                    } else {
                        self.flush(b).await
                    };
                    if durable && r.is_ok() {
                        r = self.persist(&[b]);
                    }
                    let to = if durable { LOCAL } else { CACHED };
                    self.publish(&[(b, from)], r.is_ok().then_some(to));
                    claim.done();
                    return r;
                }
                _ => self.wait(slot, FETCHING).await,
            }
        }
    }

    async fn flush(&self, b: u64) -> Result<(), HydrateError> {
        self.volume.flush().await.map_err(|e| HydrateError::Local {
            index: b,
            source: io::Error::other(e),
        })
    }

    async fn wait(&self, slot: &AtomicU8, seen: u8) {
        let n = self.changed.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if slot.load(Ordering::Acquire) != seen {
            return;
        }
        n.await;
    }

    /// Fetches block `b` (claimed `FETCHING` by the caller) into the volume file.
    async fn fetch(&self, b: u64, fua: bool) -> Result<(), HydrateError> {
        let Some(key) = self.manifest.blocks.get(&b) else {
            return Ok(());
        };
        let data = self
            .store
            .get_block_sealed(self.seal.clone(), key)
            .await
            .map_err(|source| HydrateError::Fetch {
                snapshot_id: self.manifest.snapshot_id.clone(),
                index: b,
                source,
            })?;
        self.volume
            .write_untracked(b * BLOCK_SIZE, Bytes::from(data), fua)
            .await
            .map_err(|e| HydrateError::Local {
                index: b,
                source: io::Error::other(e),
            })
    }

    /// Durably records `blocks` as local (their data already durable).
    fn persist(&self, blocks: &[u64]) -> Result<(), HydrateError> {
        let f = self.sidecar.lock().unwrap_or_else(|p| p.into_inner());
        let mut words: Vec<usize> = Vec::with_capacity(blocks.len());
        for &b in blocks {
            let w = (b / 64) as usize;
            if let Some(word) = self.bits.get(w) {
                word.fetch_or(1 << (b % 64), Ordering::AcqRel);
                if words.last() != Some(&w) {
                    words.push(w);
                }
            }
        }
        let err = |source| HydrateError::Local {
            index: blocks.first().copied().unwrap_or(0),
            source,
        };
        for w in words {
            let v = self.bits[w].load(Ordering::Acquire);
            f.write_all_at(&v.to_le_bytes(), HEADER_LEN + 8 * w as u64)
                .map_err(err)?;
        }
        f.sync_data().map_err(err)
    }

    /// Moves claimed blocks (each with the state it was claimed from) to `to`, or back to
    /// their old state when `to` is `None` (the work failed).
    fn publish(&self, blocks: &[(u64, u8)], to: Option<u8>) {
        for &(b, from) in blocks {
            let to = to.unwrap_or(from);
            self.state[b as usize].store(to, Ordering::Release);
            if to != from {
                // Raise `volatile` first: `is_complete` must never see both at zero while a
                // block is still only cached.
                if to == CACHED {
                    self.volatile.fetch_add(1, Ordering::AcqRel);
                }
                match from {
                    COLD => self.cold.fetch_sub(1, Ordering::AcqRel),
                    _ => self.volatile.fetch_sub(1, Ordering::AcqRel),
                };
            }
        }
        self.changed.notify_waiters();
    }

    /// Hydrates every cold block, at most `rate` bytes per second, until done or stopped.
    /// Returns whether the volume is complete.
    pub async fn run_background(&self, rate: u64) -> Result<bool, HydrateError> {
        const BATCH: usize = 16;
        let start = Instant::now();
        let mut moved = 0u64;
        let n = self.state.len() as u64;
        // Passes until every block is durable: a foreground read may cache a block behind the
        // scan, and a block being fetched by one is skipped until the next pass.
        while !self.is_complete() && !self.stop.load(Ordering::Acquire) {
            let mut next = 0u64;
            let mut claimed_any = false;
            while next < n && !self.stop.load(Ordering::Acquire) {
                let mut batch: Vec<(u64, u8)> = Vec::with_capacity(BATCH);
                let mut claims = Vec::with_capacity(BATCH);
                while next < n && batch.len() < BATCH {
                    let slot = &self.state[next as usize];
                    let from = slot.load(Ordering::Acquire);
                    if matches!(from, COLD | CACHED)
                        && slot
                            .compare_exchange(from, FETCHING, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        batch.push((next, from));
                        claims.push(Claim::new(slot, from, &self.changed));
                    }
                    next += 1;
                }
                if batch.is_empty() {
                    continue;
                }
                claimed_any = true;
                let fetched: Vec<Result<(), HydrateError>> = futures::stream::iter(batch.clone())
                    .map(|(b, from)| async move {
                        if from == COLD {
                            self.fetch(b, false).await
                        } else {
                            Ok(())
                        }
                    })
                    .buffered(4)
                    .collect()
                    .await;
                let mut r: Result<(), HydrateError> = fetched.into_iter().collect();
                if r.is_ok() {
                    let blocks: Vec<u64> = batch.iter().map(|(b, _)| *b).collect();
                    r = self
                        .flush(blocks[0])
                        .await
                        .and_then(|()| self.persist(&blocks));
                }
                self.publish(&batch, r.is_ok().then_some(LOCAL));
                claims.into_iter().for_each(Claim::done);
                r?;
                moved += batch.len() as u64 * BLOCK_SIZE;
                if rate > 0 {
                    let due = Duration::from_secs_f64(moved as f64 / rate as f64);
                    // Sleep off the rate in slices, so a stop (delete, shutdown) is prompt.
                    while let Some(wait) = due.checked_sub(start.elapsed()) {
                        if self.stop.load(Ordering::Acquire) {
                            break;
                        }
                        tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
                    }
                }
            }
            if !claimed_any {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(self.is_complete())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{self, BlockKey};
    use std::collections::BTreeMap;
    use storage_engine::Engine;

    async fn fixture(dir: &Path) -> (Store, Arc<Manifest>, Vec<Vec<u8>>, PathBuf, PathBuf) {
        let store = Store::local(&dir.join("store")).unwrap();
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + 1; BLOCK_SIZE as usize]).collect();
        let mut map = BTreeMap::new();
        for (i, b) in blocks.iter().enumerate() {
            if i == 2 {
                continue; // a zero block: not in the manifest
            }
            let k = BlockKey::of(b);
            store.put_block(&k, block::encode(b)).await.unwrap();
            map.insert(i as u64, k);
        }
        let m = Manifest {
            snapshot_id: "snap-00000000000000001".into(),
            volume_id: "vol-00000000000000001".into(),
            parent_id: None,
            owner_id: String::new(),
            kms_key_id: None,
            volume_size: 4 * BLOCK_SIZE,
            start_ms: 1,
            complete_ms: 2,
            blocks: map,
        };
        store.put_manifest(&m).await.unwrap();
        let vol = dir.join("v.img");
        Volume::create(&vol, 8 * BLOCK_SIZE).unwrap();
        let side = dir.join("v.hydrate");
        Hydration::create(&side, 8 * BLOCK_SIZE).unwrap();
        (store, Arc::new(m), blocks, vol, side)
    }

    #[tokio::test]
    async fn reads_fetch_cold_blocks_and_the_rest_hydrates_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m, blocks, vol_path, side) = fixture(dir.path()).await;
        let vol = Arc::new(
            Volume::open(
                &vol_path,
                Engine::start(storage_engine::EngineKind::Sync, 2).unwrap(),
            )
            .unwrap(),
        );
        let h = Hydration::open(&side, store.clone(), None, m.clone(), vol.clone()).unwrap();
        assert_eq!(h.progress(), (5, 8));
        h.ensure(BLOCK_SIZE + 4096, 4096).await.unwrap();
        assert!(h.is_local(1) && !h.is_local(0));
        assert_eq!(vol.read(BLOCK_SIZE, BLOCK_SIZE).await.unwrap(), blocks[1]);
        assert!(h.run_background(0).await.unwrap());
        for (i, b) in blocks.iter().enumerate() {
            let got = vol.read(i as u64 * BLOCK_SIZE, BLOCK_SIZE).await.unwrap();
            if i == 2 {
                assert!(block::is_zero(&got));
            } else {
                assert_eq!(&got, b, "block {i}");
            }
        }
        // Hydration is no change since the snapshot.
        assert_eq!(
            vol.changed_blocks().changed(),
            storage_engine::ChangedSince::Exact(vec![])
        );
        // Re-opened: nothing left to fetch.
        vol.close().await.unwrap();
        let vol = Arc::new(
            Volume::open(
                &vol_path,
                Engine::start(storage_engine::EngineKind::Sync, 2).unwrap(),
            )
            .unwrap(),
        );
        let again = Hydration::open(&side, store, None, m, vol).unwrap();
        assert!(again.is_complete());
    }

    #[tokio::test]
    async fn only_blocks_made_durable_survive_a_crash_as_local() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m, blocks, vol_path, side) = fixture(dir.path()).await;
        let vol = Arc::new(
            Volume::open(
                &vol_path,
                Engine::start(storage_engine::EngineKind::Sync, 2).unwrap(),
            )
            .unwrap(),
        );
        let h = Hydration::open(&side, store.clone(), None, m.clone(), vol.clone()).unwrap();
        h.ensure(0, 512).await.unwrap(); // a read: cached, not durable
        h.ensure_durable(BLOCK_SIZE, 512).await.unwrap(); // a write: durable
        assert!(h.is_local(0) && h.is_local(1) && !h.is_complete());
        // A user write lands on block 1 only after it was durable; then the server "crashes".
        vol.write(BLOCK_SIZE, Bytes::from(vec![0xee; 4096]), true)
            .await
            .unwrap();
        drop(h);
        let again = Hydration::open(&side, store, None, m, vol.clone()).unwrap();
        assert!(
            !again.is_local(0),
            "a block only a read fetched is fetched again"
        );
        assert!(again.is_local(1), "a block made durable stays local");
        // Re-hydrating never overwrites the user's write.
        assert!(again.run_background(0).await.unwrap());
        let b1 = vol.read(BLOCK_SIZE, BLOCK_SIZE).await.unwrap();
        assert_eq!(&b1[..4096], &[0xee; 4096][..]);
        assert_eq!(&b1[4096..], &blocks[1][4096..]);
        assert_eq!(vol.read(0, BLOCK_SIZE).await.unwrap(), blocks[0]);
    }

    #[tokio::test]
    async fn a_corrupt_block_is_an_error_naming_snapshot_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m, _blocks, vol_path, side) = fixture(dir.path()).await;
        let key = m.blocks[&3];
        let mut raw = store.get_block_raw(&key).await.unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        store.put_block(&key, raw).await.unwrap();
        let vol = Arc::new(
            Volume::open(
                &vol_path,
                Engine::start(storage_engine::EngineKind::Sync, 2).unwrap(),
            )
            .unwrap(),
        );
        let h = Hydration::open(&side, store, None, m, vol).unwrap();
        let err = h.ensure(3 * BLOCK_SIZE, 512).await.unwrap_err().to_string();
        assert!(
            err.contains("snap-00000000000000001") && err.contains("block 3"),
            "{err}"
        );
        assert!(!h.is_local(3));
    }
}
