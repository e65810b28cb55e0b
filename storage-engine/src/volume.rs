//! One open volume: a sparse file with 512-byte logical sectors.
//!
//! # Contract
//! * Requests must be non-empty, 512-byte aligned and inside the volume; reads and writes are at
//!   most [`MAX_IO_BYTES`]. Anything else is refused before it reaches the disk.
//! * Durability: a write is durable once a [`Volume::flush`] that started after it completed
//!   returns, or at once when written with `fua`.
//! * Fail-stop: after a failed write, flush, trim or zeroing, every later request fails with
//!   [`VolumeError::Failed`] until the volume is reopened or [`Volume::enable_io`] is called
//!   (EC2's EnableVolumeIO). The server never silently continues past lost data, unless the
//!   volume's owner asked it to ([`Volume::set_auto_enable_io`], EC2's `autoEnableIO`): then
//!   the failing request still gets its error, and later ones go on.
//! * Unwritten and trimmed ranges read as zeroes; [`Volume::block_status`] reports them as holes.
//! * An encrypted volume ([`Volume::open_encrypted`]) stores only ciphertext ([`crate::crypt`]):
//!   writes are encrypted into a buffer of their own, reads decrypted after the kernel is done,
//!   and cached ranges are never handed out as file ranges.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::cbt::ChangedBlocks;
use crate::crypt::SectorCipher;
use crate::engine::{Engine, OpKind};
use crate::pagecache::{self, FileRange, Mapping, ReadData, SendMode};

/// Logical sector size: every offset and length is a multiple of it.
pub const SECTOR_SIZE: u64 = 512;
/// Largest read or write accepted (the NBD maximum payload).
pub const MAX_IO_BYTES: u64 = 32 << 20;
/// Chunk size when zeroes must be written out by hand.
const ZERO_CHUNK: usize = 1 << 20;
/// An encrypted volume's reads of at least this many bytes are decrypted on a blocking thread,
/// so that a connection's queue of large reads spreads over the cores while the connection
/// goes on sending (1 MiB reads at QD8: 0.74x of plain this way, 0.51x decrypted in the task).
/// Writes are encrypted in the task that received them: their payload is in that core's cache,
/// and handing it to another core and back cost more than it spread (1 MiB writes: 0.64x in the
/// task, 0.47x offloaded). Smaller reads are done where they stand.
const DECRYPT_OFFLOAD_BYTES: usize = 128 << 10;
/// Writes this large are encrypted on a blocking thread after all: a 32 MiB request is
/// milliseconds of AES even with VAES, too long to hold a runtime worker from its other
/// connections.
const ENCRYPT_OFFLOAD_BYTES: usize = 4 << 20;

/// How [`Volume::write_zeroes`] may zero a range.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroFlags {
    /// The range may become a hole (NBD without `NO_HOLE`).
    pub may_trim: bool,
    /// Fail with [`VolumeErrorKind::NotSupported`] rather than write zeroes slowly (`FAST_ZERO`).
    pub fast_only: bool,
    /// Make the zeroes durable before returning (FUA).
    pub fua: bool,
}

/// Which requests may skip the engine and run as a syscall on the caller's thread.
///
/// A thread hop to the engine and back costs microseconds; a page-cache hit costs less. Reads
/// therefore first try `preadv2(RWF_NOWAIT)`, which completes only if it would not block (the
/// data is cached) and otherwise hands the read to the engine. Small buffered writes only copy
/// into the page cache, so they are done with `pwrite` directly, as a thread-per-request server
/// would; FUA writes, writes over `write_max` and everything that waits for the disk (flush,
/// trim, zeroing) always go through the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlinePolicy {
    /// Try non-blocking cached reads inline first.
    pub reads: bool,
    /// Non-FUA writes up to this many bytes are done inline; 0 sends every write to the engine.
    pub write_max: u64,
}

