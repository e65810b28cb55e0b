//! Capture-before-write: a snapshot's point in time, held while the volume stays writable.
//!
//! At the snapshot call the blocks the snapshot must read (`wanted`) are set `PENDING`. From
//! then on every write-side request first calls [`Capture::before_write`]: a `PENDING` block it
//! touches is copied (its point-in-time content) to a sparse side file before the write goes on.
//! The snapshot task reads each wanted block through [`Capture::read_block`]: from the volume if
//! no write has touched it yet, else from the side file.
//!
//! # Block states
//! `PENDING` → `CLAIMED` (one party, reader or writer, is moving it) → `IDLE` (the reader has
//! its content) or `SAVED` (in the side file, for the reader). A party that finds `CLAIMED`
//! waits for the owner. Blocks outside `wanted` are `IDLE` from the start: their point-in-time
//! content is known without reading (unchanged since the parent, or a hole).
//!
//! # Activation
//! The caller installs a capture while no write is in flight (the data path holds a read lock
//! across capture check and write; activation takes it for writing), so every write either
//! completed before the point in time or passes through `before_write`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use storage_engine::Volume;
use tokio::sync::Notify;

use crate::block::BLOCK_SIZE;
use crate::hydrate::Hydration;

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const CLAIMED: u8 = 2;
const SAVED: u8 = 3;

/// A block claimed (`CLAIMED`) by a reader or writer. If the claimant's task is dropped
/// mid-way (a client went away), the block goes back to `PENDING` and waiters are woken, so
/// nobody waits on it forever; the point-in-time content is still in the volume then, since
/// the write that claimed it never happened.
struct Claim<'a> {
    slot: &'a AtomicU8,
    changed: &'a Notify,
    armed: bool,
}

impl<'a> Claim<'a> {
    fn new(slot: &'a AtomicU8, changed: &'a Notify) -> Claim<'a> {
        Claim {
            slot,
            changed,
            armed: true,
        }
    }

    /// Publishes the block's new state and wakes waiters.
    fn release(mut self, to: u8) {
        self.armed = false;
        self.slot.store(to, Ordering::Release);
        self.changed.notify_waiters();
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.slot.store(PENDING, Ordering::Release);
            self.changed.notify_waiters();
        }
    }
}

