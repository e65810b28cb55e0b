//! Reads answered from the page cache without a copy: residency checks (`cachestat`) and the
//! file ranges handed to a caller that sends them straight to a socket (`sendfile`).
//!
//! A large read normally costs two copies on the server: page cache → buffer, buffer → socket.
//! When the whole range is cached, the caller can instead send the file range itself and the
//! kernel moves page references into the socket.
//!
//! # The catch
//! The bytes are whatever the pages hold when the receiver finally copies them, not what they
//! held when the read completed: a socket buffer keeps references to the pages, and a later
//! write changes them in place. Between requests of one client that is a race the block
//! protocols leave undefined; across a detach it is not (the old client can receive data the
//! volume's next attachment wrote), which is why the NBD server makes this an option.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The bytes of a read.
#[derive(Debug)]
pub enum ReadData {
    /// Copied into memory.
    Bytes(Vec<u8>),
    /// Still in the volume file's page cache, to be sent from there.
    File(FileRange),
}

impl ReadData {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            ReadData::Bytes(v) => v.len() as u64,
            ReadData::File(r) => r.len(),
        }
    }

    /// Whether the read is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in memory, copying a file range if need be.
    pub fn into_vec(self) -> io::Result<Vec<u8>> {
        match self {
            ReadData::Bytes(v) => Ok(v),
            ReadData::File(r) => r.read_to_vec(),
        }
    }
}

/// A byte range of an open volume file. Holds the file open until dropped.
#[derive(Debug, Clone)]
pub struct FileRange {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl FileRange {
    pub(crate) fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        FileRange { file, offset, len }
    }

    /// Byte offset in the file.
    pub fn offset(&self) -> u64 {
        self.offset
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

    /// Sends as much of the range as `socket` takes now with `sendfile`. Returns the bytes sent;
    /// `WouldBlock` if a non-blocking socket is full. Zero means the file ended early.
    pub fn send_to(&self, socket: RawFd) -> io::Result<usize> {
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

        let mut range = FileRange::new(Arc::clone(&file), 1000, 100_000);
        assert_eq!(range.read_to_vec().unwrap(), &data[1000..101_000]);
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut b, &mut got).unwrap();
            got
        });
        while !range.is_empty() {
            let n = range.send_to(a.as_raw_fd()).unwrap();
            assert!(n > 0);
            range.advance(n as u64);
        }
        a.flush().unwrap();
        drop(a);
        assert_eq!(reader.join().unwrap(), &data[1000..101_000]);
    }
}
