//! Reads answered from the page cache without reading them into a buffer: residency checks
//! (`cachestat`) and the file ranges handed to a caller that sends them straight to a socket.
//!
//! A large read normally costs two copies on the server: page cache → buffer, buffer → socket.
//! When the whole range is cached, the caller can instead send the file range itself, in one of
//! two ways ([`SendMode`]):
//! * **Copy** (the default of the NBD server): `send` from a read-only shared mapping of the
//!   file ([`Mapping`]). The kernel copies the cached pages into the socket buffer during the
//!   call, so the bytes sent are the ones the pages hold at that moment and nothing refers to the
//!   file afterwards. One copy instead of two.
//! * **Page references** (`sendfile`): the kernel puts references to the pages themselves in
//!   the socket buffer. No copy on the server at all, but see the catch below.
//!
//! No code of this process ever touches the mapped memory: only the kernel reads it, inside
//! `send`, where a page that cannot be read makes the call fail (`EFAULT`) instead of raising
//! `SIGBUS`.
//!
//! # The catch of page references
//! The bytes are whatever the pages hold when the receiver finally copies them, not what they
//! held when the read completed: a socket buffer keeps references to the pages, and a later
//! write changes them in place. Between requests of one client that is a race the block
//! protocols leave undefined; across a detach it is not (the old client can receive data the
//! volume's next attachment wrote), which is why the NBD server makes `sendfile` an option.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The bytes of a read.
#[derive(Debug)]
pub enum ReadData {
    /// Copied into memory.
    Bytes(Vec<u8>),
    /// Still in the volume file's page cache, to be sent from there.
    File(FileRange),
}

impl ReadData {
    /// The bytes in memory, copying a file range if need be.
    pub fn into_vec(self) -> io::Result<Vec<u8>> {
        match self {
            ReadData::Bytes(v) => Ok(v),
            ReadData::File(r) => r.read_to_vec(),
        }
    }
}

/// How a caller sends [`ReadData::File`] ranges to its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// Copied into the socket from a mapping of the file when sent.
    Copy,
    /// Page references handed to the socket (`sendfile`); see the module docs for the catch.
    PageRefs,
}

/// Address space all mappings together may take. Mapping a volume only reserves addresses, but
/// those are finite (128 TiB for a process on x86-64), and a volume that cannot be mapped is
/// just read into memory as before.
const MAPPED_MAX: u64 = 32 << 40;
/// Address space taken by live mappings.
static MAPPED: AtomicU64 = AtomicU64::new(0);