/// Why a block's point-in-time content could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The capture failed earlier (a save failed) or was cancelled.
    #[error("snapshot capture failed: {0}")]
    Failed(String),
    /// The block is not one this capture reads.
    #[error("block {0} is not captured by this snapshot")]
    NotWanted(u64),
    /// Reading the volume or the side file failed.
    #[error("reading block {index} for the snapshot: {source}")]
    Io {
        /// Block index.
        index: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The point-in-time state of one snapshot being taken.
#[derive(Debug)]
pub struct Capture {
    snapshot_id: String,
    volume: Arc<Volume>,
    hydration: Option<Arc<Hydration>>,
    state: Vec<AtomicU8>,
    wanted: Vec<u64>,
    side: File,
    side_path: PathBuf,
    changed: Notify,
    failed: Mutex<Option<String>>,
    cancelled: AtomicBool,
    /// Blocks writers saved to the side file (copy-on-write work done on the data path).
    saved: AtomicU64,
}

impl Capture {
    /// A capture of `volume` reading the blocks `wanted` (ascending), with its side file at
    /// `side_path` (created; removed by [`Capture::finish`]).
    pub fn new(
        snapshot_id: &str,
        volume: Arc<Volume>,
        hydration: Option<Arc<Hydration>>,
        wanted: Vec<u64>,
        side_path: &Path,
    ) -> io::Result<Capture> {
        let n = volume.size().div_ceil(BLOCK_SIZE) as usize;
        let state: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(IDLE)).collect();
        for &b in &wanted {
            if let Some(s) = state.get(b as usize) {
                s.store(PENDING, Ordering::Relaxed);
            }
        }
        let side = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(side_path)?;
        Ok(Capture {
            snapshot_id: snapshot_id.to_string(),
            volume,
            hydration,
            state,
            wanted,
            side,
            side_path: side_path.to_path_buf(),
            changed: Notify::new(),
            failed: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            saved: AtomicU64::new(0),
        })
    }

    /// The snapshot this capture belongs to.
    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    /// The blocks the snapshot reads, ascending.
    pub fn wanted(&self) -> &[u64] {
        &self.wanted
    }

    /// Blocks saved aside by writers so far.
    pub fn saved_by_writers(&self) -> u64 {
        self.saved.load(Ordering::Relaxed)
    }

    /// Stops capturing: writers no longer copy anything; readers get an error.
    pub fn cancel(&self, why: &str) {
        self.fail(why.to_string());
        self.cancelled.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    fn fail(&self, why: String) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::warn!(snapshot_id = %self.snapshot_id, reason = %why, "snapshot capture failed");
            *f = Some(why);
        }
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn wait(&self, slot: &AtomicU8, seen: u8) {
        let n = self.changed.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if slot.load(Ordering::Acquire) != seen || self.cancelled.load(Ordering::Acquire) {
            return;
        }
        n.await;
    }

    /// Called before a write-side request changes `[offset, offset + len)`: saves the
    /// point-in-time content of every pending block it touches. Never fails the write: if a
    /// save fails, the snapshot fails instead.
    pub async fn before_write(&self, offset: u64, len: u64) {
        if len == 0 || self.cancelled.load(Ordering::Acquire) {
            return;
        }
        let first = offset / BLOCK_SIZE;
        let last = offset.saturating_add(len - 1) / BLOCK_SIZE;
        for b in first..=last {
            let Some(slot) = self.state.get(b as usize) else {
                break;
            };
            loop {
                match slot.load(Ordering::Acquire) {
                    PENDING => {
                        if slot
                            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                        {
                            continue;
                        }
                        let claim = Claim::new(slot, &self.changed);
                        let next = match self.save(b).await {
                            Ok(()) => SAVED,
                            Err(e) => {
                                self.fail(e.to_string());
                                IDLE
                            }
                        };
                        claim.release(next);
                        break;
                    }
                    CLAIMED if !self.cancelled.load(Ordering::Acquire) => {
                        self.wait(slot, CLAIMED).await;
                    }
                    _ => break,
                }
            }
        }
    }

    async fn read_volume(&self, b: u64) -> Result<Vec<u8>, CaptureError> {
        let offset = b * BLOCK_SIZE;
        if let Some(h) = &self.hydration {
            h.ensure(offset, BLOCK_SIZE)
                .await
                .map_err(|e| CaptureError::Io {
                    index: b,
                    source: io::Error::other(e),
                })?;
        }
        self.volume
            .read(offset, BLOCK_SIZE)
            .await
            .map_err(|e| CaptureError::Io {
                index: b,
                source: io::Error::other(e),
            })
    }

    async fn save(&self, b: u64) -> Result<(), CaptureError> {
        let mut data = self.read_volume(b).await?;
        // The side file is on disk too: an encrypted volume's blocks go there as ciphertext.
        if let Some(c) = self.volume.cipher() {
            c.encrypt(b * BLOCK_SIZE, &mut data);
        }
        self.side
            .write_all_at(&data, b * BLOCK_SIZE)
            .map_err(|source| CaptureError::Io { index: b, source })?;
        self.saved.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The content block `b` had at the point in time. Each wanted block is read once.
    pub async fn read_block(&self, b: u64) -> Result<Vec<u8>, CaptureError> {
        let slot = self
            .state
            .get(b as usize)
            .ok_or(CaptureError::NotWanted(b))?;
        loop {
            if let Some(why) = self.failure() {
                return Err(CaptureError::Failed(why));
            }
            match slot.load(Ordering::Acquire) {
                PENDING => {
                    if slot
                        .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        continue;
                    }
                    let claim = Claim::new(slot, &self.changed);
                    let r = self.read_volume(b).await;
                    claim.release(IDLE);
                    return r;
                }
                CLAIMED => self.wait(slot, CLAIMED).await,
                SAVED => {
                    let mut buf = vec![0u8; BLOCK_SIZE as usize];
                    self.side
                        .read_exact_at(&mut buf, b * BLOCK_SIZE)
                        .map_err(|source| CaptureError::Io { index: b, source })?;
                    if let Some(c) = self.volume.cipher() {
                        c.decrypt(b * BLOCK_SIZE, &mut buf);
                    }
                    slot.store(IDLE, Ordering::Release);
                    self.punch(b);
                    return Ok(buf);
                }
                _ => return Err(CaptureError::NotWanted(b)),
            }
        }
    }

    /// Frees the side file's copy of block `b` once read.
    fn punch(&self, b: u64) {
        let (Ok(off), Ok(len)) = (i64::try_from(b * BLOCK_SIZE), i64::try_from(BLOCK_SIZE)) else {
            return;
        };
        // SAFETY: fallocate on a descriptor `self.side` keeps open; failure only leaves the
        // space allocated until the side file is removed.
        unsafe {
            libc::fallocate(
                self.side.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
    }

    /// Removes the side file. Call once the capture is uninstalled from the data path.
    pub fn finish(&self) {
        if let Err(e) = std::fs::remove_file(&self.side_path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.side_path.display(), error = %e, "removing a snapshot side file");
        }
    }
}
