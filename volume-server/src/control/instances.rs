//! Instances launched by RunInstances: volumes from block device mappings, instance store disks,
//! the workload process and the EC2 lifecycle (stop, start, reboot, terminate), CreateImage, and
//! re-adoption of running workloads after a restart of the server.
//!
//! # Model
//! An instance is a host (`HostRecord`) with an [`InstanceRecord`], so attachments, tags and
//! fencing work as for registered hosts. Its volumes are exported over NBD only while it runs;
//! every start gives each attachment a new export token and fencing generation, so a client of
//! an earlier run cannot reach the disks again. Instance store disks are sparse local files
//! served the same way (unthrottled) and removed on stop and terminate.
//!
//! # Workloads
//! Each running workload has a supervisor task holding its process. API actions reach it through
//! a channel ([`Cmd`]); its own exit comes back as [`ControlPlane::workload_exited`], which
//! follows `InstanceInitiatedShutdownBehavior`. Transitions commit the transitional state at
//! once (`stopping`, `shutting-down`, `pending`) and finish in the background, as EC2 does.
//! When the server stops, workloads run on; at start they are adopted again (same pid and start
//! time) or, if gone, their instances are marked `stopped`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use instance_manager::devices::{self, Device, DeviceKind, InstanceInfo};
use instance_manager::lifecycle::{self, Action, InstanceState, ShutdownBehavior, Transition};
use instance_manager::workload::{self, CgroupLimits, Program, Workload, WorkloadSpec};
use storage_engine::{Limits, Throttle, Volume};
use tokio::sync::{mpsc, oneshot};

use super::model;
use super::views::{
    ConsoleOutput, InstanceStateChange, InstanceView, InstancesPage, ReservationView,
};
use super::{
    Account, ControlPlane, Ec2Error, ErrorCode, State, check_instance_id, instance_not_found,
    now_ms,
};
use crate::catalog::{
    AttachmentRecord, Change, EbsMapping, HostRecord, ImageRecord, InstanceRecord,
    InstanceStoreRecord, MappingRecord, StateReasonRecord, VolumeRecord, VolumeState,
};
use crate::exports::{CaptureSet, Export, IoStats, OpenVolume};
use crate::ids;

/// Most instances one RunInstances call launches.
const MAX_COUNT: i32 = 20;
/// Terminated instances stay visible this long.
const TERMINATED_VISIBLE_MS: u64 = 60 * 60 * 1000;
/// Console output returned by GetConsoleOutput.
const CONSOLE_BYTES: usize = 64 * 1024;
/// Instance type when RunInstances names none.
const DEFAULT_TYPE: &str = "m5.large";

/// A command to a workload's supervisor.
#[derive(Debug)]
enum Cmd {
    /// End the workload (SIGTERM; SIGKILL after `grace`) and report when it is gone.
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
    /// End the workload, report, wait for `resume` (if any), then start it again.
    Restart {
        grace: Duration,
        stopped: oneshot::Sender<()>,
        resume: Option<oneshot::Receiver<()>>,
    },
}

/// Live parts of launched instances; the catalog holds the rest.
#[derive(Debug, Default)]
pub(super) struct InstanceRuntime {
    /// Supervisors of running workloads.
    workloads: HashMap<String, mpsc::UnboundedSender<Cmd>>,
    /// The EBS cap of each running instance, shared by its volumes' exports.
    pub(super) throttles: HashMap<String, Arc<Throttle>>,
    /// Open instance store disks of each running instance.
    ephemeral: HashMap<String, Vec<OpenVolume>>,
    /// The disks of each booted instance, attached on the host (see `booted`).
    pub(super) local: HashMap<String, Vec<super::booted::HostDisk>>,
    /// The index of the next NVMe node a hot-plugged disk of each booted instance gets.
    pub(super) next_node: HashMap<String, usize>,
}

impl InstanceRuntime {
    /// Shutdown: lets every supervisor go (workloads run on) and hands back the instance store
    /// disks to close.
    pub(super) fn let_go(&mut self) -> Vec<OpenVolume> {
        self.workloads.clear();
        self.throttles.clear();
        self.ephemeral.drain().flat_map(|(_, v)| v).collect()
    }
}

/// An adopted workload to supervise once the control plane is up.
pub(super) struct Adopted {
    instance_id: String,
    workload: Workload,
}

/// Whether attachments of `instance_id` serve I/O: registered hosts always, launched instances
/// only while running.
pub(super) fn serves_io(st: &State, instance_id: &str) -> bool {
    st.hosts
        .get(instance_id)
        .and_then(|h| h.instance.as_ref())
        .is_none_or(|i| i.state == InstanceState::Running)
}

/// `IncorrectInstanceState` unless volumes may be attached to `host` now.
pub(super) fn check_attachable(host: &HostRecord) -> Result<(), Ec2Error> {
    match host.instance.as_ref().map(|i| i.state) {
        None | Some(InstanceState::Pending | InstanceState::Running | InstanceState::Stopped) => {
            Ok(())
        }
        Some(s) => Err(Ec2Error::new(
            ErrorCode::IncorrectInstanceState,
            format!(
                "The instance '{}' is not 'running' or 'stopped' (it is '{}').",
                host.instance_id,
                s.as_str()
            ),
        )),
    }
}

fn reason(code: &str, message: &str) -> Option<StateReasonRecord> {
    Some(StateReasonRecord {
        code: code.to_string(),
        message: message.to_string(),
    })
}

fn user_reason(action: Action) -> Option<StateReasonRecord> {
    match action {
        Action::Stop | Action::Terminate => reason(
            "Client.UserInitiatedShutdown",
            "Client.UserInitiatedShutdown: User initiated shutdown",
        ),
        Action::Start | Action::Reboot => None,
    }
}

fn incorrect(e: lifecycle::IncorrectInstanceState) -> Ec2Error {
    Ec2Error::new(ErrorCode::IncorrectInstanceState, e.to_string())
}

fn unknown_type(name: &str) -> Ec2Error {
    Ec2Error::invalid_value(format!("Invalid value '{name}' for InstanceType."))
}

/// The AMI's mappings with the request's laid over them by device name: a request mapping
/// replaces the AMI's kind of device, fills in what an AMI EBS mapping leaves open (size, type,
/// IOPS, throughput, DeleteOnTermination), and `NoDevice` removes the device.
fn merge_mappings(
    image: &ImageRecord,
    request: Vec<MappingRecord>,
) -> Result<Vec<MappingRecord>, Ec2Error> {
    let mut out: Vec<MappingRecord> = image.mappings.clone();
    for m in request {
        let at = out.iter().position(|o| o.device_name == m.device_name);
        if m.no_device {
            if m.device_name == image.root_device_name {
                return Err(Ec2Error::new(
                    ErrorCode::InvalidBlockDeviceMapping,
                    format!("The root device {} cannot be suppressed.", m.device_name),
                ));
            }
            if let Some(i) = at {
                out.remove(i);
            }
            continue;
        }
        match (at, m.ebs) {
            (Some(i), Some(over)) if out[i].ebs.is_some() => {
                let base = out[i].ebs.as_mut().expect("checked");
                if over.snapshot_id.is_some() {
                    base.snapshot_id = over.snapshot_id;
                }
                base.volume_size = over.volume_size.or(base.volume_size);
                base.volume_type = over.volume_type.or(base.volume_type.take());
                base.iops = over.iops.or(base.iops);
                base.throughput = over.throughput.or(base.throughput);
                base.delete_on_termination =
                    over.delete_on_termination.or(base.delete_on_termination);
            }
            (at, ebs) => {
                let m = MappingRecord { ebs, ..m };
                match at {
                    Some(i) => out[i] = m,
                    None => out.push(m),
                }
            }
        }
    }
    if !out
        .iter()
        .any(|m| m.device_name == image.root_device_name && m.ebs.is_some())
    {
        return Err(Ec2Error::new(
            ErrorCode::InvalidBlockDeviceMapping,
            format!(
                "The root device {} must stay an EBS volume.",
                image.root_device_name
            ),
        ));
    }
    // The root first, so it is created and attached first.
    out.sort_by_key(|m| m.device_name != image.root_device_name);
    Ok(out)
}

/// Instance store disks of `ty`, named by the mappings' VirtualName where given, else by the
/// first free name of `/dev/sd[b-e]`, `/dev/xvdc[a-z]`.
fn instance_store_disks(
    ty: &instance_manager::InstanceType,
    mappings: &[MappingRecord],
) -> Vec<InstanceStoreRecord> {
    let Some(store) = ty.instance_store else {
        return vec![];
    };
    let mut taken: BTreeSet<String> = mappings.iter().map(|m| m.device_name.clone()).collect();
    let mut free = ('b'..='e')
        .map(|c| format!("/dev/sd{c}"))
        .chain(('a'..='z').map(|c| format!("/dev/xvdc{c}")));
    (0..store.count)
        .map(|k| {
            let virtual_name = format!("ephemeral{k}");
            let device_name = mappings
                .iter()
                .find(|m| m.virtual_name.as_deref() == Some(virtual_name.as_str()))
                .map(|m| m.device_name.clone())
                .unwrap_or_else(|| {
                    let name = free
                        .by_ref()
                        .find(|n| !taken.contains(n))
                        .unwrap_or_else(|| format!("/dev/{virtual_name}"));
                    taken.insert(name.clone());
                    name
                });
            InstanceStoreRecord {
                device_name,
                virtual_name,
                // Whole 4 KiB blocks of the advertised size (GB, 10^9 bytes).
                size_bytes: (store.size_gb * 1_000_000_000) & !4095,
                token: String::new(),
            }
        })
        .collect()
}