impl InlinePolicy {
    /// Everything goes through the engine.
    pub const NONE: InlinePolicy = InlinePolicy {
        reads: false,
        write_max: 0,
    };
    /// Cached reads and writes up to 1 MiB inline. Writes of 1 MiB measured 17-44 % less server
    /// CPU this way than through io_uring, whose buffered writes on ext4 go to an io-wq worker:
    /// two thread hops each way cost more than the copy itself (BENCHMARKS.md).
    pub const DEFAULT: InlinePolicy = InlinePolicy {
        reads: true,
        write_max: 1 << 20,
    };
}

impl Default for InlinePolicy {
    fn default() -> Self {
        InlinePolicy::DEFAULT
    }
}

/// One run of [`Volume::block_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes.
    pub length: u64,
    /// Unallocated: reads as zeroes.
    pub hole: bool,
}

/// Why a volume request failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Zero-length request.
    #[error("Request length is zero")]
    ZeroLength,
    /// Offset or length not a multiple of [`SECTOR_SIZE`].
    #[error("Request at offset {offset} with length {len} is not aligned to {SECTOR_SIZE} bytes")]
    Unaligned {
        /// Byte offset requested.
        offset: u64,
        /// Length requested.
        len: u64,
    },
    /// Longer than [`MAX_IO_BYTES`].
    #[error("Request length {len} exceeds the maximum of {MAX_IO_BYTES} bytes")]
    TooLarge {
        /// Length requested.
        len: u64,
    },
    /// Past the end of the volume.
    #[error("Request at offset {offset} with length {len} ends past the volume's {size} bytes")]
    OutOfBounds {
        /// Byte offset requested.
        offset: u64,
        /// Length requested.
        len: u64,
        /// Volume size.
        size: u64,
    },
    /// `FAST_ZERO` asked for, but zeroing here would mean writing zeroes.
    #[error("Fast zeroing is not supported on this file system")]
    FastZeroUnsupported,
    /// An earlier write or flush failed; the volume refuses I/O until reopened.
    #[error("Volume failed after an earlier I/O error; it must be reopened")]
    Failed,
    /// The I/O engine is gone (server shutting down).
    #[error("I/O engine stopped")]
    EngineStopped,
    /// The operating system reported an error.
    #[error("I/O error")]
    Io(#[source] io::Error),
}

/// Stable classification of [`VolumeError`], for mapping to NBD errnos and gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VolumeErrorKind {
    /// Malformed request: zero length, unaligned, too large.
    Invalid,
    /// Past the end of the volume.
    OutOfBounds,
    /// The operation cannot be done as asked.
    NotSupported,
    /// The host ran out of space.
    NoSpace,
    /// An I/O error, or the volume is failed.
    Io,
    /// Shutting down.
    Shutdown,
}

impl VolumeError {
    /// The stable kind of this error.
    pub fn kind(&self) -> VolumeErrorKind {
        match self {
            VolumeError::ZeroLength
            | VolumeError::Unaligned { .. }
            | VolumeError::TooLarge { .. } => VolumeErrorKind::Invalid,
            VolumeError::OutOfBounds { .. } => VolumeErrorKind::OutOfBounds,
            VolumeError::FastZeroUnsupported => VolumeErrorKind::NotSupported,
            VolumeError::Failed => VolumeErrorKind::Io,
            VolumeError::EngineStopped => VolumeErrorKind::Shutdown,
            VolumeError::Io(e) => match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => VolumeErrorKind::NoSpace,
                _ if e.kind() == io::ErrorKind::BrokenPipe => VolumeErrorKind::Shutdown,
                _ => VolumeErrorKind::Io,
            },
        }
    }
}

/// An open volume. Share it behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Volume {
    path: PathBuf,
    file: Arc<File>,
    /// Grows (never shrinks) while open: see [`Volume::grow`].
    size: AtomicU64,
    engine: Engine,
    failed: AtomicBool,
    /// Do not fail stop (EC2's `autoEnableIO`).
    auto_enable_io: AtomicBool,
    /// When I/O was last kept on after a failure (ms since the epoch; 0: never).
    auto_enabled_ms: AtomicU64,
    cbt: ChangedBlocks,
    inline: InlinePolicy,
    /// The file mapped for [`SendMode::Copy`] ranges, made at the first one; remade larger when
    /// a range lies past it (after [`Volume::grow`]). `None` inside: not made yet.
    map: Mutex<Option<Arc<Mapping>>>,
    /// The volume's key when it is encrypted at rest.
    cipher: Option<Arc<SectorCipher>>,
}

