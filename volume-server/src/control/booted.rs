//! Instances that boot their AMI: when the root volume holds a filesystem (and the instance has
//! no plain-process command), the instance runs inside it. This module decides that, attaches the
//! instance's disks on the host as block devices (through their NBD exports, so throttles, fences
//! and snapshots apply), writes the init's `boot.json`, and detaches the disks again once the
//! instance has stopped, before its exports are fenced.
//!
//! The disks stay attached on the host from boot to stop, so a reboot (a new init on the same
//! disks) keeps instance store. After a crash of the server, whose `nbdfuse` connections died
//! with it, a booted instance cannot be adopted: it is stopped and its disks cleaned up.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use instance_manager::boot::{self, BlockNode, BootConfig};
use instance_manager::localdisk::{self, LocalDisk};
use instance_manager::workload::Program;

use super::instances::{attachments_in, rec};
use super::{ControlPlane, Ec2Error, ErrorCode, State};
use crate::catalog::HostRecord;

/// Where a booted instance's disks are attached on the host, under its directory.
const DISKS_DIR: &str = "disks";
/// The host copy of a booted instance's user data, under its directory.
const USER_DATA_FILE: &str = "boot-user-data";

/// A disk of the instance: its EC2 device name, export token, and whether it is the root.
struct Disk {
    device_name: String,
    token: String,
    root: bool,
}