/// A read-only, shared mapping of the first `len` bytes of a volume file.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// Start address. Kept as an integer: the memory is never dereferenced by this process.
    addr: usize,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` bytes of `file`; `None` if the address space budget or the kernel
    /// says no.
    pub(crate) fn new(file: &File, len: u64) -> Option<Mapping> {
        let size = usize::try_from(len).ok().filter(|&l| l > 0)?;
        if MAPPED.fetch_add(len, Ordering::AcqRel) + len > MAPPED_MAX {
            MAPPED.fetch_sub(len, Ordering::AcqRel);
            return None;
        }
        // SAFETY: a new read-only shared mapping at an address the kernel picks; it aliases no
        // Rust object, and the file descriptor is open for the call.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            MAPPED.fetch_sub(len, Ordering::AcqRel);
            tracing::debug!(error = %io::Error::last_os_error(), "mapping a volume file failed; reads are copied");
            return None;
        }
        Some(Mapping {
            addr: addr as usize,
            len: size,
        })
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> u64 {
        self.len as u64
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped; nothing refers to it any more (ranges
        // hold the `Arc` this lives in).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        MAPPED.fetch_sub(self.len as u64, Ordering::AcqRel);
    }
}

/// A byte range of an open volume file. Holds the file (and its mapping, if any) open until
/// dropped.
#[derive(Debug, Clone)]
pub struct FileRange {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// Set for [`SendMode::Copy`]; covers the whole range.
    map: Option<Arc<Mapping>>,
}

impl FileRange {
    /// A range sent with `sendfile`.
    pub(crate) fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        FileRange {
            file,
            offset,
            len,
            map: None,
        }
    }

    /// A range sent by copying it out of `map`, which must cover it.
    pub(crate) fn mapped(file: Arc<File>, offset: u64, len: u64, map: Arc<Mapping>) -> Self {
        debug_assert!(offset + len <= map.len());
        FileRange {
            file,
            offset,
            len,
            map: Some(map),
        }
    }

    /// Bytes left.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops the first `n` bytes (they were sent).
    pub fn advance(&mut self, n: u64) {
        let n = n.min(self.len);
        self.offset += n;
        self.len -= n;
    }

    /// Sends as much of the range as `socket` takes now, without waiting: copied from the
    /// mapping if the range has one ([`SendMode::Copy`]), else with `sendfile`. Returns the
    /// bytes sent; `WouldBlock` if the socket is full. Zero means the file ended early.
    pub fn send_to(&self, socket: RawFd) -> io::Result<usize> {
        if let Some(map) = &self.map {
            // Within the mapping (checked at construction), so within the address space.
            let start = map.addr + self.offset as usize;
            let count = self.len.min(isize::MAX as u64) as usize;
            // SAFETY: `[start, start + count)` lies in `map`, which the `Arc` keeps mapped for
            // the call; the kernel only reads it (a page it cannot read fails the call with
            // EFAULT). The socket is open (the caller's).
            let n = unsafe {
                libc::send(
                    socket,
                    start as *const libc::c_void,
                    count,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(n as usize);
        }
        let mut off = libc::off_t::try_from(self.offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // sendfile moves at most 0x7ffff000 bytes per call; ranges are at most 32 MiB.
        let count = self.len.min(0x7fff_f000) as usize;
        // SAFETY: both descriptors are open for the call (the socket by the caller, the file by
        // `self.file`); `off` is a live off_t the kernel updates.
        let n = unsafe { libc::sendfile(socket, self.file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Copies the range into memory.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let len =
            usize::try_from(self.len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, self.offset)?;
        Ok(buf)
    }
}

/// Set once `cachestat` turned out to be missing (kernels before 6.5, or filtered by seccomp).
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// `struct cachestat_range` of the `cachestat(2)` ABI.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of the `cachestat(2)` ABI.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// `cachestat` has the same number on every architecture (it was added after the tables were
/// unified).
const SYS_CACHESTAT: libc::c_long = 451;

/// Whether every page of `[offset, offset + len)` of `file` is in the page cache. False when
/// the kernel cannot tell.
pub(crate) fn fully_cached(file: &File, offset: u64, len: u64) -> bool {
    const PAGE: u64 = 4096;
    if len == 0 || NO_CACHESTAT.load(Ordering::Relaxed) {
        return false;
    }
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: `range` and `stat` are live, correctly laid out ABI structs; the fd is open.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &raw const range,
            &raw mut stat,
            0u32,
        )
    };
    if rc != 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            NO_CACHESTAT.store(true, Ordering::Relaxed);
        }
        return false;
    }
    // The kernel counts the pages the range touches. This assumes 4 KiB pages; on larger pages
    // the count needed is smaller, so the check is only stricter.
    let pages = (offset + len).div_ceil(PAGE) - offset / PAGE;
    stat.nr_cache >= pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_written_range_is_cached_and_sends_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.set_len(1 << 20).unwrap();
        let file = Arc::new(f);
        if NO_CACHESTAT.load(Ordering::Relaxed) || !fully_cached(&file, 0, 4096) {
            eprintln!("SKIP: this kernel has no cachestat(2)");
            return;
        }
        assert!(fully_cached(&file, 512, 200 * 1024));
        // Never written: a hole, not in the page cache.
        assert!(!fully_cached(&file, 512 * 1024, 4096));
        assert!(!fully_cached(&file, 0, 0));

        let map = Arc::new(Mapping::new(&file, 1 << 20).expect("maps"));
        for mut range in [
            FileRange::new(Arc::clone(&file), 1000, 100_000),
            FileRange::mapped(Arc::clone(&file), 1000, 100_000, Arc::clone(&map)),
        ] {
            assert_eq!(range.read_to_vec().unwrap(), &data[1000..101_000]);
            let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                std::io::Read::read_to_end(&mut b, &mut got).unwrap();
                got
            });
            while !range.is_empty() {
                let n = match range.send_to(a.as_raw_fd()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::yield_now();
                        continue;
                    }
                    r => r.unwrap(),
                };
                assert!(n > 0);
                range.advance(n as u64);
            }
            a.flush().unwrap();
            drop(a);
            assert_eq!(reader.join().unwrap(), &data[1000..101_000]);
        }
    }

    /// A mapped range is copied when sent: a write after the send does not change what the
    /// receiver gets, and one before it does (the bytes are taken at the moment of the send).
    #[test]
    fn mapped_ranges_send_the_bytes_of_the_moment() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(
            File::options()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(dir.path().join("f"))
                .unwrap(),
        );
        file.write_all_at(&[1u8; 8192], 0).unwrap();
        let map = Arc::new(Mapping::new(&file, 8192).unwrap());
        let range = FileRange::mapped(Arc::clone(&file), 0, 8192, map);
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        file.write_all_at(&[2u8; 4096], 0).unwrap();
        assert_eq!(range.send_to(a.as_raw_fd()).unwrap(), 8192);
        file.write_all_at(&[3u8; 8192], 0).unwrap();
        let mut got = vec![0u8; 8192];
        std::io::Read::read_exact(&mut b, &mut got).unwrap();
        assert_eq!(&got[..4096], &[2u8; 4096][..]);
        assert_eq!(&got[4096..], &[1u8; 4096][..]);
    }
}