/// The changed-block sidecar of the volume file at `path`.
fn cbt_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".cbt");
    PathBuf::from(p)
}

impl Volume {
    /// Creates a new zero-filled (sparse) volume file of `size` bytes and its tracking sidecar.
    /// Fails if the file exists. Durable when it returns.
    pub fn create(path: &Path, size: u64) -> Result<(), VolumeError> {
        if size == 0 || !size.is_multiple_of(SECTOR_SIZE) {
            return Err(VolumeError::Unaligned {
                offset: 0,
                len: size,
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(VolumeError::Io)?;
        file.set_len(size).map_err(VolumeError::Io)?;
        file.sync_all().map_err(VolumeError::Io)?;
        ChangedBlocks::create(&cbt_path(path), size).map_err(VolumeError::Io)?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(VolumeError::Io)?;
        }
        Ok(())
    }

    /// Removes a volume's file and sidecar. Missing files are not an error.
    pub fn remove(path: &Path) -> Result<(), VolumeError> {
        for p in [path.to_path_buf(), cbt_path(path)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(VolumeError::Io(e)),
            }
        }
        Ok(())
    }

    /// Opens an existing volume file with the default [`InlinePolicy`].
    pub fn open(path: &Path, engine: Engine) -> Result<Volume, VolumeError> {
        Volume::open_with(path, engine, InlinePolicy::DEFAULT)
    }

    /// Opens an existing volume file; its size is the file's length.
    pub fn open_with(
        path: &Path,
        engine: Engine,
        inline: InlinePolicy,
    ) -> Result<Volume, VolumeError> {
        Volume::open_encrypted(path, engine, inline, None)
    }

    /// Opens an existing volume file whose sectors are encrypted under `cipher` (or plain with
    /// `None`). The key is not checked: a wrong key reads garbage, so the caller unwraps the
    /// volume's own.
    pub fn open_encrypted(
        path: &Path,
        engine: Engine,
        inline: InlinePolicy,
        cipher: Option<SectorCipher>,
    ) -> Result<Volume, VolumeError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(VolumeError::Io)?;
        let size = file.metadata().map_err(VolumeError::Io)?.len();
        let cbt = ChangedBlocks::open(&cbt_path(path), size).map_err(VolumeError::Io)?;
        Ok(Volume {
            path: path.to_path_buf(),
            file: Arc::new(file),
            size: AtomicU64::new(size),
            engine,
            failed: AtomicBool::new(false),
            auto_enable_io: AtomicBool::new(false),
            auto_enabled_ms: AtomicU64::new(0),
            cbt,
            inline,
            map: Mutex::new(None),
            cipher: cipher.map(Arc::new),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Grows the volume to `new_size` bytes (ModifyVolume). The new range reads as zeroes.
    /// Requests in flight are unaffected; later requests see the new size.
    pub fn grow(&self, new_size: u64) -> Result<(), VolumeError> {
        let old = self.size();
        if new_size <= old {
            return Ok(());
        }
        if !new_size.is_multiple_of(SECTOR_SIZE) {
            return Err(VolumeError::Unaligned {
                offset: 0,
                len: new_size,
            });
        }
        self.file.set_len(new_size).map_err(VolumeError::Io)?;
        self.file.sync_all().map_err(VolumeError::Io)?;
        self.cbt.grow(new_size);
        self.size.store(new_size, Ordering::Release);
        Ok(())
    }

    /// Grows the volume file at `path` (not open) to `new_size` bytes.
    pub fn grow_file(path: &Path, new_size: u64) -> Result<(), VolumeError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(VolumeError::Io)?;
        if file.metadata().map_err(VolumeError::Io)?.len() < new_size {
            file.set_len(new_size).map_err(VolumeError::Io)?;
            file.sync_all().map_err(VolumeError::Io)?;
        }
        Ok(())
    }

    /// The file backing this volume.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The volume's sector cipher, if it is encrypted at rest: for a caller that keeps copies of
    /// its data on disk (a snapshot's side file), which must be ciphertext too.
    pub fn cipher(&self) -> Option<&SectorCipher> {
        self.cipher.as_deref()
    }

    /// Runs `f` with the volume's cipher (it has one): on a blocking thread for `len` of at
    /// least `offload_from` inside a runtime, else here.
    async fn with_cipher<T: Send + 'static>(
        &self,
        len: usize,
        offload_from: usize,
        f: impl FnOnce(&SectorCipher) -> T + Send + 'static,
    ) -> Result<T, VolumeError> {
        let c = Arc::clone(self.cipher.as_ref().expect("an encrypted volume"));
        if len < offload_from || tokio::runtime::Handle::try_current().is_err() {
            return Ok(f(&c));
        }
        match tokio::task::spawn_blocking(move || f(&c)).await {
            Ok(t) => Ok(t),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(VolumeError::EngineStopped),
        }
    }

    /// Changed-block tracking of this volume.
    pub fn changed_blocks(&self) -> &ChangedBlocks {
        &self.cbt
    }

    /// Whether the volume has failed stop.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// EC2's EnableVolumeIO: a failed volume takes requests again. Writes acknowledged before
    /// the failure may be lost (the caller checks the data, as on EC2). Whether it had failed.
    pub fn enable_io(&self) -> bool {
        let was = self.failed.swap(false, Ordering::AcqRel);
        if was {
            tracing::warn!(path = %self.path.display(), "volume I/O enabled again after a failure");
        }
        was
    }

    /// EC2's `autoEnableIO`: with `on`, a failure that would stop the volume fails only the
    /// request that met it; later requests go on. Turning it on also enables a failed volume.
    pub fn set_auto_enable_io(&self, on: bool) {
        self.auto_enable_io.store(on, Ordering::Release);
        if on {
            self.enable_io();
        }
    }

    /// When a failure last found `autoEnableIO` on and I/O kept going (ms since the epoch).
    pub fn auto_enabled_at(&self) -> Option<u64> {
        Some(self.auto_enabled_ms.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    fn check(&self, offset: u64, len: u64, max: Option<u64>) -> Result<(), VolumeError> {
        if self.is_failed() {
            return Err(VolumeError::Failed);
        }
        if len == 0 {
            return Err(VolumeError::ZeroLength);
        }
        if !offset.is_multiple_of(SECTOR_SIZE) || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(VolumeError::Unaligned { offset, len });
        }
        if max.is_some_and(|m| len > m) {
            return Err(VolumeError::TooLarge { len });
        }
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(VolumeError::OutOfBounds { offset, len, size }),
        }
    }

    /// Records a failed write-side operation: the volume fails stop, unless the host is out of
    /// space. A write refused for space changed nothing that was acknowledged before (the page
    /// cache reserves space when a write is accepted), so the volume stays usable: reads go on,
    /// and writes succeed again once space frees up.
    fn fail(&self, err: io::Error) -> VolumeError {
        if matches!(
            err.raw_os_error(),
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
        ) {
            return VolumeError::Io(err);
        }
        self.fail_stop(err)
    }

    /// Records a failed operation that may have lost acknowledged data (any flush error: after
    /// a failed fsync the kernel may have dropped dirty pages): the volume fails stop.
    fn fail_stop(&self, err: io::Error) -> VolumeError {
        if err.kind() == io::ErrorKind::BrokenPipe {
            return VolumeError::EngineStopped;
        }
        if self.auto_enable_io.load(Ordering::Acquire) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64);
            self.auto_enabled_ms.store(now, Ordering::Release);
            tracing::error!(path = %self.path.display(), error = %err, "volume I/O failed; I/O stays enabled (autoEnableIO)");
            return VolumeError::Io(err);
        }
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(path = %self.path.display(), error = %err, "volume I/O failed; failing stop");
        }
        VolumeError::Io(err)
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, VolumeError> {
        self.check(offset, len, Some(MAX_IO_BYTES))?;
        self.read_checked(offset, len).await
    }

    /// [`Volume::read`] of a range already checked.
    async fn read_checked(&self, offset: u64, len: u64) -> Result<Vec<u8>, VolumeError> {
        // `len <= MAX_IO_BYTES` was checked, so it fits in usize.
        let mut buf = Vec::with_capacity(len as usize);
        if !(self.inline.reads && self.read_cached(&mut buf, offset)) {
            let c = self
                .engine
                .run(&self.file, OpKind::Read { offset, buf })
                .await;
            buf = match c.result {
                Ok(()) => c.buf.unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(VolumeError::EngineStopped);
                }
                Err(e) => return Err(VolumeError::Io(e)),
            };
        }
        if self.cipher.is_some() {
            buf = self
                .with_cipher(buf.len(), DECRYPT_OFFLOAD_BYTES, move |c| {
                    c.decrypt(offset, &mut buf);
                    buf
                })
                .await?;
        }
        Ok(buf)
    }

    /// Reads `len` bytes at `offset` for a caller that can send a file range to a socket as
    /// `mode` says: a range that is entirely in the page cache comes back as
    /// [`ReadData::File`], not read into memory; anything else (or everything, where the file
    /// cannot be mapped for [`SendMode::Copy`]) is read into memory as by [`Volume::read`].
    pub async fn read_for_send(
        &self,
        offset: u64,
        len: u64,
        mode: SendMode,
    ) -> Result<ReadData, VolumeError> {
        self.check(offset, len, Some(MAX_IO_BYTES))?;
        // The file holds ciphertext for an encrypted volume: its ranges are never sent as they are.
        if self.cipher.is_none()
            && self.inline.reads
            && pagecache::fully_cached(&self.file, offset, len)
        {
            let file = Arc::clone(&self.file);
            match mode {
                SendMode::PageRefs => {
                    return Ok(ReadData::File(FileRange::new(file, offset, len)));
                }
                SendMode::Copy => {
                    if let Some(map) = self.mapping(offset + len) {
                        return Ok(ReadData::File(FileRange::mapped(file, offset, len, map)));
                    }
                }
            }
        }
        self.read_checked(offset, len).await.map(ReadData::Bytes)
    }

    /// A mapping of the file that covers its first `end` bytes, if one can be made.
    fn mapping(&self, end: u64) -> Option<Arc<Mapping>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = map.as_ref().filter(|m| m.len() >= end) {
            return Some(Arc::clone(m));
        }
        // The whole file as it is now: it only grows, so this is remade once per growth at most
        // (ranges of the old mapping keep it alive until they are sent).
        let fresh = Arc::new(Mapping::new(&self.file, self.size().max(end))?);
        *map = Some(Arc::clone(&fresh));
        Some(fresh)
    }

    /// Writes `data` at `offset`; with `fua`, durably before returning.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), VolumeError> {
        let len = data.len() as u64;
        self.check(offset, len, Some(MAX_IO_BYTES))?;
        // Mark before writing: a snapshot racing this write must see the block as changed.
        self.cbt.mark(offset, len);
        self.write_checked(offset, data, fua).await
    }

    /// Writes `data` at `offset` without marking it changed: for restoring a block to the
    /// content of the snapshot the volume was created from (lazy hydration), which is no change
    /// since that snapshot.
    pub async fn write_untracked(
        &self,
        offset: u64,
        data: Bytes,
        fua: bool,
    ) -> Result<(), VolumeError> {
        self.check(offset, data.len() as u64, Some(MAX_IO_BYTES))?;
        self.write_checked(offset, data, fua).await
    }

    async fn write_checked(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), VolumeError> {
        let len = data.len() as u64;
        // Encrypted in this task (see DECRYPT_OFFLOAD_BYTES), and the write issued from it, so
        // a request dropped mid-way (a fenced session) writes nothing afterwards.
        let data = if self.cipher.is_some() {
            // Encrypted where it lies when this request owns its buffer; copied when it is
            // shared (the NBD and gRPC paths keep theirs).
            self.with_cipher(data.len(), ENCRYPT_OFFLOAD_BYTES, move |c| {
                match data.try_into_mut() {
                    Ok(mut owned) => {
                        c.encrypt(offset, &mut owned);
                        owned.freeze()
                    }
                    Err(shared) => Bytes::from(c.encrypt_to_vec(offset, &shared)),
                }
            })
            .await?
        } else {
            data
        };
        if !fua && len <= self.inline.write_max {
            return self.write_inline(&data, offset).map_err(|e| self.fail(e));
        }
        let op = OpKind::Write {
            offset,
            data,
            dsync: fua,
        };
        self.engine
            .run(&self.file, op)
            .await
            .result
            .map_err(|e| self.fail(e))
    }

    /// Fills `buf` (empty, capacity = length) from the page cache without blocking. Returns
    /// false, with `buf` still empty, if any of it would have to wait for the disk.
    fn read_cached(&self, buf: &mut Vec<u8>, offset: u64) -> bool {
        let len = buf.capacity();
        if !self.pread_nowait(&mut buf.spare_capacity_mut()[..len], offset) {
            return false;
        }
        // SAFETY: `pread_nowait` initialised all `len` bytes.
        unsafe { buf.set_len(len) };
        true
    }

    /// Appends the `len` bytes at `offset` to `out` if all of them are in the page cache; false,
    /// with `out` as it was, if any would have to wait for the disk, if the range is not one
    /// [`Volume::read`] would accept, or if reads are never done inline. For a caller that
    /// answers a small cached read where it stands, into its reply buffer: no thread hop, no
    /// buffer of the read's own and no copy out of one. A false is no answer: the caller then
    /// reads with [`Volume::read`], which reports what was wrong.
    pub fn try_read_cached_into(&self, offset: u64, len: u64, out: &mut BytesMut) -> bool {
        if !self.inline.reads || self.check(offset, len, Some(MAX_IO_BYTES)).is_err() {
            return false;
        }
        // `len <= MAX_IO_BYTES` was checked, so it fits in usize.
        let len = len as usize;
        out.reserve(len);
        if !self.pread_nowait(&mut out.spare_capacity_mut()[..len], offset) {
            return false;
        }
        let start = out.len();
        // SAFETY: `pread_nowait` initialised the `len` bytes after `out`'s end.
        unsafe { out.set_len(start + len) };
        if let Some(c) = &self.cipher {
            c.decrypt(offset, &mut out[start..]);
        }
        true
    }

    /// Fills all of `dst` from the file at `offset` with `preadv2(RWF_NOWAIT)`: true only if
    /// every byte was read, which the page cache alone could do (false on EAGAIN, a partly cached
    /// range, or a kernel without NOWAIT; `dst` may then hold some bytes).
    fn pread_nowait(&self, dst: &mut [std::mem::MaybeUninit<u8>], offset: u64) -> bool {
        let Ok(off) = i64::try_from(offset) else {
            return false;
        };
        let iov = libc::iovec {
            iov_base: dst.as_mut_ptr().cast(),
            iov_len: dst.len(),
        };
        // SAFETY: the iovec covers `dst`, which outlives the call and which the kernel may fill
        // whatever it held; the fd is kept open by `self.file`.
        let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
        n >= 0 && n as usize == dst.len()
    }

    /// Writes `data` into the page cache on the calling thread.
    fn write_inline(&self, data: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(data, offset)
    }

    /// Makes every completed write durable.
    pub async fn flush(&self) -> Result<(), VolumeError> {
        if self.is_failed() {
            return Err(VolumeError::Failed);
        }
        self.engine
            .run(&self.file, OpKind::Fsync)
            .await
            .result
            .map_err(|e| self.fail_stop(e))
    }

    /// Discards `[offset, offset + len)`: it reads as zeroes afterwards and its space is freed.
    pub async fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), VolumeError> {
        self.check(offset, len, None)?;
        self.cbt.mark(offset, len);
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        match self.fallocate(offset, len, mode).await {
            Ok(()) => {}
            // Trim is advisory: a file system without hole punching just keeps the data.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
            Err(e) => return Err(self.fail(e)),
        }
        if fua { self.flush().await } else { Ok(()) }
    }

    /// Makes `[offset, offset + len)` read as zeroes.
    pub async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> Result<(), VolumeError> {
        self.check(offset, len, None)?;
        self.cbt.mark(offset, len);
        let mode = if flags.may_trim {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
        };
        match self.fallocate(offset, len, mode).await {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                if flags.fast_only {
                    return Err(VolumeError::FastZeroUnsupported);
                }
                self.write_zero_buffers(offset, len).await?;
            }
            Err(e) => return Err(self.fail(e)),
        }
        if flags.fua {
            self.flush().await
        } else {
            Ok(())
        }
    }

    async fn fallocate(&self, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        self.engine
            .run(&self.file, OpKind::Fallocate { offset, len, mode })
            .await
            .result
    }

    async fn write_zero_buffers(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        let zeroes = Bytes::from(vec![0u8; ZERO_CHUNK.min(len as usize)]);
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = (end - pos).min(zeroes.len() as u64) as usize;
            let op = OpKind::Write {
                offset: pos,
                data: zeroes.slice(..n),
                dsync: false,
            };
            self.engine
                .run(&self.file, op)
                .await
                .result
                .map_err(|e| self.fail(e))?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Allocation status of `[offset, offset + len)`, at most `max_extents` extents (at least
    /// one); the extents may cover less than `len` when the limit is hit.
    ///
    /// Uses `SEEK_DATA`/`SEEK_HOLE` on the calling thread: these are metadata lookups that do
    /// not wait for data I/O.
    pub fn block_status(
        &self,
        offset: u64,
        len: u64,
        max_extents: usize,
    ) -> Result<Vec<Extent>, VolumeError> {
        self.check(offset, len, None)?;
        let end = offset + len;
        let fd = self.file.as_raw_fd();
        let mut out: Vec<Extent> = Vec::new();
        let mut pos = offset;
        while pos < end && out.len() < max_extents.max(1) {
            let data = seek(fd, pos, libc::SEEK_DATA)?.unwrap_or(self.size());
            let (next, hole) = if data > pos {
                (data.min(end), true)
            } else {
                (
                    seek(fd, pos, libc::SEEK_HOLE)?
                        .unwrap_or(self.size())
                        .min(end),
                    false,
                )
            };
            match out.last_mut() {
                Some(last) if last.hole == hole => last.length += next - pos,
                _ => out.push(Extent {
                    length: next - pos,
                    hole,
                }),
            }
            pos = next;
        }
        Ok(out)
    }

    /// Hints that `[offset, offset + len)` will be read soon (NBD `CACHE`).
    pub fn cache(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        self.check(offset, len, None)?;
        let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(VolumeError::OutOfBounds {
                offset,
                len,
                size: self.size(),
            });
        };
        // SAFETY: advisory call on a descriptor this volume keeps open.
        let rc = unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), off, l, libc::POSIX_FADV_WILLNEED)
        };
        if rc != 0 {
            return Err(VolumeError::Io(io::Error::from_raw_os_error(rc)));
        }
        Ok(())
    }

    /// Clean close: flushes data, then persists changed-block tracking as clean.
    pub async fn close(&self) -> Result<(), VolumeError> {
        self.flush().await?;
        self.cbt.close().map_err(VolumeError::Io)
    }
}

/// `lseek(fd, pos, whence)`; `None` when there is no data/hole at or after `pos` (ENXIO).
fn seek(fd: i32, pos: u64, whence: i32) -> Result<Option<u64>, VolumeError> {
    let off = i64::try_from(pos)
        .map_err(|_| VolumeError::Io(io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: lseek on a descriptor the volume keeps open; the result is checked.
    let r = unsafe { libc::lseek(fd, off, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENXIO) {
        return Ok(None);
    }
    Err(VolumeError::Io(err))
}

#[cfg(test)]
mod tests;
