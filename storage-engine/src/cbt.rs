//! Changed-block tracking (CBT) at 512 KiB granularity, for incremental snapshots.
//!
//! # Guarantee
//! Tracking never under-reports. While a volume is open the bitmap lives in memory and its
//! sidecar file is marked *not clean*; only a clean close writes the bitmap back with the clean
//! flag. After a crash the flag is missing, so the tracking reports [`ChangedSince::Unknown`] and
//! the snapshot layer must compare every block against the parent snapshot. A missing or corrupt
//! sidecar reads the same way.
//!
//! # File format (`<volume>.cbt`, all integers little-endian)
//! ```text
//! offset size field
//!      0    8 magic  "EBSCBT\0\x01"
//!      8    4 version (1)
//!     12    4 flags: bit 0 CLEAN (bitmap valid), bit 1 EXACT (no tracking gap since the last reset)
//!     16    4 block size in bytes (524288)
//!     20    4 reserved (0)
//!     24    8 number of blocks
//!     32    4 CRC-32 (IEEE) of the bitmap bytes
//!     36    4 CRC-32 (IEEE) of bytes 0..36
//!     40    … bitmap: ceil(blocks / 64) u64 words; bit i of word w is block 64·w + i
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// Tracking granularity: the EBS direct-API block size.
pub const CBT_BLOCK_SIZE: u64 = 512 * 1024;

const MAGIC: [u8; 8] = *b"EBSCBT\0\x01";
const VERSION: u32 = 1;
const FLAG_CLEAN: u32 = 1;
const FLAG_EXACT: u32 = 2;
const VERSION_OFFSET: usize = MAGIC.len();
const FLAGS_OFFSET: usize = VERSION_OFFSET + 4;
const BLOCK_SIZE_OFFSET: usize = FLAGS_OFFSET + 4;
const BLOCKS_OFFSET: usize = BLOCK_SIZE_OFFSET + 4 + 4;
const BITMAP_CRC_OFFSET: usize = BLOCKS_OFFSET + 8;
const HEADER_CRC_OFFSET: usize = BITMAP_CRC_OFFSET + 4;
const HEADER_LEN: usize = HEADER_CRC_OFFSET + 4;

/// What the tracking knows about changes since its last [`ChangedBlocks::reset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedSince {
    /// Exactly these block indexes (ascending) may have changed; no others did.
    Exact(Vec<u64>),
    /// Tracking had a gap (unclean stop, lost sidecar): any block may have changed.
    Unknown,
}

/// The changed-block bitmap of one open volume.
#[derive(Debug)]
pub struct ChangedBlocks {
    path: PathBuf,
    /// Read-locked on every mark (cheap, uncontended); write-locked only to grow the volume.
    bitmap: RwLock<Bitmap>,
    exact: AtomicBool,
}

#[derive(Debug)]
struct Bitmap {
    blocks: u64,
    words: Vec<AtomicU64>,
}

fn words_for(blocks: u64) -> usize {
    usize::try_from(blocks.div_ceil(64)).unwrap_or(usize::MAX)
}

impl ChangedBlocks {
    /// Creates the sidecar of a brand-new (all-zero) volume: exact, nothing changed, clean.
    pub fn create(path: &Path, volume_size: u64) -> io::Result<()> {
        let cbt = ChangedBlocks::empty(path, volume_size, true);
        cbt.write_file(true)
    }

    /// Opens the sidecar and marks it not clean (durably) before any I/O is accepted.
    pub fn open(path: &Path, volume_size: u64) -> io::Result<ChangedBlocks> {
        let cbt = ChangedBlocks::empty(path, volume_size, false);
        match fs::read(path) {
            Ok(bytes) => {
                let bm = cbt.read();
                if let Some(words) = parse(&bytes, bm.blocks) {
                    for (slot, w) in bm.words.iter().zip(words) {
                        slot.store(w, Ordering::Relaxed);
                    }
                    cbt.exact.store(true, Ordering::Relaxed);
                    drop(bm);
                } else {
                    drop(bm);
                    tracing::warn!(path = %path.display(), "changed-block tracking was not closed cleanly; the next snapshot compares every block");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "changed-block tracking file missing; the next snapshot compares every block");
            }
            Err(e) => return Err(e),
        }
        // From here until a clean close, a crash must read as "unknown".
        cbt.write_file(false)?;
        Ok(cbt)
    }