/// Ends a run: `state` now, no workload, no instance store served.
fn halted(i: &mut InstanceRecord, state: InstanceState) {
    i.state = state;
    i.transition_ms = now_ms();
    i.pid = None;
    for d in &mut i.instance_store {
        d.token.clear();
    }
}

fn instance_of<'a>(st: &'a State, id: &str) -> Result<&'a HostRecord, Ec2Error> {
    match st.hosts.get(id) {
        Some(h) if h.instance.is_some() => Ok(h),
        _ => Err(instance_not_found(id)),
    }
}

/// Launched instance `id` if `who` owns it; another account's is `InvalidInstanceID.NotFound`,
/// and a registered host (which no call here can start, stop or reboot) `UnsupportedOperation`.
pub(super) fn own_instance<'a>(
    st: &'a State,
    who: Account,
    id: &str,
) -> Result<&'a HostRecord, Ec2Error> {
    match st.hosts.get(id).filter(|h| who.owns(&h.owner_id)) {
        Some(h) if h.instance.is_some() => Ok(h),
        Some(_) => Err(registered_host(id)),
        None => Err(instance_not_found(id)),
    }
}

/// The answer to a lifecycle call on a registered host.
fn registered_host(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::UnsupportedOperation,
        format!(
            "The instance '{id}' is a registered host: its workload runs outside this server. It takes the Describe calls, tags, volume attachments, and TerminateInstances (which deregisters it)."
        ),
    )
}

/// Host `id` of `who`, launched or registered, as the instance calls show it; another
/// account's is `InvalidInstanceID.NotFound`.
pub(super) fn visible_instance<'a>(
    st: &'a State,
    who: Account,
    id: &str,
) -> Result<Cow<'a, HostRecord>, Ec2Error> {
    st.hosts
        .get(id)
        .filter(|h| who.owns(&h.owner_id))
        .map(as_instance)
        .ok_or_else(|| instance_not_found(id))
}

/// `h` as the instance calls show it: a launched instance as recorded; a registered host as a
/// running instance whose workload lives outside: of the default type, from no AMI, with no
/// root device, alone in a reservation named after it.
pub(super) fn as_instance(h: &HostRecord) -> Cow<'_, HostRecord> {
    if h.instance.is_some() {
        return Cow::Borrowed(h);
    }
    let mut shown = h.clone();
    shown.instance = Some(InstanceRecord {
        instance_type: DEFAULT_TYPE.into(),
        image_id: String::new(),
        reservation_id: format!("r-{}", h.instance_id.trim_start_matches("i-")),
        launch_index: 0,
        state: InstanceState::Running,
        state_reason: None,
        transition_ms: h.launch_time_ms,
        root_device_name: String::new(),
        architecture: "x86_64".into(),
        virtualization_type: "hvm".into(),
        shutdown_behavior: ShutdownBehavior::default(),
        disable_api_termination: false,
        workload: None,
        user_data: None,
        instance_store: vec![],
        pid: None,
        client_token: None,
        key_name: None,
        public_key: None,
        metadata: Default::default(),
        launching: false,
    });
    Cow::Owned(shown)
}

/// User data: Base64 of at most 16 KiB.
fn check_user_data(u: &str) -> Result<(), Ec2Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(u)
        .map_err(|_| Ec2Error::invalid_value("Invalid BASE64 encoding of user data."))?;
    if bytes.len() > 16 * 1024 {
        return Err(Ec2Error::invalid_value(
            "User data is limited to 16384 bytes.",
        ));
    }
    Ok(())
}

/// The state of a host as an instance: a registered host is always running.
pub(super) fn state_of(h: &HostRecord) -> InstanceState {
    h.instance
        .as_ref()
        .map_or(InstanceState::Running, |i| i.state)
}

pub(super) fn rec(h: &HostRecord) -> &InstanceRecord {
    h.instance
        .as_ref()
        .expect("instances carry an InstanceRecord")
}

