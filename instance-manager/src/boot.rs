//! What the server hands an instance's init when it boots an AMI's root filesystem: the boot
//! configuration (`boot.json`), the Nitro-style names of its block devices, and which
//! filesystems a root volume may hold.
//!
//! The server attaches each of the instance's disks on the host as a block device (see
//! [`crate::localdisk`]), writes `boot.json` into the instance's directory and starts its own
//! executable as `volume-server __instance-init <dir>/boot.json`; that process (see
//! [`crate::init`]) becomes the instance.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file, in the instance's directory, that tells its init how to boot.
pub const BOOT_FILE: &str = "boot.json";
/// The first argument that makes the server's executable run as an instance's init.
pub const INIT_ARG: &str = "__instance-init";
/// How many bytes of a volume [`detect_filesystem`] needs.
pub const PROBE_BYTES: u64 = 68 << 10;

/// How to boot one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootConfig {
    /// The instance, e.g. `i-0123456789abcdef0`.
    pub instance_id: String,
    /// Its hostname: the private DNS name.
    pub hostname: String,
    /// The host block device of the root volume.
    pub root_device: PathBuf,
    /// Its filesystem, as [`detect_filesystem`] named it.
    pub fs_type: String,
    /// An empty host directory where the root filesystem is mounted, in the instance's own mount
    /// namespace only.
    pub mount_dir: PathBuf,
    /// Device nodes to make in the instance's `/dev` (the root device among them).
    pub devices: Vec<BlockNode>,
    /// The host file holding the instance's user data, if it has any.
    pub user_data: Option<PathBuf>,
    /// The network namespace to join (`/run/netns/NAME`); `None` for a new, empty one.
    pub netns: Option<PathBuf>,
    /// vCPUs the instance sees (`nproc`); 0 for all of the host's.
    pub vcpus: u32,
    /// Memory the instance sees (`free`), bytes; 0 for the host's.
    pub memory_bytes: u64,
    /// How long, at shutdown, processes get between SIGTERM and SIGKILL, ms.
    pub stop_grace_ms: u64,
}

/// One block device inside an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockNode {
    /// The node, e.g. `nvme1n1`: made in `/dev` with the host device's numbers.
    pub node: String,
    /// The EC2 device name without `/dev/`, e.g. `sdf`: a symlink to the node (as Amazon
    /// Linux's udev rules make on Nitro). `None` when it is the node's own name.
    pub link: Option<String>,
    /// The host block device.
    pub host_device: PathBuf,
}

impl BootConfig {
    /// Writes `<dir>/boot.json` (through a temporary file and a rename).
    pub fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join(BOOT_FILE);
        let tmp = dir.join(format!(".{BOOT_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Reads a `boot.json`.
    pub fn read(path: &Path) -> io::Result<BootConfig> {
        serde_json::from_slice(&fs::read(path)?).map_err(io::Error::other)
    }
}

/// The Nitro NVMe node of the `index`th disk of an instance: the root volume is `nvme0n1`, the
/// other EBS volumes follow in device-name order, then instance store.
pub fn nvme_node(index: usize) -> String {
    format!("nvme{index}n1")
}

/// The `/dev` of a running instance, seen from the host through its init's root: `leader` is
/// the pid of the instance's workload leader, whose only child is the instance's PID 1. Waits
/// (up to 3 s) for the init to have `pivot_root`ed: until then its root is the host's, and its
/// `/dev` the host's own, which must never be touched.
fn instance_dev(leader: u32) -> io::Result<PathBuf> {
    Ok(instance_root(leader, std::time::Duration::from_secs(3))?.join("dev"))
}

/// `/proc/<init>/root` of the instance led by `leader`, once its init has `pivot_root`ed
/// (waiting up to `wait` for that).
fn instance_root(leader: u32, wait: std::time::Duration) -> io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let host = fs::metadata("/")?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let children = fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))?;
        let init = children
            .split_whitespace()
            .next()
            .ok_or_else(|| io::Error::other(format!("process {leader} has no init child")))?;
        let root = fs::metadata(format!("/proc/{init}/root"))?;
        if (root.dev(), root.ino()) != (host.dev(), host.ino()) {
            return Ok(PathBuf::from(format!("/proc/{init}/root")));
        }
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "the init {init} of process {leader} has not entered its root"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether the instance led by `leader` has booted: its init has made
/// [`crate::init::BOOTED`] (sshd and user data started).
pub fn has_booted(leader: u32) -> bool {
    instance_root(leader, std::time::Duration::ZERO).is_ok_and(|root| {
        root.join(crate::init::BOOTED.trim_start_matches('/'))
            .exists()
    })
}

