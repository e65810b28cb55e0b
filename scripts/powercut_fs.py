#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Power-cut filesystem for crash tests: a FUSE passthrough that loses unsynced data.

    python3 scripts/powercut_fs.py BACKING_DIR MOUNTPOINT

Mounts MOUNTPOINT as a view of BACKING_DIR and runs in the foreground; prints
`mounted MOUNTPOINT` (flushed) once the kernel has handed the mount to us.

What it owns: the DATA of regular files. Bytes written through the mount (write,
hole punch, zero range) are kept in this process's memory, per backing inode, and
reach the backing file only when that file is fsync'ed or fdatasync'ed (O_SYNC and
O_DSYNC writes count: the kernel turns them into an fsync). close() does not persist
anything. Killing this process with SIGKILL is the power cut: whatever was not
synced is gone, and BACKING_DIR then holds exactly what was synced. The crash test
then detaches the dead mount (`fusermount3 -u -z MOUNTPOINT` or `umount -l`) and
restarts the program under test directly on BACKING_DIR. Any other exit (SIGTERM,
unmount) also drops unsynced data: nothing is flushed at shutdown.

Limits:
- Metadata is not modelled as lost: create, mkdir, unlink, rename, link, symlink,
  chmod/chown/utimens, xattrs, truncate and fallocate's allocation modes (0 and
  KEEP_SIZE) go to BACKING_DIR at once, as if every one were followed by a
  directory fsync. A truncate also trims the unsynced data it cuts off.
- syncfs(2)/sync(2) on the mount do not reach a FUSE daemon (Linux only sends
  FUSE_SYNCFS for virtiofs), so they persist nothing here; fsync each file.
- One process, one global lock: correct under concurrency, not fast.
- Unsynced data belongs to the backing inode: it follows renames, is shared by hard
  links, and is dropped when the last name goes and no handle is open. (The kernel
  sees each hard link's name as its own inode, so its cached attributes and pages
  for one name can lag behind changes made through another for a second or so.)
- An unlinked file stays usable through its open handles (read, write, fsync), but
  stat/fstat of it get ENOENT: libfuse 2 looks such requests up by path (the mount
  uses hard_remove so that no .fuse_hidden files are left in BACKING_DIR).