    fn empty(path: &Path, volume_size: u64, exact: bool) -> ChangedBlocks {
        let blocks = volume_size.div_ceil(CBT_BLOCK_SIZE);
        ChangedBlocks {
            path: path.to_path_buf(),
            bitmap: RwLock::new(Bitmap {
                blocks,
                words: (0..words_for(blocks)).map(|_| AtomicU64::new(0)).collect(),
            }),
            exact: AtomicBool::new(exact),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Bitmap> {
        // The bitmap is atomics behind the lock; a panic cannot leave it half-written.
        self.bitmap.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Extends tracking to a volume grown to `volume_size` bytes. The new blocks read as zero
    /// and are not marked changed.
    pub fn grow(&self, volume_size: u64) {
        let mut bm = self.bitmap.write().unwrap_or_else(|p| p.into_inner());
        let blocks = volume_size.div_ceil(CBT_BLOCK_SIZE);
        if blocks > bm.blocks {
            let n = words_for(blocks);
            let extra = n.saturating_sub(bm.words.len());
            bm.words.extend((0..extra).map(|_| AtomicU64::new(0)));
            bm.blocks = blocks;
        }
    }

    /// Records that bytes `[offset, offset + len)` may have changed.
    pub fn mark(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let bm = self.read();
        let first = offset / CBT_BLOCK_SIZE;
        let last = (offset + len - 1) / CBT_BLOCK_SIZE;
        for block in first..=last.min(bm.blocks.saturating_sub(1)) {
            let (w, bit) = ((block / 64) as usize, 1u64 << (block % 64));
            let word = &bm.words[w];
            // Load first: the common case (already marked) then never dirties the cache line.
            if word.load(Ordering::Relaxed) & bit == 0 {
                word.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// The blocks changed since the last reset.
    pub fn changed(&self) -> ChangedSince {
        if !self.exact.load(Ordering::Acquire) {
            return ChangedSince::Unknown;
        }
        let mut out = Vec::new();
        for (w, word) in self.read().words.iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                let i = u64::from(bits.trailing_zeros());
                out.push(w as u64 * 64 + i);
                bits &= bits - 1;
            }
        }
        ChangedSince::Exact(out)
    }

    /// Starts a new tracking epoch: nothing changed, exact. Called once a snapshot has captured
    /// the volume's state.
    pub fn reset(&self) {
        for w in &self.read().words {
            w.store(0, Ordering::Release);
        }
        self.exact.store(true, Ordering::Release);
    }

    /// Forgets what changed: until the next reset, tracking reports [`ChangedSince::Unknown`].
    /// Called when a snapshot that had reset the tracking fails, so the next snapshot compares
    /// every block instead of missing the failed one's changes.
    pub fn invalidate(&self) {
        self.exact.store(false, Ordering::Release);
    }

    /// Persists the bitmap with the clean flag. Call after the last I/O of a clean close.
    pub fn close(&self) -> io::Result<()> {
        self.write_file(true)
    }

    /// Writes the sidecar via a temp file and rename, so a crash leaves the old or the new file.
    fn write_file(&self, clean: bool) -> io::Result<()> {
        let bm = self.read();
        let mut bitmap = Vec::with_capacity(bm.words.len() * 8);
        if clean {
            for w in &bm.words {
                bitmap.extend_from_slice(&w.load(Ordering::Acquire).to_le_bytes());
            }
        }
        let mut flags = 0;
        if clean {
            flags |= FLAG_CLEAN;
            if self.exact.load(Ordering::Acquire) {
                flags |= FLAG_EXACT;
            }
        }
        let mut header = [0u8; HEADER_LEN];
        header[..VERSION_OFFSET].copy_from_slice(&MAGIC);
        header[VERSION_OFFSET..FLAGS_OFFSET].copy_from_slice(&VERSION.to_le_bytes());
        header[FLAGS_OFFSET..BLOCK_SIZE_OFFSET].copy_from_slice(&flags.to_le_bytes());
        header[BLOCK_SIZE_OFFSET..BLOCK_SIZE_OFFSET + 4]
            .copy_from_slice(&(CBT_BLOCK_SIZE as u32).to_le_bytes());
        header[BLOCKS_OFFSET..BITMAP_CRC_OFFSET].copy_from_slice(&bm.blocks.to_le_bytes());
        drop(bm);
        header[BITMAP_CRC_OFFSET..HEADER_CRC_OFFSET]
            .copy_from_slice(&crc32fast::hash(&bitmap).to_le_bytes());
        let hcrc = crc32fast::hash(&header[..HEADER_CRC_OFFSET]);
        header[HEADER_CRC_OFFSET..].copy_from_slice(&hcrc.to_le_bytes());

        let tmp = self.path.with_extension("cbt.tmp");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&header)?;
            f.write_all(&bitmap)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Returns the bitmap words if `bytes` is a clean, exact, intact sidecar for `blocks` blocks.
fn parse(bytes: &[u8], blocks: u64) -> Option<Vec<u64>> {
    let header = bytes.get(..HEADER_LEN)?;
    let le32 = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().unwrap_or_default());
    if header[..VERSION_OFFSET] != MAGIC || le32(VERSION_OFFSET) != VERSION {
        return None;
    }
    if crc32fast::hash(&header[..HEADER_CRC_OFFSET]) != le32(HEADER_CRC_OFFSET) {
        return None;
    }
    let flags = le32(FLAGS_OFFSET);
    if flags & FLAG_CLEAN == 0 || flags & FLAG_EXACT == 0 {
        return None;
    }
    let stored_blocks =
        u64::from_le_bytes(header[BLOCKS_OFFSET..BITMAP_CRC_OFFSET].try_into().ok()?);
    if stored_blocks != blocks || le32(BLOCK_SIZE_OFFSET) as u64 != CBT_BLOCK_SIZE {
        return None;
    }
    let bitmap = &bytes[HEADER_LEN..];
    if bitmap.len() as u64 != blocks.div_ceil(64) * 8
        || crc32fast::hash(bitmap) != le32(BITMAP_CRC_OFFSET)
    {
        return None;
    }
    let mut words = Vec::with_capacity(bitmap.len() / 8);
    let mut rd = bitmap;
    let mut w = [0u8; 8];
    while rd.read_exact(&mut w).is_ok() {
        words.push(u64::from_le_bytes(w));
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn new_volume_is_exact_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.cbt");
        ChangedBlocks::create(&p, GIB).unwrap();
        let cbt = ChangedBlocks::open(&p, GIB).unwrap();
        assert_eq!(cbt.changed(), ChangedSince::Exact(vec![]));
    }

    #[test]
    fn marks_round_to_blocks_and_survive_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.cbt");
        ChangedBlocks::create(&p, GIB).unwrap();
        let cbt = ChangedBlocks::open(&p, GIB).unwrap();
        cbt.mark(0, 1);
        cbt.mark(CBT_BLOCK_SIZE - 1, 2); // straddles blocks 0 and 1
        cbt.mark(100 * CBT_BLOCK_SIZE + 4096, 4096);
        assert_eq!(cbt.changed(), ChangedSince::Exact(vec![0, 1, 100]));
        cbt.close().unwrap();
        drop(cbt);
        let again = ChangedBlocks::open(&p, GIB).unwrap();
        assert_eq!(again.changed(), ChangedSince::Exact(vec![0, 1, 100]));
    }

    #[test]
    fn unclean_stop_reports_unknown_until_reset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.cbt");
        ChangedBlocks::create(&p, GIB).unwrap();
        let cbt = ChangedBlocks::open(&p, GIB).unwrap();
        cbt.mark(0, 4096);
        drop(cbt); // crash: no close()
        let after = ChangedBlocks::open(&p, GIB).unwrap();
        assert_eq!(after.changed(), ChangedSince::Unknown);
        after.close().unwrap();
        // Still unknown after a clean close: the gap is not forgotten until a reset.
        let again = ChangedBlocks::open(&p, GIB).unwrap();
        assert_eq!(again.changed(), ChangedSince::Unknown);
        again.reset();
        again.mark(3 * CBT_BLOCK_SIZE, 1);
        assert_eq!(again.changed(), ChangedSince::Exact(vec![3]));
    }

    #[test]
    fn grows_with_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.cbt");
        ChangedBlocks::create(&p, GIB).unwrap();
        let cbt = ChangedBlocks::open(&p, GIB).unwrap();
        cbt.mark(0, 1);
        cbt.mark(GIB, 4096); // past the end: ignored
        cbt.grow(2 * GIB);
        cbt.mark(GIB, 4096);
        let last = 2 * GIB / CBT_BLOCK_SIZE - 1;
        cbt.mark(2 * GIB - 512, 512);
        let first_new = GIB / CBT_BLOCK_SIZE;
        assert_eq!(cbt.changed(), ChangedSince::Exact(vec![0, first_new, last]));
        cbt.close().unwrap();
        let again = ChangedBlocks::open(&p, 2 * GIB).unwrap();
        assert_eq!(
            again.changed(),
            ChangedSince::Exact(vec![0, first_new, last])
        );
    }

    #[test]
    fn corrupt_or_missing_sidecar_reads_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.cbt");
        assert_eq!(
            ChangedBlocks::open(&p, GIB).unwrap().changed(),
            ChangedSince::Unknown
        );
        ChangedBlocks::create(&p, GIB).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&p, bytes).unwrap();
        assert_eq!(
            ChangedBlocks::open(&p, GIB).unwrap().changed(),
            ChangedSince::Unknown
        );
    }
}
