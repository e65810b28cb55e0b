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
use instance_manager::network::{self, Block, Interface};
use instance_manager::workload::Program;

use super::instances::{attachments_in, rec};
use super::{ControlPlane, Ec2Error, ErrorCode, State};
use crate::catalog::HostRecord;

/// Where a booted instance's disks are attached on the host, under its directory.
const DISKS_DIR: &str = "disks";
/// The host copy of a booted instance's user data, under its directory.
const USER_DATA_FILE: &str = "boot-user-data";

/// A disk of a booted instance attached on the host.
#[derive(Debug)]
pub(super) struct HostDisk {
    /// Its EC2 device name, e.g. `/dev/sdf`.
    device_name: String,
    /// The export it reaches.
    token: String,
    /// Its NVMe node inside, e.g. `nvme1n1`.
    node: String,
    disk: LocalDisk,
}

impl HostDisk {
    fn node(&self) -> BlockNode {
        let link = self
            .device_name
            .strip_prefix("/dev/")
            .unwrap_or(&self.device_name);
        // A name that could leave `/dev` (a `/`, `.` or `..`) gets no link; the node is enough.
        let safe = !link.is_empty() && !link.contains('/') && link != "." && link != "..";
        BlockNode {
            link: (safe && link != self.node).then(|| link.to_string()),
            node: self.node.clone(),
            host_device: self.disk.device().to_path_buf(),
        }
    }
}

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
        if !st.instances.local.contains_key(id) {
            st.instances.local.insert(id.to_string(), Vec::new());
            st.instances.next_node.insert(id.to_string(), disks.len());
            for (index, d) in disks.iter().enumerate() {
                let attached = self.attach_on_host(dir, d, boot::nvme_node(index))?;
                st.instances
                    .local
                    .get_mut(id)
                    .expect("inserted")
                    .push(attached);
            }
        }
        // The disks as attached (a reboot keeps those of the boot before, hot-plugged ones too),
        // the root first.
        let mut nodes: Vec<BlockNode> = st.instances.local[id].iter().map(HostDisk::node).collect();
        let root_node = st.instances.local[id]
            .iter()
            .position(|h| h.device_name == root.device_name)
            .ok_or_else(|| Ec2Error::internal("the root volume is not attached on the host"))?;
        nodes.swap(0, root_node);
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
        let net = self.instance_network(st, host);
        let netns = match instance_manager::network::available() {
            Ok(()) => {
                let bridge = self.bridge_of(&net.vpc_id);
                let path = network::ensure_instance(&interface(id, &bridge, &net)?)
                    .map_err(super::internal("making the instance's network"))?;
                if let Some(m) = &self.cfg.metadata
                    && let Err(why) = m.serve_vpc(
                        &bridge,
                        &net.vpc_id,
                        Block::parse(&net.subnet_cidr)
                            .map_or(std::net::Ipv4Addr::UNSPECIFIED, |b| b.router()),
                    )
                {
                    tracing::warn!(
                        instance_id = id,
                        why,
                        "the instance has no metadata service"
                    );
                }
                // The bridge may be new: Elastic IPs of its instances get their routes.
                self.publish_wiring(st);
                self.apply_wiring();
                Some(path)
            }
            Err(why) => {
                tracing::warn!(
                    instance_id = id,
                    why,
                    "the instance boots without a network"
                );
                None
            }
        };
        let cfg = BootConfig {
            instance_id: id.to_string(),
            hostname: net.private_dns_name,
            root_device: nodes[0].host_device.clone(),
            fs_type: fs_type.to_string(),
            mount_dir: dir.join("rootfs"),
            devices: nodes,
            user_data,
            netns,
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

    /// Attaches disk `d` of an instance on the host as NVMe node `node`.
    fn attach_on_host(&self, dir: &Path, d: &Disk, node: String) -> Result<HostDisk, Ec2Error> {
        let disk = LocalDisk::attach(
            &dir.join(DISKS_DIR).join(&node),
            &self.local_nbd_uri(&d.token),
        )
        .map_err(super::internal("attaching a disk on the host"))?;
        Ok(HostDisk {
            device_name: d.device_name.clone(),
            token: d.token.clone(),
            node,
            disk,
        })
    }

    /// After AttachVolume to a running booted instance: the volume appears inside as the next
    /// free NVMe node with its device name as a link, as a hot-plugged EBS volume does on Nitro.
    /// A failure leaves the attachment in place, only not visible inside, and is logged.
    pub(super) fn hotplug_attach(
        &self,
        st: &mut State,
        instance_id: &str,
        device: &str,
        token: &str,
    ) {
        if !st.instances.local.contains_key(instance_id) {
            return;
        }
        // Never a node of this boot again, not even a detached one's: its teardown runs without
        // the lock and may not be over (its host directory and node inside are still its own).
        let next = st
            .instances
            .next_node
            .entry(instance_id.to_string())
            .or_default();
        let node = boot::nvme_node(*next);
        *next += 1;
        let leader = leader_of(st, instance_id);
        let d = Disk {
            device_name: device.to_string(),
            token: token.to_string(),
            root: false,
        };
        let attached = self.attach_on_host(&self.instance_dir(instance_id), &d, node);
        let result = attached.and_then(|h| {
            let made = leader.map(|pid| boot::add_node(pid, &h.node()));
            st.instances
                .local
                .get_mut(instance_id)
                .expect("present")
                .push(h);
            match made {
                Some(Err(e)) => Err(Ec2Error::internal(e.to_string())),
                _ => Ok(()),
            }
        });
        if let Err(e) = result {
            tracing::error!(instance_id, device, error = %e.message, "a hot-plugged volume is not visible inside the instance");
        }
        self.rewrite_boot_devices(st, instance_id);
    }

    /// Writes the instance's current disks into its `boot.json`: the init's leader flushes
    /// those at its exit, and a reboot's init makes their nodes.
    fn rewrite_boot_devices(&self, st: &State, instance_id: &str) {
        let dir = self.instance_dir(instance_id);
        let Ok(mut cfg) = BootConfig::read(&dir.join(boot::BOOT_FILE)) else {
            return;
        };
        let Some(local) = st.instances.local.get(instance_id) else {
            return;
        };
        let root = cfg.root_device.clone();
        let mut nodes: Vec<BlockNode> = local.iter().map(HostDisk::node).collect();
        nodes.sort_by_key(|n| n.host_device != root);
        cfg.devices = nodes;
        if let Err(e) = cfg.write(&dir) {
            tracing::warn!(instance_id, error = %e, "rewriting boot.json");
        }
    }

    /// Before DetachVolume fences a running booted instance's attachment `token`: takes its disk
    /// out of the instance's list (to be detached with [`ControlPlane::hotplug_detach`], without
    /// the lock).
    pub(super) fn take_host_disk(
        &self,
        st: &mut State,
        instance_id: &str,
        token: &str,
    ) -> Option<(Option<u32>, HostDisk)> {
        let local = st.instances.local.get_mut(instance_id)?;
        let at = local.iter().position(|h| h.token == token)?;
        let taken = local.remove(at);
        self.rewrite_boot_devices(st, instance_id);
        let leader = leader_of(st, instance_id);
        Some((leader, taken))
    }

    /// Removes a detached volume's node from inside the instance and detaches it from the host:
    /// waits (a while) until the instance no longer has it mounted, then flushes it.
    pub(super) fn hotplug_detach(&self, instance_id: &str, leader: Option<u32>, h: HostDisk) {
        if let Some(pid) = leader
            && let Err(e) = boot::remove_node(pid, &h.node())
        {
            tracing::warn!(instance_id, device = h.device_name, error = %e, "removing a device node inside the instance");
        }
        self.detach_local_disks(instance_id, vec![h], false);
    }

    /// Detaches a booted instance's disks from the host (after its workload has exited, before
    /// its exports are fenced). Blocks until each disk is released and flushed. `all`: these are
    /// all of its disks (it has stopped), so its boot files go too.
    pub(super) fn detach_local_disks(&self, id: &str, disks: Vec<HostDisk>, all: bool) {
        for h in disks {
            let device = h.disk.device().display().to_string();
            if let Err(e) = h.disk.detach() {
                tracing::error!(instance_id = id, device, error = %e, "detaching a disk from the host");
            }
        }
        if !all {
            return;
        }
        let dir = self.instance_dir(id);
        let _ = std::fs::remove_file(dir.join(boot::BOOT_FILE));
        let _ = std::fs::remove_file(dir.join(USER_DATA_FILE));
    }

    /// The host bridge of `vpc_id` for this server.
    pub(super) fn bridge_of(&self, vpc_id: &str) -> String {
        network::bridge_name(&self.cfg.data_dir.display().to_string(), vpc_id)
    }

    /// At shutdown: the Elastic IPs' wiring, every namespace of this server's instances and
    /// every bridge of its VPCs go (a booted instance made again at its next start finds none
    /// of them stale).
    pub(super) fn remove_networks(&self) {
        self.unwire_addresses();
        let st = self.lock();
        let bridges = self.bridges(&st);
        let instances: Vec<String> = st
            .hosts
            .values()
            .filter(|h| h.instance.is_some())
            .map(|h| h.instance_id.clone())
            .collect();
        drop(st);
        for id in instances {
            network::remove_instance(&id);
        }
        for bridge in bridges {
            if let Some(m) = &self.cfg.metadata {
                m.stop_vpc(&bridge);
            }
            network::remove_bridge(&bridge);
        }
    }

    /// The bridges of this server's VPCs (made on the host or not).
    pub(super) fn bridges(&self, st: &State) -> Vec<String> {
        let mut vpcs: Vec<String> = st.vpcs.keys().cloned().collect();
        for h in st.hosts.values().filter(|h| h.instance.is_some()) {
            vpcs.push(self.instance_network(st, h).vpc_id);
        }
        vpcs.sort();
        vpcs.dedup();
        vpcs.iter().map(|v| self.bridge_of(v)).collect()
    }

    /// At termination: the instance's network namespace goes (its address is free again).
    pub(super) fn remove_instance_network(&self, id: &str) {
        network::remove_instance(id);
    }

    /// After a restart of the server: whether `id` was running booted when it stopped (its
    /// init cannot be adopted).
    pub(super) fn was_booted(&self, id: &str) -> bool {
        self.instance_dir(id).join(boot::BOOT_FILE).exists()
    }

    /// After a restart of the server, once the instance's processes are gone: detaches whatever
    /// of its disks a crash left attached on the host.
    pub(super) fn cleanup_booted(&self, id: &str) {
        let dir = self.instance_dir(id);
        if dir.join(DISKS_DIR).exists() {
            localdisk::cleanup_stale(&dir.join(DISKS_DIR));
        }
        let _ = std::fs::remove_file(dir.join(boot::BOOT_FILE));
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

/// The pid of the running instance's workload leader (its init's parent), if it has one.
fn leader_of(st: &State, instance_id: &str) -> Option<u32> {
    st.hosts
        .get(instance_id)
        .and_then(|h| h.instance.as_ref())
        .and_then(|i| i.pid)
        .map(|(pid, _)| pid)
}

/// The host network's view of an instance's interface.
fn interface(
    instance_id: &str,
    bridge: &str,
    net: &super::network::InstanceNetwork,
) -> Result<Interface, Ec2Error> {
    let bad =
        |what: &str| Ec2Error::internal(format!("the instance's {what} is not an IPv4 block"));
    Ok(Interface {
        instance_id: instance_id.to_string(),
        vpc_id: net.vpc_id.clone(),
        bridge: bridge.to_string(),
        vpc: Block::parse(&net.vpc_cidr).ok_or_else(|| bad("VPC"))?,
        subnet: Block::parse(&net.subnet_cidr).ok_or_else(|| bad("subnet"))?,
        address: net.private_ip.parse().map_err(|_| bad("private address"))?,
        mac: net.mac_address.clone(),
    })
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