- rename(2) flags (RENAME_NOREPLACE, RENAME_EXCHANGE) are refused by libfuse 2.
- libfuse 2 has no lseek op, so SEEK_DATA/SEEK_HOLE on the mount see every file as
  all data up to its size (the kernel's generic answer); reads are still right.
- fallocate: modes 0 and KEEP_SIZE (passed through), PUNCH_HOLE|KEEP_SIZE and
  ZERO_RANGE[|KEEP_SIZE] (kept as unsynced zeroes); other modes get EOPNOTSUPP.
- The kernel's page cache on the mount may still hold data after the cut; that is
  why the test must read the backing directory, never the dead mount.

Needs: the `fusepy` Python package (ctypes bindings for libfuse 2) and Debian's
`libfuse2` (plus `fuse3` for fusermount3). fusepy's operations table stops at
ioctl, so this file extends it with libfuse 2.9's remaining members to reach
`fallocate`.
"""

import bisect
import ctypes
import ctypes.util
import errno
import os
import stat
import sys
import threading

import fuse

PAGE = 4096
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _fallocate(fd, mode, offset, length):
    """fallocate(2) on a backing file descriptor."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Dirty:
    """Unsynced data of one backing inode.

    Reading the file = backing bytes (zero past the backing end), then `zeros`
    (ranges punched or zeroed since the last sync) over them, then `pages` over that.
    A page always holds its full current content, and bytes past `size` are zero.
    """

    def __init__(self, size):
        self.size = size  # logical size, never below the backing file's size
        self.pages = {}  # page index -> bytearray(PAGE)
        self.zeros = []  # sorted, disjoint (start, end) byte ranges

    def _zero_ranges(self, start, end):
        """The recorded zero ranges overlapping [start, end)."""
        i = bisect.bisect_right(self.zeros, start, key=lambda r: r[1])
        while i < len(self.zeros) and self.zeros[i][0] < end:
            yield self.zeros[i]
            i += 1

    def overlay(self, buf, offset):
        """Applies this unsynced state to `buf`, which holds the backing bytes at `offset`."""
        end = offset + len(buf)
        for s, e in self._zero_ranges(offset, end):
            s, e = max(s, offset), min(e, end)
            buf[s - offset : e - offset] = bytes(e - s)
        for idx in range(offset // PAGE, (end - 1) // PAGE + 1):
            page = self.pages.get(idx)
            if page is not None:
                s, e = max(idx * PAGE, offset), min((idx + 1) * PAGE, end)
                buf[s - offset : e - offset] = page[s - idx * PAGE : e - idx * PAGE]

    def _pages_in(self, first, last):
        """Indexes of the dirty pages in [first, last], whichever way is cheaper to find."""
        if last - first + 1 <= len(self.pages):
            return [i for i in range(first, last + 1) if i in self.pages]
        return [i for i in self.pages if first <= i <= last]

    def zero(self, start, end):
        """Records [start, end) as reading zero from now on."""
        if start >= end:
            return
        for idx in self._pages_in(start // PAGE, (end - 1) // PAGE):
            s, e = max(start, idx * PAGE), min(end, (idx + 1) * PAGE)
            if e - s == PAGE:
                del self.pages[idx]
            else:
                self.pages[idx][s - idx * PAGE : e - idx * PAGE] = bytes(e - s)
        # Merge into the sorted disjoint list (ends are sorted too).
        i = bisect.bisect_left(self.zeros, start, key=lambda r: r[1])
        j = i
        while j < len(self.zeros) and self.zeros[j][0] <= end:
            start, end = min(start, self.zeros[j][0]), max(end, self.zeros[j][1])
            j += 1
        self.zeros[i:j] = [(start, end)]

    def truncate(self, size):
        """Forgets unsynced data at and past `size`, which becomes the logical size."""
        if size < self.size:
            for idx in self._pages_in(size // PAGE, (self.size - 1) // PAGE):
                if idx * PAGE >= size:
                    del self.pages[idx]
                else:
                    page = self.pages[idx]
                    page[size - idx * PAGE :] = bytes(PAGE - (size - idx * PAGE))
            self.zeros = [(s, min(e, size)) for s, e in self.zeros if s < size]
        self.size = size


class PowerCutFS(fuse.Operations):
    use_ns = True  # times in nanoseconds (fusepy's non-deprecated mode)
    flag_nullpath_ok = True  # with hard_remove: open handles of unlinked files keep working

    def __init__(self, backing, mountpoint):
        # State lives in underscored attributes: fusepy registers every public attribute
        # named like a FUSE op (a `self.lock` would become the `lock` op).
        self._backing = os.path.realpath(backing)
        self._mountpoint = mountpoint
        self._mu = threading.RLock()
        self._unsynced = {}  # (st_dev, st_ino) -> Dirty
        self._fd_key = {}  # open backing fd -> (st_dev, st_ino)
        self._opens = {}  # (st_dev, st_ino) -> number of open backing fds

    def _path(self, path):
        return os.path.join(self._backing, path.lstrip("/"))

    @staticmethod
    def _key(st):
        return (st.st_dev, st.st_ino)

    # ---- lifecycle ----

    def init(self, path):
        print(f"mounted {self._mountpoint}", flush=True)

    # ---- data ----

    def _read(self, fd, offset, size):
        """The logical bytes [offset, offset + size), clipped to the logical size."""
        d = self._unsynced.get(self._fd_key[fd])
        if d is None:
            return os.pread(fd, size, offset)
        size = max(0, min(size, d.size - offset))
        if size == 0:
            return b""
        buf = bytearray(os.pread(fd, size, offset))
        buf.extend(bytes(size - len(buf)))
        d.overlay(buf, offset)
        return bytes(buf)

    def _dirty(self, fd):
        key = self._fd_key[fd]
        d = self._unsynced.get(key)
        if d is None:
            d = self._unsynced[key] = Dirty(os.fstat(fd).st_size)
        return d

    def read(self, path, size, offset, fh):
        with self._mu:
            return self._read(fh, offset, size)

    def write(self, path, data, offset, fh):
        with self._mu:
            d = self._dirty(fh)
            pos, end = offset, offset + len(data)
            while pos < end:
                idx, in_page = divmod(pos, PAGE)
                n = min(PAGE - in_page, end - pos)
                page = d.pages.get(idx)
                if page is None and n == PAGE:
                    page = d.pages[idx] = bytearray(PAGE)  # overwritten whole below
                elif page is None:
                    # Current content of the page (zero past the logical size).
                    page = bytearray(self._read(fh, idx * PAGE, PAGE))
                    page.extend(bytes(PAGE - len(page)))
                    d.pages[idx] = page
                page[in_page : in_page + n] = data[pos - offset : pos - offset + n]
                pos += n
            d.size = max(d.size, end)
            return len(data)

    def fsync(self, path, datasync, fh):
        with self._mu:
            key = self._fd_key[fh]
            d = self._unsynced.get(key)
            if d is not None:
                for s, e in d.zeros:
                    try:
                        _fallocate(fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s, e - s)
                    except OSError as err:
                        if err.errno != errno.EOPNOTSUPP:
                            raise
                        os.pwrite(fh, bytes(e - s), s)
                run = []  # consecutive pages, written with one pwritev
                for idx in sorted(d.pages):
                    if run and (idx != run[-1] + 1 or len(run) == 256):
                        self._write_run(fh, d, run)
                        run = []
                    run.append(idx)
                if run:
                    self._write_run(fh, d, run)
                if os.fstat(fh).st_size != d.size:
                    os.ftruncate(fh, d.size)
                del self._unsynced[key]  # only once all of it reached the backing file
            (os.fdatasync if datasync else os.fsync)(fh)

    @staticmethod
    def _write_run(fd, d, run):
        start = run[0] * PAGE
        bufs = [d.pages[i] for i in run]
        n = min(len(run) * PAGE, d.size - start)
        if n <= 0:
            return
        if n < len(run) * PAGE:  # the last page runs past the logical size
            last = n - (len(run) - 1) * PAGE
            bufs[-1] = bufs[-1][:last]
        done = os.pwritev(fd, bufs, start)
        if done != n:  # short write: finish it the plain way
            os.pwrite(fd, b"".join(bufs)[done:], start + done)

    def truncate(self, path, length, fh=None):
        with self._mu:
            if fh is not None:
                os.ftruncate(fh, length)
                key = self._fd_key[fh]
            else:
                p = self._path(path)
                os.truncate(p, length)
                key = self._key(os.stat(p))
            d = self._unsynced.get(key)
            if d is not None:
                d.truncate(length)

    def fallocate(self, path, mode, offset, length, fh):
        with self._mu:
            if mode in (0, FALLOC_FL_KEEP_SIZE):
                # Allocation changes no bytes; a size change is metadata.
                _fallocate(fh, mode, offset, length)
                d = self._unsynced.get(self._fd_key[fh])
                if d is not None and mode == 0:
                    d.size = max(d.size, offset + length)
                return
            if mode not in (
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                FALLOC_FL_ZERO_RANGE,
                FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            ):
                raise fuse.FuseOSError(errno.EOPNOTSUPP)
            d = self._dirty(fh)
            end = offset + length
            if not mode & FALLOC_FL_KEEP_SIZE:
                d.size = max(d.size, end)
            d.zero(offset, min(end, d.size))

    # ---- open files ----

    def _opened(self, fd):
        key = self._key(os.fstat(fd))
        self._fd_key[fd] = key
        self._opens[key] = self._opens.get(key, 0) + 1
        return fd

    def open(self, path, flags):
        with self._mu:
            # Always read-write and never O_APPEND: the kernel gives write offsets, and
            # both pages to fill and fsync need the backing file readable and writable.
            fd = self._opened(os.open(self._path(path), os.O_RDWR))
            if flags & os.O_TRUNC:
                self.truncate(path, 0, fd)
            return fd

    def create(self, path, mode, fi=None):
        with self._mu:
            return self._opened(os.open(self._path(path), os.O_RDWR | os.O_CREAT, mode))

    def flush(self, path, fh):
        return 0  # close() persists nothing

    def release(self, path, fh):
        with self._mu:
            key = self._fd_key.pop(fh)
            self._opens[key] -= 1
            if self._opens[key] == 0:
                del self._opens[key]
                if os.fstat(fh).st_nlink == 0:  # last handle of an unlinked file
                    self._unsynced.pop(key, None)
            os.close(fh)

    def getattr(self, path, fh=None):
        with self._mu:
            if isinstance(fh, int):
                st = os.fstat(fh)
            else:
                st = os.lstat(self._path(path))
            attrs = {
                k: getattr(st, k)
                for k in ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_rdev",
                          "st_size", "st_blocks", "st_blksize")
            }
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns,
                         st_ctime=st.st_ctime_ns)
            d = self._unsynced.get(self._key(st)) if stat.S_ISREG(st.st_mode) else None
            if d is not None:
                attrs["st_size"] = d.size
                attrs["st_blocks"] = st.st_blocks + len(d.pages) * (PAGE // 512)
            return attrs

    # ---- metadata: straight through to the backing directory ----

    def _drop_if_last_link(self, st):
        """Forgets the unsynced data of a file whose last name is going away."""
        key = self._key(st)
        if stat.S_ISREG(st.st_mode) and st.st_nlink <= 1 and key not in self._opens:
            self._unsynced.pop(key, None)

    def unlink(self, path):
        with self._mu:
            p = self._path(path)
            st = os.lstat(p)
            os.unlink(p)
            self._drop_if_last_link(st)

    def rename(self, old, new):
        # Dirty data is keyed by inode, so it moves with the file by itself.
        with self._mu:
            src, dst = self._path(old), self._path(new)
            try:
                replaced = os.lstat(dst)
            except FileNotFoundError:
                replaced = None
            same = replaced is not None and self._key(replaced) == self._key(os.lstat(src))
            os.rename(src, dst)
            if replaced is not None and not same:
                self._drop_if_last_link(replaced)

    def mkdir(self, path, mode):
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        os.rmdir(self._path(path))

    def mknod(self, path, mode, dev):
        os.mknod(self._path(path), mode, dev)

    def symlink(self, target, source):
        os.symlink(source, self._path(target))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def link(self, target, source):
        os.link(self._path(source), self._path(target))

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._path(path), uid, gid, follow_symlinks=False)

    def utimens(self, path, times=None):
        if times is None:
            os.utime(self._path(path), follow_symlinks=False)
        else:
            os.utime(self._path(path), ns=times, follow_symlinks=False)

    def access(self, path, amode):
        if not os.access(self._path(path), amode, follow_symlinks=False):
            raise fuse.FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def statfs(self, path):
        sv = os.statvfs(self._path(path))
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                             "f_bavail", "f_files", "f_ffree", "f_favail",
                                             "f_flag", "f_namemax")}

    def fsyncdir(self, path, datasync, fh):
        return 0  # directory changes already went through

    def getxattr(self, path, name, position=0):
        return os.getxattr(self._path(path), name, follow_symlinks=False)

    def listxattr(self, path):
        return os.listxattr(self._path(path), follow_symlinks=False)

    def setxattr(self, path, name, value, options, position=0):
        os.setxattr(self._path(path), name, value, options, follow_symlinks=False)

    def removexattr(self, path, name):
        os.removexattr(self._path(path), name, follow_symlinks=False)


