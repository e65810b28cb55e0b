//! A disk of a booted instance as a host block device: `nbdfuse` makes the disk's NBD export a
//! file in a FUSE mount, and a loop device (direct I/O, so its writes are not cached twice) makes
//! that file a block device the instance's kernel-side filesystems can mount.
//!
//! Every I/O still goes through the server's NBD export, so the volume's throttle, fencing,
//! snapshots and lazy restore apply inside the instance exactly as to any other client.
//!
//! # Teardown
//!
//! [`LocalDisk::detach`] waits until nothing holds the loop device (the instance's filesystems
//! are put down by the kernel after its last process exits, not always at once), flushes it (the
//! loop device passes the flush to the file, FUSE to `nbdfuse`, `nbdfuse` to the server as an NBD
//! FLUSH), detaches the loop device and unmounts the FUSE file, which ends `nbdfuse`. Only then
//! may the server fence the export.
//!
//! After a crash of the server its `nbdfuse` processes have lost their connections; the next
//! start calls [`cleanup_stale`] on each instance's disk directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The file `nbdfuse` serves in each disk's mount point.
const DISK_FILE: &str = "disk";
/// How long `nbdfuse` may take to connect and mount.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a loop device may stay held after its instance has exited.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);
/// How long `nbdfuse` may take to exit once unmounted.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Failure to attach or detach a disk on the host.
#[derive(Debug, thiserror::Error)]
pub enum LocalDiskError {
    /// A helper program could not be run or failed.
    #[error("{program} failed: {detail}")]
    Tool {
        /// The program.
        program: &'static str,
        /// Its stderr or the cause.
        detail: String,
    },
    /// `nbdfuse` did not mount in time or exited.
    #[error("nbdfuse did not serve {path}: {detail}")]
    NotMounted {
        /// The file it should have made.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The loop device stayed held by a filesystem.
    #[error("{device} is still in use {secs} s after its instance stopped", secs = RELEASE_TIMEOUT.as_secs())]
    Busy {
        /// The loop device.
        device: PathBuf,
    },
    /// A file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Whether this host has what booting needs: root (loop devices, mounts, namespaces),
/// `nbdfuse`, `losetup` and `fusermount3`, and the FUSE and loop devices. The missing piece is
/// named in the error.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the server does not run as root".into());
    }
    for tool in ["nbdfuse", "losetup", "fusermount3"] {
        if which(tool).is_none() {
            return Err(format!("{tool} is not installed"));
        }
    }
    for dev in ["/dev/fuse", "/dev/loop-control"] {
        if !Path::new(dev).exists() {
            return Err(format!("{dev} does not exist"));
        }
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// One disk attached on the host.
#[derive(Debug)]
pub struct LocalDisk {
    mount_dir: PathBuf,
    loop_device: PathBuf,
    nbdfuse: Child,
}

impl LocalDisk {
    /// Serves the NBD export at `uri` as a block device: `nbdfuse` on `mount_dir` (made if
    /// missing), then a loop device over its file.
    pub fn attach(mount_dir: &Path, uri: &str) -> Result<LocalDisk, LocalDiskError> {
        fs::create_dir_all(mount_dir).map_err(|source| LocalDiskError::Io {
            what: "creating",
            path: mount_dir.to_path_buf(),
            source,
        })?;
        let file = mount_dir.join(DISK_FILE);
        // In a process group of its own: a terminal's Ctrl-C or a signal to the server's group
        // must not end it (libfuse unmounts on SIGINT, SIGTERM and SIGHUP) before the
        // instance on it has been shut down.
        let mut nbdfuse = Command::new("nbdfuse")
            .process_group(0)
            .arg(&file)
            .arg(uri)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LocalDiskError::Tool {
                program: "nbdfuse",
                detail: e.to_string(),
            })?;
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Some(status) = nbdfuse.try_wait().ok().flatten() {
                let mut err = String::new();
                if let Some(mut e) = nbdfuse.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(LocalDiskError::NotMounted {
                    path: file,
                    detail: format!("nbdfuse exited ({status}): {}", err.trim()),
                });
            }
            if file.exists() {
                break;
            }
            if Instant::now() > deadline {
                let _ = nbdfuse.kill();
                let _ = nbdfuse.wait();
                let _ = unmount(mount_dir);
                return Err(LocalDiskError::NotMounted {
                    path: file,
                    detail: format!("not mounted after {} s", MOUNT_TIMEOUT.as_secs()),
                });
            }
            std::thread::sleep(POLL);
        }
        // nbdfuse's messages after start-up are not read; don't let a full pipe block it.
        drop(nbdfuse.stderr.take());
        let loop_device = match run(
            "losetup",
            Command::new("losetup")
                .args(["--find", "--show", "--direct-io=on"])
                .arg(&file),
        ) {
            Ok(out) => PathBuf::from(out.trim()),
            Err(e) => {
                let _ = unmount(mount_dir);
                end(&mut nbdfuse);
                return Err(e);
            }
        };
        Ok(LocalDisk {
            mount_dir: mount_dir.to_path_buf(),
            loop_device,
            nbdfuse,
        })
    }