impl ControlPlane {
    /// The program that boots `host` (running, its disks served) from its root volume, if the
    /// volume holds a filesystem, the instance has no command of its own, and this host can
    /// boot (else `None`: the instance runs as a plain process). Attaches its disks on the host
    /// (kept in the state, so a failure is cleaned up by the caller's power-off) and writes its
    /// `boot.json`.
    pub(super) fn boot_program(
        &self,
        st: &mut State,
        host: &HostRecord,
        dir: &Path,
    ) -> Result<Option<Program>, Ec2Error> {
        let r = rec(host);
        let id = host.instance_id.as_str();
        if r.workload.is_some() {
            return Ok(None);
        }
        let disks = self.disks_of(st, host);
        let Some(root) = disks.iter().find(|d| d.root) else {
            return Ok(None);
        };
        let Some(fs_type) = self.root_filesystem(&root.token)? else {
            return Ok(None);
        };
        if let Err(why) = localdisk::available() {
            tracing::warn!(
                instance_id = id,
                why,
                "the root volume holds {fs_type} but this host cannot boot it; running the instance as a plain process"
            );
            return Ok(None);
        }
        if self.cfg.nbd_tls_required && self.cfg.nbd_socket.is_none() {
            return Err(Ec2Error::new(
                ErrorCode::InternalError,
                "Booting an instance needs --nbd-socket when --nbd-tls is require (its disks are attached on the host without TLS).",
            ));
        }
        let mut nodes = Vec::new();
        if !st.instances.local.contains_key(id) {
            st.instances.local.insert(id.to_string(), Vec::new());
            for (index, d) in disks.iter().enumerate() {
                let node = boot::nvme_node(index);
                let attached = LocalDisk::attach(
                    &dir.join(DISKS_DIR).join(&node),
                    &self.local_nbd_uri(&d.token),
                )
                .map_err(super::internal("attaching a disk on the host"))?;
                st.instances
                    .local
                    .get_mut(id)
                    .expect("inserted")
                    .push(attached);
            }
        }
        let local = &st.instances.local[id];
        for (index, (d, l)) in disks.iter().zip(local).enumerate() {
            let node = boot::nvme_node(index);
            let link = d
                .device_name
                .strip_prefix("/dev/")
                .unwrap_or(&d.device_name);
            nodes.push(BlockNode {
                link: (link != node).then(|| link.to_string()),
                node,
                host_device: l.device().to_path_buf(),
            });
        }
        let user_data = match &r.user_data {
            Some(u) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(u)
                    .map_err(super::internal("decoding user data"))?;
                let path = dir.join(USER_DATA_FILE);
                write_private(&path, &bytes).map_err(super::internal("writing user data"))?;
                Some(path)
            }
            None => None,
        };
        let ty = instance_manager::types::lookup(&r.instance_type);
        let cfg = BootConfig {
            instance_id: id.to_string(),
            hostname: self.instance_network(host).private_dns_name,
            root_device: nodes[0].host_device.clone(),
            fs_type: fs_type.to_string(),
            mount_dir: dir.join("rootfs"),
            devices: nodes,
            user_data,
            netns: None,
            vcpus: ty.map_or(0, |t| t.vcpus),
            memory_bytes: ty.map_or(0, |t| t.memory_mib << 20),
            stop_grace_ms: (self.cfg.instance_stop_timeout / 2).as_millis() as u64,
        };
        let path = cfg
            .write(dir)
            .map_err(super::internal("writing boot.json"))?;
        let exe =
            std::env::current_exe().map_err(super::internal("finding the server's executable"))?;
        tracing::info!(instance_id = id, fs_type, "booting the root filesystem");
        Ok(Some(Program::Exec(
            exe,
            vec![boot::INIT_ARG.into(), path.into_os_string()],
        )))
    }

    /// Detaches a booted instance's disks from the host (after its workload has exited, before
    /// its exports are fenced). Blocks until each disk is released and flushed.
    pub(super) fn detach_local_disks(&self, id: &str, disks: Vec<LocalDisk>) {
        for d in disks {
            let device = d.device().display().to_string();
            if let Err(e) = d.detach() {
                tracing::error!(instance_id = id, device, error = %e, "detaching a disk from the host");
            }
        }
        let dir = self.instance_dir(id);
        let _ = std::fs::remove_file(dir.join(boot::BOOT_FILE));
        let _ = std::fs::remove_file(dir.join(USER_DATA_FILE));
    }

    /// After a restart of the server: whether `id` was booted (its init cannot be adopted), and
    /// in any case detaches whatever of its disks a crash left attached on the host.
    pub(super) fn cleanup_booted(&self, id: &str) -> bool {
        let dir = self.instance_dir(id);
        localdisk::cleanup_stale(&dir.join(DISKS_DIR));
        let booted = dir.join(boot::BOOT_FILE).exists();
        let _ = std::fs::remove_file(dir.join(boot::BOOT_FILE));
        booted
    }

    /// The instance's disks in NVMe order: the root, the other EBS volumes by device name, then
    /// instance store.
    fn disks_of(&self, st: &State, host: &HostRecord) -> Vec<Disk> {
        let r = rec(host);
        let mut out: Vec<Disk> = attachments_in(st, &host.instance_id)
            .into_iter()
            .map(|(_, a)| Disk {
                root: a.device == r.root_device_name,
                device_name: a.device,
                token: a.token,
            })
            .collect();
        out.sort_by(|a, b| (!a.root, &a.device_name).cmp(&(!b.root, &b.device_name)));
        out.extend(r.instance_store.iter().map(|d| Disk {
            device_name: d.device_name.clone(),
            token: d.token.clone(),
            root: false,
        }));
        out
    }

    /// The filesystem on the volume served under `token`, read as a client would (a lazily
    /// restored volume fetches those blocks first).
    fn root_filesystem(&self, token: &str) -> Result<Option<&'static str>, Ec2Error> {
        let Some(export) = self.exports.get(token) else {
            return Ok(None);
        };
        let len = boot::PROBE_BYTES.min(export.open.volume.size());
        let head = self
            .runtime
            .block_on(crate::datapath::read_for_server(&export, 0, len))
            .map_err(|e| {
                Ec2Error::new(
                    ErrorCode::InternalError,
                    format!("Reading the root volume: {e}"),
                )
            })?;
        Ok(boot::detect_filesystem(&head))
    }

    /// The URI the host's `nbdfuse` uses for an export: the Unix socket when there is one.
    fn local_nbd_uri(&self, token: &str) -> String {
        match &self.cfg.nbd_socket {
            Some(socket) => format!("nbd+unix:///{token}?socket={}", socket.display()),
            None => self.nbd_uri(token),
        }
    }
}

/// Writes `data` to `path`, readable by root only.
fn write_private(path: &PathBuf, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