impl ControlPlane {
    pub(super) fn instance_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("instances").join(id)
    }

    fn ephemeral_path(&self, id: &str, disk: &InstanceStoreRecord) -> PathBuf {
        self.instance_dir(id)
            .join(format!("{}.img", disk.virtual_name))
    }

    /// Commits `h` with its instance changed by `edit`.
    pub(super) fn put_instance(
        &self,
        st: &mut State,
        id: &str,
        edit: impl FnOnce(&mut InstanceRecord),
    ) -> Result<HostRecord, Ec2Error> {
        let mut h = instance_of(st, id)?.clone();
        edit(h.instance.as_mut().expect("checked by instance_of"));
        self.commit(&[Change::PutHost(Box::new(h.clone()))])?;
        st.hosts.insert(h.instance_id.clone(), h.clone());
        Ok(h)
    }

    // ------------------------------------------------------------------ run

    /// RunInstances: creates and attaches each instance's volumes; the instances are `pending`
    /// and start their workloads in the background.
    pub fn run_instances(
        &self,
        who: Account,
        req: model::RunInstancesRequest,
    ) -> Result<ReservationView, Ec2Error> {
        let Some(token) = req.client_token.clone().filter(|t| !t.is_empty()) else {
            return super::crashpoint::scoped("run-instances", || {
                self.run_instances_once(who, req)
            });
        };
        // Client tokens are per account: another account's call with the same token is
        // another launch.
        let token = (who, token);
        let token_lock = self
            .launch_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(token.clone())
            .or_default()
            .clone();
        let r = {
            let _one_launch_per_token = token_lock.lock().unwrap_or_else(|p| p.into_inner());
            super::crashpoint::scoped("run-instances", || self.run_instances_once(who, req))
        };
        let mut tokens = self.launch_tokens.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this call hold it: nobody waits on this token.
        if Arc::strong_count(&token_lock) == 2 {
            tokens.remove(&token);
        }
        r
    }

    /// RunInstances, with the client token's lock held (if it has a token).
    fn run_instances_once(
        &self,
        who: Account,
        req: model::RunInstancesRequest,
    ) -> Result<ReservationView, Ec2Error> {
        super::images::check_image_id(&req.image_id)?;
        let type_name = req
            .instance_type
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_TYPE.into());
        let ty =
            instance_manager::types::lookup(&type_name).ok_or_else(|| unknown_type(&type_name))?;
        let min = if req.min_count == 0 { 1 } else { req.min_count };
        let max = if req.max_count == 0 {
            min
        } else {
            req.max_count
        };
        if min < 1 || max < min {
            return Err(Ec2Error::invalid_value(format!(
                "MinCount ({}) and MaxCount ({}) must be positive with MinCount <= MaxCount.",
                req.min_count, req.max_count
            )));
        }
        if max > MAX_COUNT {
            return Err(Ec2Error::new(
                ErrorCode::InstanceLimitExceeded,
                format!("You may launch at most {MAX_COUNT} instances in one request."),
            ));
        }
        let placed = req
            .placement
            .as_ref()
            .map(|p| p.availability_zone.clone())
            .filter(|z| !z.is_empty());
        let (zone, subnet) = match self.launch_zone(
            who,
            req.subnet_id.as_deref(),
            placed.as_deref(),
            &req.security_group_ids,
            &req.security_groups,
        )? {
            Some((zone, subnet)) => (zone, subnet),
            None => (
                placed.unwrap_or_else(|| self.cfg.availability_zones[0].clone()),
                None,
            ),
        };
        self.check_az(&zone)?;
        let behavior = match req.instance_initiated_shutdown_behavior.as_deref() {
            None | Some("") => ShutdownBehavior::default(),
            Some(b) => ShutdownBehavior::parse(b).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({b}) for parameter instanceInitiatedShutdownBehavior is invalid. Expecting stop or terminate."
                ))
            })?,
        };
        let user_data = req.user_data.clone().filter(|u| !u.is_empty());
        if let Some(u) = &user_data {
            check_user_data(u)?;
        }
        let mut instance_tags = BTreeMap::new();
        let mut volume_tags = BTreeMap::new();
        for ts in &req.tag_specifications {
            let target = match ts.resource_type.as_str() {
                "instance" => &mut instance_tags,
                "volume" => &mut volume_tags,
                other => {
                    return Err(Ec2Error::invalid_value(format!(
                        "'{other}' is not a valid taggable resource type for this operation."
                    )));
                }
            };
            super::validate::merge_tags(
                &ts.resource_type,
                target,
                ts.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
            )?;
        }
        let requested = req
            .block_device_mappings
            .iter()
            .map(super::images::mapping)
            .collect::<Result<Vec<_>, _>>()?;
        for m in requested.iter().filter(|m| m.ebs.is_some()) {
            super::validate::device_name(&m.device_name)?;
        }
        let client_token = req.client_token.clone().filter(|t| !t.is_empty());
        let metadata = match &req.metadata_options {
            Some(m) => super::metadata::apply_options(Default::default(), m)?,
            None => Default::default(),
        };
        let key = match req.key_name.as_deref().filter(|k| !k.is_empty()) {
            Some(name) => Some(
                self.key_pair_named(who, name)
                    .ok_or_else(|| super::keypairs::not_found(name))?,
            ),
            None => None,
        };
        let image = {
            let st = self.lock();
            if let Some(token) = &client_token {
                let launched: Vec<&HostRecord> = st
                    .hosts
                    .values()
                    .filter(|h| {
                        who.owns(&h.owner_id)
                            && h.instance
                                .as_ref()
                                .is_some_and(|i| i.client_token.as_ref() == Some(token))
                    })
                    .collect();
                if let Some(first) = launched.first() {
                    if rec(first).image_id != req.image_id || rec(first).instance_type != type_name
                    {
                        return Err(Ec2Error::new(
                            ErrorCode::IdempotentParameterMismatch,
                            format!(
                                "The client token '{token}' was already used with different parameters."
                            ),
                        ));
                    }
                    return Ok(self.reservation_view(&st, who, &launched));
                }
            }
            let image = st.image(who, &req.image_id)?.clone();
            let state = super::images::image_state(&st, &image);
            if state != "available" {
                return Err(Ec2Error::new(
                    ErrorCode::InvalidAmiIdUnavailable,
                    format!("The image '{}' is {state}.", image.image_id),
                ));
            }
            image
        };
        let mappings = merge_mappings(&image, requested)?;
        let disks = instance_store_disks(ty, &mappings);
        let reservation_id = ids::new_id("r");
        let mut launched = Vec::new();
        for index in 0..max {
            let record = InstanceRecord {
                instance_type: type_name.clone(),
                image_id: image.image_id.clone(),
                reservation_id: reservation_id.clone(),
                launch_index: index as u32,
                state: InstanceState::Pending,
                state_reason: reason("pending", "pending"),
                transition_ms: now_ms(),
                root_device_name: image.root_device_name.clone(),
                architecture: image.architecture.clone(),
                virtualization_type: image.virtualization_type.clone(),
                shutdown_behavior: behavior,
                disable_api_termination: req.disable_api_termination,
                workload: req.workload.clone().filter(|w| !w.trim().is_empty()),
                user_data: user_data.clone(),
                instance_store: disks.clone(),
                pid: None,
                client_token: client_token.clone(),
                key_name: key.as_ref().map(|k| k.key_name.clone()),
                public_key: key.as_ref().map(|k| k.public_key.clone()),
                metadata,
                launching: true,
            };
            match self.launch_one(
                who,
                record,
                (&zone, subnet.as_deref()),
                &mappings,
                &instance_tags,
                &volume_tags,
            ) {
                Ok(id) => launched.push(id),
                Err(e) => {
                    // All or nothing below MinCount: undo what this call launched.
                    if (launched.len() as i32) < min {
                        for id in &launched {
                            self.discard_launch(id);
                        }
                        return Err(e);
                    }
                    tracing::warn!(error = %e.message, launched = launched.len(), "RunInstances launched fewer than MaxCount");
                    break;
                }
            }
        }
        if let Err(e) = self.finish_launch(&launched) {
            for id in &launched {
                self.discard_launch(id);
            }
            return Err(e);
        }
        // The answer shows the instances `pending`, as EC2's does: build it before they boot.
        let reservation = {
            let st = self.lock();
            let hosts: Vec<&HostRecord> =
                launched.iter().filter_map(|id| st.hosts.get(id)).collect();
            self.reservation_view(&st, who, &hosts)
        };
        let me = self.arc()?;
        for id in launched {
            let me = me.clone();
            self.runtime.spawn_blocking(move || me.boot(&id));
        }
        Ok(reservation)
    }

    /// Records one `pending` instance and creates and attaches its EBS volumes.
    fn launch_one(
        &self,
        who: Account,
        record: InstanceRecord,
        (zone, subnet): (&str, Option<&str>),
        mappings: &[MappingRecord],
        tags: &BTreeMap<String, String>,
        volume_tags: &BTreeMap<String, String>,
    ) -> Result<String, Ec2Error> {
        let id = ids::new_id("i");
        {
            let mut st = self.lock();
            let host = HostRecord {
                instance_id: id.clone(),
                owner_id: who.id().to_string(),
                name: tags.get("Name").cloned().unwrap_or_else(|| id.clone()),
                availability_zone: zone.to_string(),
                launch_time_ms: now_ms(),
                tags: tags.clone(),
                instance: Some(record.clone()),
                private_ip: Some(self.free_address(&st, who, zone, subnet)?),
                subnet_id: subnet.map(str::to_string),
            };
            self.commit(&[Change::PutHost(Box::new(host.clone()))])?;
            st.hosts.insert(id.clone(), host);
        }
        for m in mappings {
            let Some(ebs) = &m.ebs else {
                continue;
            };
            if let Err(e) = self.launch_volume(who, &id, zone, m, ebs, volume_tags) {
                self.discard_launch(&id);
                return Err(e);
            }
        }
        tracing::info!(instance_id = %id, instance_type = %record.instance_type, image_id = %record.image_id, "instance launched");
        Ok(id)
    }

    fn launch_volume(
        &self,
        who: Account,
        id: &str,
        zone: &str,
        m: &MappingRecord,
        ebs: &EbsMapping,
        volume_tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        let v = self.create_volume_for(
            who,
            model::CreateVolumeRequest {
                availability_zone: zone.to_string(),
                size: ebs.volume_size.map(|n| n as i32),
                snapshot_id: ebs.snapshot_id.clone(),
                volume_type: Some(ebs.volume_type.clone().unwrap_or_else(|| "gp2".into())),
                iops: ebs.iops.map(|n| n as i32),
                throughput: ebs.throughput.map(|n| n as i32),
                encrypted: ebs.encrypted,
                kms_key_id: ebs.kms_key_id.clone(),
                tag_specifications: if volume_tags.is_empty() {
                    vec![]
                } else {
                    vec![model::TagSpecification {
                        resource_type: "volume".into(),
                        tags: volume_tags
                            .iter()
                            .map(|(k, v)| model::Tag {
                                key: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                    }]
                },
                ..Default::default()
            },
            Some(id),
        )?;
        // EC2: the root defaults to DeleteOnTermination=true; so do other launch-time volumes
        // (EbsBlockDevice's documented default), unlike volumes attached later.
        let dot = ebs.delete_on_termination.unwrap_or(true);
        if let Err(e) = self.attach(
            who,
            model::AttachVolumeRequest {
                volume_id: v.volume_id.clone(),
                instance_id: id.to_string(),
                device: m.device_name.clone(),
            },
            dot,
        ) {
            let _ = self.remove_volume(None, &v.volume_id);
            return Err(e);
        }
        Ok(())
    }

    /// Ends a RunInstances: one commit clears `launching` on each of its instances and
    /// `launched_for` on each volume made for them. Until it, a crash discards them all at
    /// start-up ([`ControlPlane::discard_interrupted_launches`]).
    fn finish_launch(&self, launched: &[String]) -> Result<(), Ec2Error> {
        let mut st = self.lock();
        let mut hosts = Vec::new();
        for id in launched {
            let mut h = instance_of(&st, id)?.clone();
            if let Some(i) = h.instance.as_mut() {
                i.launching = false;
            }
            hosts.push(h);
        }
        let volumes: Vec<VolumeRecord> = st
            .volumes
            .values()
            .filter(|v| {
                v.launched_for
                    .as_ref()
                    .is_some_and(|i| launched.contains(i))
            })
            .map(|v| VolumeRecord {
                launched_for: None,
                ..v.clone()
            })
            .collect();
        let changes: Vec<Change> = hosts
            .iter()
            .cloned()
            .map(|h| Change::PutHost(Box::new(h)))
            .chain(volumes.iter().cloned().map(Change::PutVolume))
            .collect();
        self.commit(&changes)?;
        for h in hosts {
            st.hosts.insert(h.instance_id.clone(), h);
        }
        for v in volumes {
            st.volumes.insert(v.volume_id.clone(), v);
        }
        Ok(())
    }

    /// Start-up: a RunInstances cut short by a crash is undone, all of it: its instances
    /// (still `launching`) and every volume made for them (attached or not) go, files too.
    pub(super) fn discard_interrupted_launches(&self, st: &mut State) -> Result<(), Ec2Error> {
        let launching = |st: &State, id: &str| {
            st.hosts
                .get(id)
                .is_none_or(|h| h.instance.as_ref().is_some_and(|i| i.launching))
        };
        let doomed_hosts: Vec<String> = st
            .hosts
            .values()
            .filter(|h| h.instance.as_ref().is_some_and(|i| i.launching))
            .map(|h| h.instance_id.clone())
            .collect();
        let mut changes = Vec::new();
        let mut doomed_volumes = Vec::new();
        for v in st.volumes.values() {
            let Some(owner) = &v.launched_for else {
                continue;
            };
            if launching(st, owner) {
                doomed_volumes.push(v.volume_id.clone());
            } else {
                // Not reachable through RunInstances (its last commit clears both together);
                // kept so that a record written otherwise is not deleted by mistake.
                changes.push(Change::PutVolume(VolumeRecord {
                    launched_for: None,
                    ..v.clone()
                }));
            }
        }
        if doomed_hosts.is_empty() && doomed_volumes.is_empty() && changes.is_empty() {
            return Ok(());
        }
        // Files first: a crash before the commit finds the records again and retries.
        for id in &doomed_volumes {
            let v = &st.volumes[id];
            let path = self.volume_path(&v.availability_zone, id);
            Volume::remove(&path).map_err(super::internal(
                "removing a volume of an interrupted launch",
            ))?;
            let _ = std::fs::remove_file(super::snapshots::hydrate_path(&path));
        }
        for id in &doomed_hosts {
            let _ = std::fs::remove_dir_all(self.instance_dir(id));
        }
        changes.extend(doomed_volumes.iter().cloned().map(Change::DeleteVolume));
        changes.extend(doomed_hosts.iter().cloned().map(Change::DeleteHost));
        self.commit(&changes)?;
        for c in changes {
            match c {
                Change::PutVolume(v) => {
                    st.volumes.insert(v.volume_id.clone(), v);
                }
                Change::DeleteVolume(id) => {
                    st.volumes.remove(&id);
                }
                Change::DeleteHost(id) => {
                    st.hosts.remove(&id);
                }
                _ => {}
            }
        }
        if !doomed_hosts.is_empty() || !doomed_volumes.is_empty() {
            tracing::warn!(instances = ?doomed_hosts, volumes = ?doomed_volumes, "discarded a launch a restart interrupted");
        }
        Ok(())
    }

    /// Undoes a launch that failed: detaches and deletes its volumes, forgets the instance.
    fn discard_launch(&self, id: &str) {
        for (volume_id, _) in self.attachments_of(id) {
            let _ = self.force_detach(&volume_id, id);
            let _ = self.remove_volume(None, &volume_id);
        }
        let mut st = self.lock();
        if self.commit(&[Change::DeleteHost(id.to_string())]).is_ok() {
            st.hosts.remove(id);
        }
    }

    fn attachments_of(&self, id: &str) -> Vec<(String, AttachmentRecord)> {
        let st = self.lock();
        attachments_in(&st, id)
    }

    // ----------------------------------------------------------------- boot

    /// Boots a `pending` instance: exports its volumes (new tokens) and instance store, writes
    /// its devices file, starts the workload, and marks it `running`. On failure the instance
    /// ends `stopped` with the reason.
    fn boot(&self, id: &str) {
        let result = {
            let mut st = self.lock();
            match instance_of(&st, id).map(|h| rec(h).state) {
                Ok(InstanceState::Pending) => self.boot_locked(&mut st, id),
                // Stopped or terminated while pending: nothing to boot.
                _ => return,
            }
        };
        if let Err(e) = result {
            tracing::error!(instance_id = id, error = %e.message, "instance failed to boot");
            self.power_off(id);
            let mut st = self.lock();
            let _ = self.put_instance(&mut st, id, |i| {
                halted(i, InstanceState::Stopped);
                i.state_reason = reason("Server.InternalError", &e.message);
            });
        }
    }

    fn boot_locked(&self, st: &mut State, id: &str) -> Result<(), Ec2Error> {
        let host = instance_of(st, id)?.clone();
        let r = rec(&host);
        let ty = instance_manager::types::lookup(&r.instance_type)
            .ok_or_else(|| unknown_type(&r.instance_type))?;
        // New tokens and generations: nothing of an earlier run reaches these disks.
        let mut changes = Vec::new();
        for v in st.volumes.values() {
            let mut nv = v.clone();
            let mut changed = false;
            for a in nv.attachments.iter_mut().filter(|a| a.instance_id == id) {
                if self.exports.get(&a.token).is_none() {
                    a.token = ids::new_export_token();
                    a.generation = nv.next_generation;
                    changed = true;
                }
            }
            if changed {
                nv.next_generation += 1;
                changes.push(Change::PutVolume(nv));
            }
        }
        self.commit(&changes)?;
        super::apply(st, changes);
        st.instances
            .throttles
            .insert(id.to_string(), self.instance_throttle(ty));
        // Mark running first so the exports below are allowed, then serve.
        let mut disks = r.instance_store.clone();
        for d in &mut disks {
            d.token = ids::new_export_token();
        }
        let mut running = host.clone();
        {
            let i = running.instance.as_mut().expect("instance");
            i.state = InstanceState::Running;
            i.state_reason = None;
            i.transition_ms = now_ms();
            i.instance_store = disks;
        }
        running.launch_time_ms = now_ms();
        st.hosts.insert(id.to_string(), running.clone());
        let served = self.serve_instance(st, &running, false);
        let workload = served.and_then(|()| self.start_workload(st, &running));
        // On error the running record stays in memory (not committed) so that the caller's
        // power-off finds the instance store tokens it exported.
        let workload = workload?;
        if let Some(i) = running.instance.as_mut() {
            i.pid = workload.as_ref().map(|w| (w.pid(), w.start_ticks()));
        }
        self.commit(&[Change::PutHost(Box::new(running.clone()))])?;
        st.hosts.insert(id.to_string(), running);
        if let Some(w) = workload {
            self.supervise(st, id, w);
        }
        tracing::info!(instance_id = id, "instance running");
        Ok(())
    }

    /// Exports the EBS attachments and instance store disks of a running instance (with the
    /// tokens in the records).
    /// `adopted` (a workload found alive at start): a volume whose KMS key is unusable is left
    /// unserved (EnableKey serves it) rather than failing the start. A boot fails instead.
    fn serve_instance(
        &self,
        st: &mut State,
        host: &HostRecord,
        adopted: bool,
    ) -> Result<(), Ec2Error> {
        let id = host.instance_id.as_str();
        let r = rec(host);
        if !st.instances.throttles.contains_key(id)
            && let Some(ty) = instance_manager::types::lookup(&r.instance_type)
        {
            st.instances
                .throttles
                .insert(id.to_string(), self.instance_throttle(ty));
        }
        for (volume_id, a) in attachments_in(st, id) {
            if self.exports.get(&a.token).is_some() {
                continue;
            }
            let v = st.volumes.get(&volume_id).cloned().expect("listed");
            match self.export(st, &v, &a) {
                Ok(()) => {}
                // Adopted at start while the volume's KMS key is unusable: the instance runs
                // without that device until the key is enabled (EnableKey serves it again).
                Err(e) if adopted && e.code == ErrorCode::InvalidKmsKeyInvalidState => {
                    tracing::warn!(instance_id = %id, volume_id = %v.volume_id, error = %e.message, "not serving a volume until its KMS key is usable");
                }
                Err(e) => return Err(e),
            }
        }
        let dir = self.instance_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(super::internal("creating the instance directory"))?;
        let mut open = Vec::new();
        for d in &r.instance_store {
            let path = self.ephemeral_path(id, d);
            if !path.exists() {
                Volume::create(&path, d.size_bytes)
                    .map_err(super::internal("creating an instance store disk"))?;
            }
            let volume = Arc::new(
                Volume::open(&path, self.engine.clone())
                    .map_err(super::internal("opening an instance store disk"))?,
            );
            let o = OpenVolume {
                volume,
                stats: Arc::new(IoStats::default()),
                throttle: Arc::new(Throttle::new(Limits::UNLIMITED)),
                reservation: None,
                captures: Arc::new(CaptureSet::default()),
                hydration: None,
            };
            let export = Export::new(d.virtual_name.clone(), id.to_string(), 0, o.clone(), false);
            self.exports.insert(d.token.clone(), Arc::new(export));
            open.push(o);
        }
        st.instances.ephemeral.insert(id.to_string(), open);
        Ok(())
    }

    /// The devices of a running instance, as its workload sees them.
    fn devices(&self, st: &State, host: &HostRecord) -> Vec<Device> {
        let r = rec(host);
        let mut out: Vec<Device> = attachments_in(st, &host.instance_id)
            .into_iter()
            .map(|(volume_id, a)| {
                let size = st
                    .volumes
                    .get(&volume_id)
                    .map_or(0, |v| u64::from(v.size_gib) << 30);
                Device {
                    root: a.device == r.root_device_name,
                    device_name: a.device,
                    kind: DeviceKind::Ebs { volume_id },
                    nbd_uri: self.nbd_uri(&a.token),
                    size_bytes: size,
                }
            })
            .collect();
        out.sort_by_key(|d| (!d.root, d.device_name.clone()));
        out.extend(r.instance_store.iter().map(|d| Device {
            device_name: d.device_name.clone(),
            kind: DeviceKind::InstanceStore {
                virtual_name: d.virtual_name.clone(),
            },
            nbd_uri: self.nbd_uri(&d.token),
            size_bytes: d.size_bytes,
            root: false,
        }));
        out
    }

    /// Writes the devices file and starts the workload of a running instance (none when it has
    /// no command or user data).
    fn start_workload(
        &self,
        st: &mut State,
        host: &HostRecord,
    ) -> Result<Option<Workload>, Ec2Error> {
        let r = rec(host);
        let id = host.instance_id.as_str();
        let dir = self.instance_dir(id);
        let info = InstanceInfo {
            instance_id: id,
            instance_type: &r.instance_type,
            availability_zone: &host.availability_zone,
        };
        let devices = self.devices(st, host);
        let file = devices::write_devices_file(&dir, &info, &devices)
            .map_err(super::internal("writing the devices file"))?;
        let booted = self.boot_program(st, host, &dir)?;
        let program = match (booted, &r.workload, &r.user_data) {
            (Some(init), _, _) => init,
            (None, Some(cmd), _) => Program::Shell(cmd.clone()),
            (None, None, Some(u)) => Program::Script(
                base64::engine::general_purpose::STANDARD
                    .decode(u)
                    .map_err(super::internal("decoding user data"))?,
            ),
            (None, None, None) => return Ok(None),
        };
        let mut env = devices::environment(&info, &file, &devices);
        if !matches!(program, Program::Exec(..))
            && let Some(m) = &self.cfg.metadata
        {
            // A plain process reaches its metadata service where the AWS SDKs look first.
            match m.serve_instance(id) {
                Ok(url) => env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), url)),
                Err(why) => {
                    tracing::warn!(
                        instance_id = id,
                        why,
                        "the instance has no metadata service"
                    )
                }
            }
        }
        let ty = instance_manager::types::lookup(&r.instance_type);
        let spec = WorkloadSpec {
            instance_id: id.to_string(),
            dir,
            program,
            env,
            limits: ty.map(|t| CgroupLimits {
                vcpus: t.vcpus,
                memory_bytes: t.memory_mib << 20,
            }),
        };
        // The child is a tokio process: spawn it inside the runtime.
        let _rt = self.runtime.enter();
        let w = Workload::spawn(&spec).map_err(super::internal("starting the workload"))?;
        tracing::info!(instance_id = id, pid = w.pid(), limits = ?w.limits_applied(), "workload started");
        Ok(Some(w))
    }

    /// Hands a running workload to a supervisor task.
    fn supervise(&self, st: &mut State, id: &str, w: Workload) {
        let (tx, rx) = mpsc::unbounded_channel();
        st.instances.workloads.insert(id.to_string(), tx);
        let me = self.me.clone();
        self.runtime.spawn(supervise(me, id.to_string(), w, rx));
    }

    /// A workload's supervisor asks for it to be started again (reboot, CreateImage).
    fn respawn(&self, id: &str) -> Option<Workload> {
        let mut st = self.lock();
        let host = instance_of(&st, id).ok()?.clone();
        if rec(&host).state != InstanceState::Running {
            return None;
        }
        match self.start_workload(&mut st, &host) {
            Ok(Some(w)) => {
                let pid = (w.pid(), w.start_ticks());
                let _ = self.put_instance(&mut st, id, |i| i.pid = Some(pid));
                Some(w)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(instance_id = id, error = %e.message, "workload did not restart");
                None
            }
        }
    }

    /// A workload ended by itself: its instance follows InstanceInitiatedShutdownBehavior.
    fn workload_exited(&self, id: &str, exit: &workload::Exit) {
        let action = {
            let mut st = self.lock();
            let Ok(h) = instance_of(&st, id) else {
                return;
            };
            if rec(h).state != InstanceState::Running {
                return;
            }
            let action = rec(h).shutdown_behavior.action();
            st.instances.workloads.remove(id);
            action
        };
        tracing::info!(instance_id = id, %exit, action = ?action, "workload exited; instance-initiated shutdown");
        let why = reason(
            "Client.InstanceInitiatedShutdown",
            &format!("Client.InstanceInitiatedShutdown: Instance initiated shutdown ({exit})"),
        );
        if let Err(e) = self.change_states(None, &[id.to_string()], action, false, why) {
            tracing::error!(instance_id = id, error = %e.message, "instance-initiated shutdown failed");
        }
    }

    // ------------------------------------------------------------ lifecycle

    /// StartInstances.
    pub fn start_instances(
        &self,
        who: Account,
        ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, Ec2Error> {
        {
            // An instance does not start with a volume whose KMS key is unusable.
            let st = self.lock();
            for v in st.volumes.values().filter(|v| {
                who.owns(&v.owner_id) && v.attachments.iter().any(|a| ids.contains(&a.instance_id))
            }) {
                self.check_key_usable(&st, v.encryption.as_ref().map(|e| e.kms_key_id.as_str()))?;
            }
        }
        self.change_states(Some(who), ids, Action::Start, false, None)
    }

    /// StopInstances. `force` kills the workload without waiting for it.
    pub fn stop_instances(
        &self,
        who: Account,
        ids: &[String],
        force: bool,
        hibernate: bool,
    ) -> Result<Vec<InstanceStateChange>, Ec2Error> {
        if hibernate {
            return Err(Ec2Error::new(
                ErrorCode::UnsupportedHibernationConfiguration,
                "Hibernation is not supported by this server.",
            ));
        }
        self.change_states(
            Some(who),
            ids,
            Action::Stop,
            force,
            user_reason(Action::Stop),
        )
    }

    /// TerminateInstances. A registered host is deregistered (its volumes detached and
    /// fenced) and answers running → terminated; it is gone from DescribeInstances at once.
    pub fn terminate_instances(
        &self,
        who: Account,
        ids: &[String],
    ) -> Result<Vec<InstanceStateChange>, Ec2Error> {
        let registered: Vec<String> = {
            let st = self.lock();
            for id in ids {
                check_instance_id(id)?;
                visible_instance(&st, who, id)?;
            }
            ids.iter()
                .filter(|id| st.hosts.get(*id).is_some_and(|h| h.instance.is_none()))
                .cloned()
                .collect()
        };
        let launched: Vec<String> = ids
            .iter()
            .filter(|id| !registered.contains(id))
            .cloned()
            .collect();
        let mut changes = if launched.is_empty() && !ids.is_empty() {
            vec![]
        } else {
            self.change_states(
                Some(who),
                &launched,
                Action::Terminate,
                false,
                user_reason(Action::Terminate),
            )?
        };
        for id in registered {
            self.deregister_host(who, &id)?;
            changes.push(InstanceStateChange {
                instance_id: id,
                previous: InstanceState::Running,
                current: InstanceState::Terminated,
            });
        }
        Ok(changes)
    }

    /// RebootInstances: the workload restarts; volumes and instance store stay.
    pub fn reboot_instances(&self, who: Account, ids: &[String]) -> Result<(), Ec2Error> {
        self.change_states(Some(who), ids, Action::Reboot, false, None)
            .map(|_| ())
    }

    /// Checks every instance first (all or nothing), commits the transitional states, and
    /// finishes each transition in the background.
    /// `who`: the caller, or `None` for the server's own transitions (an instance-initiated
    /// shutdown).
    fn change_states(
        &self,
        who: Option<Account>,
        ids: &[String],
        action: Action,
        force: bool,
        why: Option<StateReasonRecord>,
    ) -> Result<Vec<InstanceStateChange>, Ec2Error> {
        if ids.is_empty() {
            return Err(Ec2Error::missing("InstanceId"));
        }
        for id in ids {
            check_instance_id(id)?;
        }
        let me = self.arc()?;
        let mut st = self.lock();
        let mut plan = Vec::new();
        for id in ids {
            let h = match who {
                Some(who) => own_instance(&st, who, id)?,
                None => instance_of(&st, id)?,
            };
            let r = rec(h);
            if action == Action::Terminate
                && r.disable_api_termination
                && why
                    .as_ref()
                    .is_none_or(|w| w.code != "Client.InstanceInitiatedShutdown")
            {
                return Err(Ec2Error::new(
                    ErrorCode::OperationNotPermitted,
                    format!(
                        "The instance '{id}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again."
                    ),
                ));
            }
            let t = lifecycle::transition(id, r.state, action).map_err(incorrect)?;
            // A stopped instance's root volume may have been detached: it cannot start so.
            if t == Transition::Begin(InstanceState::Pending)
                && !attachments_in(&st, id)
                    .iter()
                    .any(|(_, a)| a.device == r.root_device_name)
            {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectInstanceState,
                    format!(
                        "The instance '{id}' does not have a volume attached at root ({}).",
                        r.root_device_name
                    ),
                ));
            }
            plan.push((id.clone(), r.state, t));
        }
        let mut changes = Vec::new();
        for (id, previous, t) in plan {
            let current = match t {
                Transition::Unchanged | Transition::Reboot => previous,
                Transition::Begin(next) => {
                    self.put_instance(&mut st, &id, |i| {
                        i.state = next;
                        i.transition_ms = now_ms();
                        i.state_reason = why.clone();
                    })?;
                    next
                }
            };
            match t {
                Transition::Unchanged => {}
                Transition::Reboot => {
                    if let Some(tx) = st.instances.workloads.get(&id) {
                        let (stopped, _) = oneshot::channel();
                        let _ = tx.send(Cmd::Restart {
                            grace: self.cfg.instance_stop_timeout,
                            stopped,
                            resume: None,
                        });
                    }
                }
                Transition::Begin(InstanceState::Pending) => {
                    let me = me.clone();
                    let id = id.clone();
                    self.runtime.spawn_blocking(move || me.boot(&id));
                }
                Transition::Begin(next) => {
                    let grace = if force {
                        Duration::ZERO
                    } else {
                        self.cfg.instance_stop_timeout
                    };
                    let supervisor = st.instances.workloads.remove(&id);
                    let me = me.clone();
                    let id = id.clone();
                    self.runtime.spawn(async move {
                        if let Some(tx) = supervisor {
                            let (done, gone) = oneshot::channel();
                            if tx.send(Cmd::Stop { grace, done }).is_ok() {
                                let _ = gone.await;
                            }
                        }
                        let _ = tokio::task::spawn_blocking(move || {
                            if next == InstanceState::ShuttingDown {
                                me.finish_terminate(&id);
                            } else {
                                me.finish_stop(&id);
                            }
                        })
                        .await;
                    });
                }
            }
            changes.push(InstanceStateChange {
                instance_id: id,
                current,
                previous,
            });
        }
        Ok(changes)
    }

    /// At shutdown, while the NBD sessions still serve: a booted instance cannot outlive the
    /// server (its disks are the server's NBD exports), so each running one is shut down as
    /// StopInstances does (SIGTERM to its init, SIGKILL after the stop timeout; all at once),
    /// its disks are released and flushed, and it is recorded `stopped`. One already stopping or
    /// terminating is left to that work (a restart finishes it). Then this server's namespaces
    /// and bridges go.
    pub async fn shut_down_booted(&self) {
        let stops: Vec<(String, mpsc::UnboundedSender<Cmd>)> = {
            let mut st = self.lock();
            let ids: Vec<String> = st
                .instances
                .local
                .keys()
                .filter(|id| {
                    instance_of(&st, id).is_ok_and(|h| rec(h).state == InstanceState::Running)
                })
                .cloned()
                .collect();
            ids.into_iter()
                .filter_map(|id| {
                    let tx = st.instances.workloads.remove(&id)?;
                    Some((id, tx))
                })
                .collect()
        };
        if stops.is_empty() {
            // Only quick checks (nothing of ours exists): no need to leave the runtime.
            self.remove_networks();
            return;
        }
        let mut gone = Vec::new();
        for (_, tx) in &stops {
            let (done, rx) = oneshot::channel();
            let stop = Cmd::Stop {
                grace: self.cfg.instance_stop_timeout,
                done,
            };
            if tx.send(stop).is_ok() {
                gone.push(rx);
            }
        }
        for rx in gone {
            let _ = rx.await;
        }
        tokio::task::block_in_place(|| {
            for (id, _) in &stops {
                tracing::info!(instance_id = %id, "booted instance shut down with the server");
                let local = {
                    let mut st = self.lock();
                    st.instances.next_node.remove(id);
                    st.instances.local.remove(id).unwrap_or_default()
                };
                self.detach_local_disks(id, local, true);
                let mut st = self.lock();
                let why = reason(
                    "Server.InternalError",
                    "Server.InternalError: the server stopped, and a booted instance stops with it",
                );
                let _ = self.put_instance(&mut st, id, |i| {
                    halted(i, InstanceState::Stopped);
                    i.state_reason = why;
                });
            }
            self.remove_networks();
        });
    }

    /// Stops serving an instance's disks: fences its exports (in-flight I/O completes first),
    /// closes and erases its instance store.
    fn power_off(&self, id: &str) {
        if let Some(m) = &self.cfg.metadata {
            m.stop_instance(id);
        }
        let local = {
            let mut st = self.lock();
            st.instances.next_node.remove(id);
            st.instances.local.remove(id)
        };
        if let Some(local) = local {
            self.detach_local_disks(id, local, true);
        }
        let (exports, ephemeral, disks) = {
            let mut st = self.lock();
            st.instances.throttles.remove(id);
            st.instances.workloads.remove(id);
            let mut exports: Vec<Arc<Export>> = attachments_in(&st, id)
                .iter()
                .filter_map(|(_, a)| self.exports.remove(&a.token))
                .collect();
            let disks = st
                .hosts
                .get(id)
                .and_then(|h| h.instance.as_ref())
                .map(|i| i.instance_store.clone())
                .unwrap_or_default();
            exports.extend(disks.iter().filter_map(|d| self.exports.remove(&d.token)));
            let ephemeral = st.instances.ephemeral.remove(id).unwrap_or_default();
            (exports, ephemeral, disks)
        };
        self.runtime.block_on(async {
            for e in &exports {
                e.fence().await;
            }
            for o in &ephemeral {
                if let Err(e) = o.volume.close().await {
                    tracing::warn!(instance_id = id, error = %e, "closing an instance store disk");
                }
            }
        });
        for d in &disks {
            if let Err(e) = Volume::remove(&self.ephemeral_path(id, d)) {
                tracing::warn!(instance_id = id, error = %e, "erasing an instance store disk");
            }
        }
    }

    /// Ends a stop: the disks stop serving, instance store is erased, the instance is `stopped`.
    fn finish_stop(&self, id: &str) {
        self.power_off(id);
        let mut st = self.lock();
        if instance_of(&st, id).is_ok_and(|h| rec(h).state == InstanceState::Stopping) {
            let done = self.put_instance(&mut st, id, |i| halted(i, InstanceState::Stopped));
            match done {
                Ok(_) => tracing::info!(instance_id = id, "instance stopped"),
                Err(e) => tracing::error!(instance_id = id, error = %e.message, "recording a stop"),
            }
        }
    }

    /// Ends a termination: detaches every volume, deletes those marked DeleteOnTermination
    /// (a Multi-Attach volume only with its last attachment), erases instance store.
    fn finish_terminate(&self, id: &str) {
        self.power_off(id);
        for (volume_id, a) in self.attachments_of(id) {
            let detached = self.force_detach(&volume_id, id);
            if let Err(e) = detached {
                tracing::error!(instance_id = id, volume_id, error = %e.message, "detaching at termination");
                continue;
            }
            let last = self
                .lock()
                .volumes
                .get(&volume_id)
                .is_some_and(|v| v.state == VolumeState::Available);
            if a.delete_on_termination && last {
                match self.remove_volume(None, &volume_id) {
                    Ok(()) => tracing::info!(instance_id = id, volume_id, "deleted on termination"),
                    Err(e) => {
                        tracing::error!(instance_id = id, volume_id, error = %e.message, "deleting at termination")
                    }
                }
            }
        }
        self.remove_instance_network(id);
        let mut st = self.lock();
        let done = self.put_instance(&mut st, id, |i| halted(i, InstanceState::Terminated));
        self.release_addresses_of(&mut st, id);
        drop(st);
        self.apply_wiring();
        match done {
            Ok(_) => tracing::info!(instance_id = id, "instance terminated"),
            Err(e) => {
                tracing::error!(instance_id = id, error = %e.message, "recording a termination")
            }
        }
    }

    // -------------------------------------------------------------- images

    /// CreateImage: snapshots every EBS volume of the instance into a new AMI (`pending` until
    /// the snapshots complete). A running workload is stopped for the point in time and started
    /// again, unless `no_reboot`.
    pub fn create_image(
        &self,
        who: Account,
        req: model::CreateImageRequest,
    ) -> Result<String, Ec2Error> {
        check_instance_id(&req.instance_id)?;
        super::images::check_name(&req.name)?;
        let tags = super::validate::tag_specifications("image", &req.tag_specifications)?;
        let id = req.instance_id.as_str();
        let (host, supervisor) = {
            let st = self.lock();
            let h = own_instance(&st, who, id)?.clone();
            let state = rec(&h).state;
            if !matches!(state, InstanceState::Running | InstanceState::Stopped) {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectInstanceState,
                    format!(
                        "The instance '{id}' is not in the 'running' or 'stopped' state (it is '{}').",
                        state.as_str()
                    ),
                ));
            }
            if st
                .images
                .values()
                .any(|i| i.name == req.name && who.owns(&i.owner_id))
            {
                return Err(Ec2Error::new(
                    ErrorCode::InvalidAmiNameDuplicate,
                    format!("AMI name {} is already in use by an AMI", req.name),
                ));
            }
            let sup = (!req.no_reboot)
                .then(|| st.instances.workloads.get(id).cloned())
                .flatten();
            (h, sup)
        };
        // Quiesce: the supervisor stops the workload and waits for `resume` before restarting it.
        let resume = match supervisor {
            Some(tx) => {
                let (stopped, is_stopped) = oneshot::channel();
                let (resume, wait_resume) = oneshot::channel();
                let sent = tx.send(Cmd::Restart {
                    grace: self.cfg.instance_stop_timeout,
                    stopped,
                    resume: Some(wait_resume),
                });
                if sent.is_ok() {
                    let _ = self.runtime.block_on(is_stopped);
                }
                Some(resume)
            }
            None => None,
        };
        let image_id = ids::new_id("ami");
        let mut mappings = Vec::new();
        let mut made = Vec::new();
        let mut failed = None;
        for (volume_id, a) in self.attachments_of(id) {
            let snap = self.snapshot_volume(
                who,
                model::CreateSnapshotRequest {
                    volume_id: volume_id.clone(),
                    description: Some(format!("Created by CreateImage({id}) for {image_id}")),
                    ..Default::default()
                },
                false,
            );
            match snap {
                Ok(s) => {
                    let v = self.lock().volumes.get(&volume_id).cloned();
                    made.push(s.snapshot_id.clone());
                    mappings.push(MappingRecord {
                        device_name: a.device.clone(),
                        ebs: Some(EbsMapping {
                            snapshot_id: Some(s.snapshot_id),
                            volume_size: v.as_ref().map(|v| v.size_gib),
                            volume_type: v.as_ref().map(|v| v.volume_type.as_str().to_string()),
                            // Only the types where they are provisioned.
                            iops: v
                                .as_ref()
                                .filter(|v| v.volume_type.provisioned_iops())
                                .and_then(|v| v.iops),
                            throughput: v
                                .as_ref()
                                .filter(|v| v.volume_type == crate::catalog::VolumeType::Gp3)
                                .and_then(|v| v.throughput),
                            delete_on_termination: Some(a.delete_on_termination),
                            encrypted: Some(s.kms_key_id.is_some()),
                            kms_key_id: None,
                        }),
                        virtual_name: None,
                        no_device: false,
                    });
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(r) = resume {
            let _ = r.send(());
        }
        if let Some(e) = failed {
            for s in made {
                let _ = self.delete_snapshot(who, &s);
            }
            return Err(e);
        }
        let r = rec(&host);
        if !mappings.iter().any(|m| m.device_name == r.root_device_name) {
            for s in made {
                let _ = self.delete_snapshot(who, &s);
            }
            return Err(Ec2Error::new(
                ErrorCode::InvalidInstanceIdUnavailable,
                format!(
                    "The instance '{id}' has no root volume ({}) attached.",
                    r.root_device_name
                ),
            ));
        }
        mappings.extend(r.instance_store.iter().map(|d| MappingRecord {
            device_name: d.device_name.clone(),
            ebs: None,
            virtual_name: Some(d.virtual_name.clone()),
            no_device: false,
        }));
        let image = ImageRecord {
            image_id: image_id.clone(),
            owner_id: who.id().to_string(),
            name: req.name,
            description: req.description.unwrap_or_default(),
            creation_ms: now_ms(),
            root_device_name: r.root_device_name.clone(),
            architecture: r.architecture.clone(),
            virtualization_type: r.virtualization_type.clone(),
            mappings,
            tags,
        };
        let mut st = self.lock();
        if st
            .images
            .values()
            .any(|i| i.name == image.name && who.owns(&i.owner_id))
        {
            drop(st);
            for s in made {
                let _ = self.delete_snapshot(who, &s);
            }
            return Err(Ec2Error::new(
                ErrorCode::InvalidAmiNameDuplicate,
                format!("AMI name {} is already in use by an AMI", image.name),
            ));
        }
        self.commit(&[Change::PutImage(image.clone())])?;
        st.images.insert(image_id.clone(), image);
        tracing::info!(instance_id = id, image_id, "image created from instance");
        Ok(image_id)
    }

    // ------------------------------------------------------------ describe

    /// DescribeInstances: ids and/or filters, paged in instance-id order, grouped by reservation.
    pub fn describe_instances(
        &self,
        who: Account,
        req: model::DescribeInstancesRequest,
    ) -> Result<InstancesPage, Ec2Error> {
        for id in &req.instance_ids {
            check_instance_id(id)?;
        }
        let names = [
            "instance-id",
            "instance-state-name",
            "instance-state-code",
            "instance-type",
            "image-id",
            "availability-zone",
            "block-device-mapping.volume-id",
            "block-device-mapping.device-name",
            "reservation-id",
            "root-device-name",
            "tag-key",
        ];
        super::filter::check_names(&req.filters, &names)?;
        let max = super::filter::page_size(
            req.max_results,
            !req.instance_ids.is_empty(),
            "InstanceIds",
            1000,
        )?;
        let after = super::decode_token_opt(req.next_token.as_deref(), "i")?;
        let mut st = self.lock();
        self.purge_terminated(&mut st);
        let matches = |h: &HostRecord| {
            let h = as_instance(h);
            let h = h.as_ref();
            let r = rec(h);
            req.filters.iter().all(|f| {
                let any = |v: &str| f.values.iter().any(|p| super::filter::glob(p, v));
                match f.name.as_str() {
                    "instance-id" => any(&h.instance_id),
                    "instance-state-name" => any(r.state.as_str()),
                    "instance-state-code" => any(&r.state.code().to_string()),
                    "instance-type" => any(&r.instance_type),
                    "image-id" => any(&r.image_id),
                    "availability-zone" => any(&h.availability_zone),
                    "reservation-id" => any(&r.reservation_id),
                    "root-device-name" => any(&r.root_device_name),
                    "block-device-mapping.volume-id" => attachments_in(&st, &h.instance_id)
                        .iter()
                        .any(|(v, _)| any(v)),
                    "block-device-mapping.device-name" => attachments_in(&st, &h.instance_id)
                        .iter()
                        .any(|(_, a)| any(&a.device)),
                    "tag-key" => h.tags.keys().any(|k| any(k)),
                    name => name
                        .strip_prefix("tag:")
                        .and_then(|k| h.tags.get(k))
                        .is_some_and(|v| any(v)),
                }
            })
        };
        // Registered hosts too, each as a running instance of its own reservation.
        let mut picked: Vec<Cow<HostRecord>> = Vec::new();
        let mut next = None;
        if req.instance_ids.is_empty() {
            for (id, h) in &st.hosts {
                if !who.owns(&h.owner_id) || after.as_ref().is_some_and(|a| id <= a) || !matches(h)
                {
                    continue;
                }
                if picked.len() == max {
                    next = picked.last().map(|l| super::encode_token(&l.instance_id));
                    break;
                }
                picked.push(as_instance(h));
            }
        } else {
            for id in &req.instance_ids {
                let h = visible_instance(&st, who, id)?;
                if matches(&h) && !picked.iter().any(|p| p.instance_id == *id) {
                    picked.push(h);
                }
            }
        }
        // One reservation per RunInstances call, in the order first seen.
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<&HostRecord>> = HashMap::new();
        for h in &picked {
            let rid = rec(h).reservation_id.as_str();
            if !groups.contains_key(rid) {
                order.push(rid);
            }
            groups.entry(rid).or_default().push(h);
        }
        let reservations = order
            .into_iter()
            .map(|rid| self.reservation_view(&st, who, &groups[rid]))
            .collect();
        Ok(InstancesPage {
            reservations,
            next_token: next,
        })
    }

    /// Forgets instances terminated more than an hour ago.
    fn purge_terminated(&self, st: &mut State) {
        let now = now_ms();
        let old: Vec<String> = st
            .hosts
            .values()
            .filter(|h| {
                h.instance.as_ref().is_some_and(|i| {
                    i.state == InstanceState::Terminated
                        && now.saturating_sub(i.transition_ms) > TERMINATED_VISIBLE_MS
                })
            })
            .map(|h| h.instance_id.clone())
            .collect();
        if old.is_empty() {
            return;
        }
        let mut changes: Vec<Change> = old.iter().cloned().map(Change::DeleteHost).collect();
        // An address whose release at termination failed to commit lets go with the record.
        changes.extend(
            st.addresses
                .values()
                .filter(|a| {
                    old.iter()
                        .any(|id| super::addresses::associated_with(a, id))
                })
                .map(super::addresses::let_go),
        );
        if self.commit(&changes).is_ok() {
            super::apply(st, changes);
            for id in old {
                let _ = std::fs::remove_dir_all(self.instance_dir(&id));
            }
        }
    }

    fn reservation_view(&self, st: &State, who: Account, hosts: &[&HostRecord]) -> ReservationView {
        ReservationView {
            reservation_id: hosts
                .first()
                .map(|h| rec(h).reservation_id.clone())
                .unwrap_or_default(),
            owner_id: who.id().to_string(),
            instances: hosts.iter().map(|h| self.instance_view(st, h)).collect(),
        }
    }

    fn instance_view(&self, st: &State, h: &HostRecord) -> InstanceView {
        let r = rec(h);
        let now = super::now_ms();
        let atts: Vec<(String, AttachmentRecord)> = attachments_in(st, &h.instance_id)
            .into_iter()
            .map(|(v, a)| {
                let shown = self.presented_attachment(&a, now);
                (v, shown)
            })
            .collect();
        let mut uris = HashMap::new();
        if r.state == InstanceState::Running {
            for (_, a) in &atts {
                uris.insert(a.device.clone(), self.nbd_uri(&a.token));
            }
            for d in &r.instance_store {
                uris.insert(d.device_name.clone(), self.nbd_uri(&d.token));
            }
        }
        let ty = instance_manager::types::lookup(&r.instance_type);
        InstanceView {
            host: h.clone(),
            attachments: atts,
            device_uris: uris,
            devices_file: self
                .instance_dir(&h.instance_id)
                .join("devices.json")
                .display()
                .to_string(),
            cpu_core_count: ty.map_or(0, |t| t.vcpus.div_ceil(2)),
            network: self.instance_network(st, h),
            public_ip: self.public_ip_of(st, &h.instance_id),
        }
    }

    /// ModifyInstanceAttribute: one attribute of `id`. The type and user data change only
    /// while the instance is stopped (`IncorrectInstanceState` otherwise), and the type only to
    /// one of the same architecture and instance store, which were fixed at launch.
    pub fn modify_instance_attribute(
        &self,
        who: Account,
        id: &str,
        change: model::InstanceAttributeChange,
    ) -> Result<(), Ec2Error> {
        use model::InstanceAttributeChange as C;
        check_instance_id(id)?;
        let mut st = self.lock();
        let h = own_instance(&st, who, id)?.clone();
        let r = rec(&h);
        let stopped = || {
            if r.state == InstanceState::Stopped {
                Ok(())
            } else {
                Err(Ec2Error::new(
                    ErrorCode::IncorrectInstanceState,
                    format!(
                        "The instance '{id}' is not in the 'stopped' state (it is '{}').",
                        r.state.as_str()
                    ),
                ))
            }
        };
        let bad = |m: String| Ec2Error::new(ErrorCode::InvalidInstanceAttributeValue, m);
        let mut changes = vec![];
        let mut nh = h.clone();
        let i = nh
            .instance
            .as_mut()
            .expect("own_instance returns launched instances");
        match change {
            C::DisableApiTermination(v) => i.disable_api_termination = v,
            C::ShutdownBehavior(b) => {
                i.shutdown_behavior = ShutdownBehavior::parse(&b).ok_or_else(|| {
                    bad(format!(
                        "The value '{b}' for instanceInitiatedShutdownBehavior is invalid (expecting stop or terminate)."
                    ))
                })?;
            }
            C::InstanceType(name) => {
                stopped()?;
                let new = instance_manager::types::lookup(&name)
                    .ok_or_else(|| bad(format!("The instanceType '{name}' is invalid.")))?;
                let old = instance_manager::types::lookup(&r.instance_type);
                if new.architecture.as_str() != r.architecture {
                    return Err(bad(format!(
                        "The instance type '{name}' is {}, the instance's image {}.",
                        new.architecture.as_str(),
                        r.architecture
                    )));
                }
                if old.map(|t| t.instance_store) != Some(new.instance_store) {
                    return Err(bad(format!(
                        "The instance type '{name}' has another instance store than '{}'; instance store disks are made at launch.",
                        r.instance_type
                    )));
                }
                i.instance_type = name;
            }
            C::UserData(data) => {
                stopped()?;
                check_user_data(&data)?;
                i.user_data = Some(data).filter(|u| !u.is_empty());
            }
            C::DeleteOnTermination(devices) => {
                let atts = attachments_in(&st, id);
                for (device, dot) in devices {
                    let (volume_id, _) =
                        atts.iter()
                            .find(|(_, a)| a.device == device)
                            .ok_or_else(|| {
                                bad(format!("No EBS volume is attached to '{id}' as {device}."))
                            })?;
                    let mut v = st
                        .volumes
                        .get(volume_id)
                        .cloned()
                        .ok_or_else(|| Ec2Error::internal("an attached volume vanished"))?;
                    for a in v.attachments.iter_mut().filter(|a| a.instance_id == id) {
                        a.delete_on_termination = dot;
                    }
                    changes.push(Change::PutVolume(v));
                }
            }
        }
        changes.push(Change::PutHost(Box::new(nh)));
        self.commit(&changes)?;
        super::apply(&mut st, changes);
        tracing::info!(instance_id = id, "instance attribute modified");
        Ok(())
    }

    /// GetConsoleOutput: the last 64 KiB the workload wrote, Base64.
    pub fn console_output(&self, who: Account, id: &str) -> Result<ConsoleOutput, Ec2Error> {
        check_instance_id(id)?;
        own_instance(&self.lock(), who, id)?;
        let bytes = workload::console_tail(&self.instance_dir(id), CONSOLE_BYTES)
            .map_err(super::internal("reading the console output"))?;
        Ok(ConsoleOutput {
            instance_id: id.to_string(),
            output: base64::engine::general_purpose::STANDARD.encode(bytes),
            timestamp_ms: now_ms(),
        })
    }

    // -------------------------------------------------------------- restart

    /// At start: adopts workloads that outlived the server and serves their disks again; marks
    /// instances whose workload is gone `stopped`; finishes stops; schedules interrupted
    /// terminations. Returns the workloads to supervise once the control plane is up.
    pub(super) fn recover_instances(&self, st: &mut State) -> Result<Vec<Adopted>, Ec2Error> {
        let mut adopted = Vec::new();
        let ids: Vec<String> = st
            .hosts
            .values()
            .filter(|h| h.instance.is_some())
            .map(|h| h.instance_id.clone())
            .collect();
        for id in ids {
            let h = st.hosts[&id].clone();
            let r = rec(&h);
            let mut alive = r.pid.and_then(|(pid, ticks)| Workload::adopt(pid, ticks));
            // A booted instance's disks were attached through this server's NBD exports, which
            // died with it: its init cannot go on; it is stopped like a lost workload, and its
            // disks are cleaned up once its processes are gone.
            if self.was_booted(&id)
                && let Some(w) = alive.take()
            {
                tracing::warn!(instance_id = %id, "a booted instance cannot be adopted after a restart of the server");
                let _ = workload::signal_group(w.pid(), libc::SIGKILL);
                w.wait_gone(Duration::from_secs(5));
            }
            self.cleanup_booted(&id);
            match (r.state, alive) {
                (InstanceState::Running, Some(w)) => {
                    self.serve_instance(st, &h, true)?;
                    tracing::info!(instance_id = %id, pid = w.pid(), "workload adopted after restart");
                    adopted.push(Adopted {
                        instance_id: id,
                        workload: w,
                    });
                }
                (InstanceState::Running | InstanceState::Pending | InstanceState::Stopping, w) => {
                    if let Some(w) = w {
                        let _ = workload::signal_group(w.pid(), libc::SIGKILL);
                    }
                    let why = if r.state == InstanceState::Stopping {
                        r.state_reason.clone()
                    } else {
                        reason(
                            "Server.InternalError",
                            "Server.InternalError: the workload was not running after a restart of the server",
                        )
                    };
                    for d in &r.instance_store {
                        let _ = Volume::remove(&self.ephemeral_path(&id, d));
                    }
                    self.put_instance(st, &id, |i| {
                        halted(i, InstanceState::Stopped);
                        i.state_reason = why;
                    })?;
                    tracing::warn!(instance_id = %id, "instance marked stopped after restart");
                }
                (InstanceState::ShuttingDown, w) => {
                    if let Some(w) = w {
                        let _ = workload::signal_group(w.pid(), libc::SIGKILL);
                    }
                    // Finished once the control plane is up (it detaches and deletes volumes).
                }
                (InstanceState::Stopped | InstanceState::Terminated, _) => {}
            }
        }
        self.purge_terminated(st);
        Ok(adopted)
    }

    /// After start: supervises adopted workloads and finishes interrupted terminations.
    pub(super) fn resume_instances(&self, adopted: Vec<Adopted>) {
        let mut st = self.lock();
        for a in adopted {
            // Its metadata service comes back where its environment points (the address is
            // the instance's own, the same across restarts).
            if let Some(m) = &self.cfg.metadata
                && let Err(why) = m.serve_instance(&a.instance_id)
            {
                tracing::warn!(instance_id = %a.instance_id, why, "the adopted instance has no metadata service");
            }
            self.supervise(&mut st, &a.instance_id, a.workload);
        }
        let terminating: Vec<String> = st
            .hosts
            .values()
            .filter(|h| {
                h.instance
                    .as_ref()
                    .is_some_and(|i| i.state == InstanceState::ShuttingDown)
            })
            .map(|h| h.instance_id.clone())
            .collect();
        drop(st);
        if let Ok(me) = self.arc() {
            for id in terminating {
                let me = me.clone();
                self.runtime
                    .spawn_blocking(move || me.finish_terminate(&id));
            }
        }
    }
}

/// Whether `device` of `instance_id` is the root device of an instance that is not stopped
/// (callers may detach a root volume only from a stopped instance).
pub(super) fn is_live_root(st: &State, instance_id: &str, device: &str) -> bool {
    st.hosts
        .get(instance_id)
        .and_then(|h| h.instance.as_ref())
        .is_some_and(|i| {
            i.root_device_name == device
                && matches!(
                    i.state,
                    InstanceState::Pending | InstanceState::Running | InstanceState::Stopping
                )
        })
}

/// The attachments of `instance_id`, as (volume id, attachment).
pub(super) fn attachments_in(st: &State, instance_id: &str) -> Vec<(String, AttachmentRecord)> {
    st.volumes
        .values()
        .flat_map(|v: &VolumeRecord| {
            v.attachments
                .iter()
                .filter(|a| a.instance_id == instance_id)
                .map(|a| (v.volume_id.clone(), a.clone()))
        })
        .collect()
}

/// Runs one workload: reports its own exit, carries out stops and restarts.
async fn supervise(
    cp: std::sync::Weak<ControlPlane>,
    id: String,
    mut w: Workload,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) {
    loop {
        tokio::select! {
            exit = w.wait() => {
                let Some(cp) = cp.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || cp.workload_exited(&id, &exit)).await;
                return;
            }
            cmd = rx.recv() => match cmd {
                // The control plane let go (shutdown): the workload runs on, to be adopted.
                None => return,
                Some(Cmd::Stop { grace, done }) => {
                    let exit = w.stop(grace).await;
                    tracing::info!(instance_id = %id, %exit, "workload stopped");
                    let _ = done.send(());
                    return;
                }
                Some(Cmd::Restart { grace, stopped, resume }) => {
                    let exit = w.stop(grace).await;
                    tracing::info!(instance_id = %id, %exit, "workload stopped for a restart");
                    let _ = stopped.send(());
                    if let Some(r) = resume {
                        let _ = r.await;
                    }
                    let Some(cp) = cp.upgrade() else { return };
                    let again = {
                        let id = id.clone();
                        tokio::task::spawn_blocking(move || cp.respawn(&id)).await
                    };
                    match again {
                        Ok(Some(next)) => w = next,
                        _ => return,
                    }
                }
            }
        }
    }
}