    /// The host block device, e.g. `/dev/loop3`.
    pub fn device(&self) -> &Path {
        &self.loop_device
    }

    /// Reads `len` bytes at the start of the device.
    pub fn read_head(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let f = File::open(&self.loop_device)?;
        let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Waits until nothing holds the device, flushes it through to the server, detaches it and
    /// ends `nbdfuse`. On error the device is still detached and `nbdfuse` ended as far as
    /// possible (a flush that failed is reported: what the instance wrote last may be lost).
    pub fn detach(mut self) -> Result<(), LocalDiskError> {
        let flushed = release_and_flush(&self.loop_device);
        let detached = run(
            "losetup",
            Command::new("losetup").arg("-d").arg(&self.loop_device),
        );
        let unmounted = unmount(&self.mount_dir);
        end(&mut self.nbdfuse);
        flushed.and(detached.map(drop)).and(unmounted)
    }
}

/// Waits a while for an `nbdfuse` whose mount is gone to exit, then kills it: a lazy unmount
/// of a file still held (by a loop device that is busy) would keep it serving forever.
fn end(nbdfuse: &mut Child) {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if nbdfuse.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(POLL);
    }
    tracing::warn!(
        pid = nbdfuse.id(),
        "nbdfuse did not exit after its unmount; killing it"
    );
    let _ = nbdfuse.kill();
    let _ = nbdfuse.wait();
}

/// Waits until the device can be opened exclusively (no filesystem holds it), then fsyncs it.
pub(crate) fn release_and_flush(device: &Path) -> Result<(), LocalDiskError> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let f = loop {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(device)
        {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(POLL);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(LocalDiskError::Busy {
                    device: device.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(LocalDiskError::Io {
                    what: "opening",
                    path: device.to_path_buf(),
                    source,
                });
            }
        }
    };
    f.sync_all().map_err(|source| LocalDiskError::Io {
        what: "flushing",
        path: device.to_path_buf(),
        source,
    })
}

/// Unmounts a FUSE mount point (lazily if busy), which ends its `nbdfuse`.
fn unmount(mount_dir: &Path) -> Result<(), LocalDiskError> {
    match run(
        "fusermount3",
        Command::new("fusermount3").arg("-u").arg(mount_dir),
    ) {
        Ok(_) => Ok(()),
        Err(_) => run(
            "fusermount3",
            Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(mount_dir),
        )
        .map(drop),
    }
}

/// After a crash of the server, once the instance's processes are gone: detaches every loop
/// device backed by a file under `dir` (after waiting a while for the kernel to let go of it),
/// ends the `nbdfuse` processes serving files under it and unmounts their mounts. What was not
/// flushed is lost with the connection.
pub fn cleanup_stale(dir: &Path) {
    let Ok(dir) = fs::canonicalize(dir) else {
        return;
    };
    if let Ok(entries) = fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str().filter(|n| n.starts_with("loop")) else {
                continue;
            };
            let backing =
                fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
            if Path::new(backing.trim()).starts_with(&dir) {
                let device = Path::new("/dev").join(name);
                tracing::info!(device = %device.display(), "detaching a stale loop device");
                // Its filesystems go with the instance's last process; flushing to a dead
                // connection fails, which is expected here.
                let _ = release_and_flush(&device);
                let _ = Command::new("losetup").arg("-d").arg(&device).status();
            }
        }
    }
    if let Ok(procs) = fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let argv = fs::read(p.path().join("cmdline")).unwrap_or_default();
            let mut args = argv
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned());
            let is_nbdfuse = args.next().is_some_and(|a| a.ends_with("nbdfuse"));
            if is_nbdfuse && args.any(|a| Path::new(&a).starts_with(&dir)) {
                tracing::info!(pid, "ending a stale nbdfuse");
                // SAFETY: kill has no memory preconditions; `pid` serves a file under `dir`.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = unescape_mount_path(point);
        if Path::new(&point).starts_with(&dir) {
            tracing::info!(mount = %point, "unmounting a stale disk");
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&point)
                .status();
        }
    }
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a helper to completion; its stdout on success, its stderr in the error.
fn run(program: &'static str, cmd: &mut Command) -> Result<String, LocalDiskError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalDiskError::Tool {
            program,
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LocalDiskError::Tool {
            program,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path(r"/trailing\04"), r"/trailing\04");
    }
}