class _Operations(ctypes.Structure):
    """fusepy's table plus the members libfuse 2.9 has after ioctl, up to fallocate."""

    _fields_ = fuse.fuse_operations._fields_ + [
        ("poll", ctypes.c_void_p),
        ("write_buf", ctypes.c_void_p),
        ("read_buf", ctypes.c_void_p),
        ("flock", ctypes.c_void_p),
        ("fallocate", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                       fuse.c_off_t, fuse.c_off_t,
                                       ctypes.POINTER(fuse.fuse_file_info))),
    ]


class _FUSE(fuse.FUSE):
    def fallocate(self, path, mode, offset, length, fip):
        return self.operations("fallocate", self._decode_optional_path(path), mode, offset,
                               length, fip.contents.fh)


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} BACKING_DIR MOUNTPOINT")
    backing, mountpoint = sys.argv[1], sys.argv[2]
    if not os.path.isdir(backing):
        sys.exit(f"{backing}: not a directory")
    os.umask(0)  # the kernel already applied the caller's umask to create/mkdir modes
    fuse.fuse_operations = _Operations  # what fuse.FUSE fills in and hands to libfuse
    _FUSE(PowerCutFS(backing, mountpoint), mountpoint, foreground=True, nothreads=False,
          fsname="powercut", big_writes=True, hard_remove=True, use_ino=True)


if __name__ == "__main__":
    main()