/// Makes `node` (and its link) in a running instance's `/dev`: a hot-plugged disk.
pub fn add_node(leader: u32, node: &BlockNode) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let dev = instance_dev(leader)?;
    let rdev = fs::metadata(&node.host_device)?.rdev();
    let path = std::ffi::CString::new(dev.join(&node.node).as_os_str().as_bytes())
        .map_err(io::Error::other)?;
    // SAFETY: `path` is a live NUL-terminated path.
    if unsafe { libc::mknod(path.as_ptr(), libc::S_IFBLK | 0o660, rdev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(link) = &node.link {
        std::os::unix::fs::symlink(&node.node, dev.join(link))?;
    }
    Ok(())
}

/// Removes `node` (and its link) from a running instance's `/dev`: a detached disk.
pub fn remove_node(leader: u32, node: &BlockNode) -> io::Result<()> {
    let dev = instance_dev(leader)?;
    if let Some(link) = &node.link {
        let _ = fs::remove_file(dev.join(link));
    }
    fs::remove_file(dev.join(&node.node))
}

/// The filesystem at the start of a volume (`head` is its first [`PROBE_BYTES`] bytes, or as
/// many as it has), named as mount(2) takes it: `ext4` (which mounts ext2 and ext3 too), `xfs`
/// or `btrfs`. `None` for anything else: a partition table, an unknown filesystem, zeros.
pub fn detect_filesystem(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(1024 + 56, &0xEF53u16.to_le_bytes()) {
        Some("ext4")
    } else if at(0, b"XFSB") {
        Some("xfs")
    } else if at(0x10040, b"_BHRfS_M") {
        Some("btrfs")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems_are_told_by_their_magic() {
        let mut head = vec![0u8; PROBE_BYTES as usize];
        assert_eq!(detect_filesystem(&head), None);
        head[1080] = 0x53;
        head[1081] = 0xEF;
        assert_eq!(detect_filesystem(&head), Some("ext4"));
        let mut xfs = vec![0u8; 4096];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(detect_filesystem(&xfs), Some("xfs"));
        let mut btrfs = vec![0u8; PROBE_BYTES as usize];
        btrfs[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        assert_eq!(detect_filesystem(&btrfs), Some("btrfs"));
        // Too short to hold the magic: not a filesystem, not a panic.
        assert_eq!(detect_filesystem(&[0u8; 100]), None);
    }

    #[test]
    fn the_config_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BootConfig {
            instance_id: "i-0123456789abcdef0".into(),
            hostname: "ip-172-31-0-4.ec2.internal".into(),
            root_device: "/dev/loop3".into(),
            fs_type: "ext4".into(),
            mount_dir: dir.path().join("rootfs"),
            devices: vec![BlockNode {
                node: nvme_node(1),
                link: Some("sdf".into()),
                host_device: "/dev/loop4".into(),
            }],
            user_data: None,
            netns: Some("/run/netns/x".into()),
            vcpus: 2,
            memory_bytes: 8 << 30,
            stop_grace_ms: 5000,
        };
        let path = cfg.write(dir.path()).unwrap();
        assert_eq!(BootConfig::read(&path).unwrap(), cfg);
    }
}
