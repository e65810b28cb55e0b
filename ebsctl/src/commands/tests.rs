//! `commands::run` end to end against an in-process mock `VolumeService` (not the real server).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser as _;
use proto::ebs::v1::volume_service_server::{VolumeService, VolumeServiceServer};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::*;

/// Five volumes `vol-0`..`vol-4`, served two per page unless asked otherwise. Metrics: see
/// [`metrics_reading`].
#[derive(Debug, Default)]
struct Mock {
    describe_calls: AtomicUsize,
    /// Every GetCostAndUsage call, in order.
    cost_requests: Mutex<Vec<pb::GetCostAndUsageRequest>>,
    /// The `volume_ids` of every GetVolumeMetrics call, in order.
    metrics_requests: Mutex<Vec<Vec<String>>>,
    /// Every reservation call, in order.
    resv_requests: Mutex<Vec<ResvCall>>,
    /// Every snapshot call (and CreateVolume), in order.
    snapshot_requests: Mutex<Vec<SnapshotCall>>,
    /// DescribeSnapshots calls that asked for `snap-pending`: see [`Mock::pending_snapshot`].
    pending_polls: AtomicUsize,
    /// Every fast snapshot restore call, in order.
    fsr_requests: Mutex<Vec<FsrCall>>,
    /// Every DescribeInstanceTypes call, in order.
    instance_type_requests: Mutex<Vec<pb::DescribeInstanceTypesRequest>>,
    /// The registered AMIs by ID: see [`Mock::register`].
    images: Mutex<BTreeMap<String, pb::Image>>,
    /// AMIs registered so far, deregistered ones included: numbers the next ID.
    images_registered: AtomicUsize,
    /// Every image call, in order.
    image_requests: Mutex<Vec<ImageCall>>,
    /// AMIs made by CreateImage that no DescribeImages has seen yet: see [`Mock::create_image`].
    unseen_images: Mutex<BTreeSet<String>>,
    /// The launched instances by ID, each with its reservation's ID: see [`Mock::run`].
    instances: Mutex<BTreeMap<String, (String, pb::Instance)>>,
    /// Instances launched so far: numbers the next IDs.
    instances_launched: AtomicUsize,
    /// Reservations made so far: numbers the next ID.
    reservations_made: AtomicUsize,
    /// Every instance call (and CreateImage), in order.
    instance_requests: Mutex<Vec<InstanceCall>>,
}

/// An instance request the mock received.
#[derive(Debug, Clone, PartialEq)]
enum InstanceCall {
    Run(pb::RunInstancesRequest),
    Describe(pb::DescribeInstancesRequest),
    Start(pb::InstanceIdsRequest),
    Stop(pb::StopInstancesRequest),
    Reboot(pb::InstanceIdsRequest),
    Terminate(pb::InstanceIdsRequest),
    Console(pb::GetConsoleOutputRequest),
    CreateImage(pb::CreateImageRequest),
}

/// An image request the mock received.
#[derive(Debug, Clone, PartialEq)]
enum ImageCall {
    Register(pb::RegisterImageRequest),
    Describe(pb::DescribeImagesRequest),
    Deregister(pb::DeregisterImageRequest),
}

/// A fast snapshot restore request the mock received.
#[derive(Debug, Clone, PartialEq)]
enum FsrCall {
    Enable(pb::EnableFastSnapshotRestoresRequest),
    Disable(pb::DisableFastSnapshotRestoresRequest),
    Describe(pb::DescribeFastSnapshotRestoresRequest),
}

/// A snapshot request (or a CreateVolume, which may restore one) the mock received.
#[derive(Debug, Clone, PartialEq)]
enum SnapshotCall {
    CreateVolume(pb::CreateVolumeRequest),
    Create(pb::CreateSnapshotRequest),
    Describe(pb::DescribeSnapshotsRequest),
    Delete(pb::DeleteSnapshotRequest),
    Copy(pb::CopySnapshotRequest),
}

/// A reservation request the mock received.
#[derive(Debug, Clone, PartialEq)]
enum ResvCall {
    Register(pb::ReservationRegisterRequest),
    Acquire(pb::ReservationAcquireRequest),
    Release(pb::ReservationReleaseRequest),
    Report(pb::ReservationReportRequest),
}

impl Mock {
    fn record(&self, call: ResvCall) {
        self.resv_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    fn resv_requests(&self) -> Vec<ResvCall> {
        self.resv_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn record_snapshot_call(&self, call: SnapshotCall) {
        self.snapshot_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    fn snapshot_requests(&self) -> Vec<SnapshotCall> {
        self.snapshot_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn record_fsr_call(&self, call: FsrCall) {
        self.fsr_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    fn fsr_requests(&self) -> Vec<FsrCall> {
        self.fsr_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn instance_type_requests(&self) -> Vec<pb::DescribeInstanceTypesRequest> {
        self.instance_type_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn record_image_call(&self, call: ImageCall) {
        self.image_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    fn image_requests(&self) -> Vec<ImageCall> {
        self.image_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn images(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, pb::Image>> {
        self.images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// RegisterImage as the server checks it: the name (EC2's rule, unique), the root device (an
    /// EBS mapping from a snapshot), each mapping (one of Ebs, VirtualName, NoDevice; `snap-gone`
    /// does not exist), the architecture. IDs are `ami-` and the registration's number in 17 hex
    /// digits, so they sort in registration order.
    fn register(&self, r: pb::RegisterImageRequest) -> Result<pb::Image, Status> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c);
        if r.name.is_empty() {
            return Err(ec2_error(
                Status::invalid_argument("The request must contain the parameter Name"),
                "MissingParameter",
            ));
        }
        if !(3..=128).contains(&r.name.chars().count()) || !r.name.chars().all(ok_char) {
            return Err(ec2_error(
                Status::invalid_argument(format!("Invalid AMI name: {}", r.name)),
                "InvalidAMIName.Malformed",
            ));
        }
        let architecture = r.architecture.unwrap_or_else(|| "x86_64".into());
        if !matches!(architecture.as_str(), "x86_64" | "arm64" | "i386") {
            return Err(ec2_error(
                Status::invalid_argument(format!(
                    "Invalid architecture {architecture} (expecting x86_64, arm64 or i386)."
                )),
                "InvalidParameterValue",
            ));
        }
        let bad_mapping = |message: String| {
            ec2_error(
                Status::invalid_argument(message),
                "InvalidBlockDeviceMapping",
            )
        };
        let mut mappings = Vec::new();
        for m in r.block_device_mappings {
            let kinds = usize::from(m.ebs.is_some())
                + usize::from(m.virtual_name.is_some())
                + usize::from(m.no_device.is_some());
            if kinds != 1 {
                return Err(bad_mapping(format!(
                    "The mapping of {} must have exactly one of Ebs, VirtualName and NoDevice.",
                    m.device_name
                )));
            }
            let snapshot = m.ebs.as_ref().and_then(|e| e.snapshot_id.as_deref());
            if snapshot == Some("snap-gone") {
                return Err(no_snapshot("snap-gone"));
            }
            mappings.push(pb::BlockDeviceMapping {
                ebs: m.ebs.map(|e| pb::EbsBlockDevice {
                    delete_on_termination: Some(e.delete_on_termination.unwrap_or(true)),
                    encrypted: Some(false),
                    ..e
                }),
                ..m
            });
        }
        let root_from_a_snapshot = mappings.iter().any(|m| {
            m.device_name == r.root_device_name
                && m.ebs.as_ref().is_some_and(|e| e.snapshot_id.is_some())
        });
        if !root_from_a_snapshot {
            return Err(ec2_error(
                Status::invalid_argument(format!(
                    "The root device {} must be mapped to an EBS volume from a snapshot.",
                    r.root_device_name
                )),
                "InvalidParameterValue",
            ));
        }
        let mut images = self.images();
        if images.values().any(|i| i.name == r.name) {
            return Err(ec2_error(
                Status::already_exists(format!("AMI name {} is already in use by an AMI", r.name)),
                "InvalidAMIName.Duplicate",
            ));
        }
        let n = self.images_registered.fetch_add(1, Ordering::SeqCst) + 1;
        let image = pb::Image {
            image_id: format!("ami-{n:017x}"),
            name: r.name,
            description: r.description.unwrap_or_default(),
            state: "available".into(),
            creation_date: "2024-05-01T12:00:07.000Z".into(),
            root_device_name: r.root_device_name,
            root_device_type: "ebs".into(),
            architecture,
            virtualization_type: r.virtualization_type.unwrap_or_else(|| "hvm".into()),
            block_device_mappings: mappings,
            owner_id: IMAGE_OWNER.into(),
            public: false,
            image_type: "machine".into(),
            tags: spec_tags(r.tag_specifications),
        };
        images.insert(image.image_id.clone(), image.clone());
        Ok(image)
    }

    fn record_instance_call(&self, call: InstanceCall) {
        self.instance_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }

    fn instance_requests(&self) -> Vec<InstanceCall> {
        self.instance_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn instances(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, pb::Instance)>> {
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// RunInstances: MaxCount `pending` instances of the AMI (any `ami-` ID; `ami-gone` does not
    /// exist) in one reservation, with an EBS root on /dev/xvda and the instance's tags. IDs are
    /// `i-` / `r-` and their number in 17 hex digits, so they sort in launch order.
    fn run(&self, r: pb::RunInstancesRequest) -> Result<pb::Reservation, Status> {
        check_image_id(&r.image_id)?;
        if r.image_id == "ami-gone" {
            return Err(no_image(&r.image_id));
        }
        if r.min_count < 1 || r.min_count > r.max_count {
            return Err(ec2_error(
                Status::invalid_argument(format!(
                    "MinCount {} and MaxCount {} are invalid",
                    r.min_count, r.max_count
                )),
                "InvalidParameterValue",
            ));
        }
        let reservation_id = format!(
            "r-{:017x}",
            self.reservations_made.fetch_add(1, Ordering::SeqCst) + 1
        );
        let tags: Vec<pb::Tag> = r
            .tag_specifications
            .into_iter()
            .filter(|s| s.resource_type == "instance")
            .flat_map(|s| s.tags)
            .collect();
        let mut instances = self.instances();
        let mut launched = Vec::new();
        for index in 0..r.max_count {
            let n = self.instances_launched.fetch_add(1, Ordering::SeqCst) + 1;
            let instance_id = format!("i-{n:017x}");
            let instance = pb::Instance {
                instance_id: instance_id.clone(),
                image_id: r.image_id.clone(),
                instance_type: r.instance_type.clone().unwrap_or_else(|| "m5.large".into()),
                state: Some(instance_state("pending")),
                placement: Some(pb::Placement {
                    availability_zone: r
                        .placement
                        .as_ref()
                        .map(|p| p.availability_zone.clone())
                        .filter(|az| !az.is_empty())
                        .unwrap_or_else(|| "us-east-1a".into()),
                }),
                block_device_mappings: vec![pb::InstanceBlockDeviceMapping {
                    device_name: "/dev/xvda".into(),
                    ebs: Some(pb::EbsInstanceBlockDevice {
                        volume_id: format!("vol-{n:017x}"),
                        status: "attaching".into(),
                        attach_time: "2024-05-01T12:00:09.000Z".into(),
                        delete_on_termination: true,
                    }),
                }],
                state_reason: Some(pb::StateReason {
                    code: "pending".into(),
                    message: "pending".into(),
                }),
                tags: tags.clone(),
                ami_launch_index: index,
                instance_initiated_shutdown_behavior: r
                    .instance_initiated_shutdown_behavior
                    .clone()
                    .unwrap_or_else(|| "stop".into()),
                instance_store_devices: vec![],
                workload_pid: None,
                devices_file: format!("/data/instances/{instance_id}/devices.json"),
                device_uris: Default::default(),
                ..shapes::tests::instance()
            };
            instances.insert(instance_id, (reservation_id.clone(), instance.clone()));
            launched.push(instance);
        }
        Ok(pb::Reservation {
            reservation_id,
            owner_id: IMAGE_OWNER.into(),
            instances: launched,
        })
    }

    /// Moves every instance one step through a transition, as time would: pending → running
    /// (with a workload and its devices), stopping → stopped, shutting-down → terminated.
    fn advance_instances(&self) {
        for (_, instance) in self.instances().values_mut() {
            let name = instance.state.clone().unwrap_or_default().name;
            let next = match name.as_str() {
                "pending" => "running",
                "stopping" => "stopped",
                "shutting-down" => "terminated",
                _ => continue,
            };
            instance.state = Some(instance_state(next));
            instance.state_reason = None;
            let running = next == "running";
            instance.workload_pid = running.then_some(4242);
            instance.device_uris = if running {
                [(
                    "/dev/xvda".to_owned(),
                    "nbd://127.0.0.1:10809/tok".to_owned(),
                )]
                .into_iter()
                .collect()
            } else {
                Default::default()
            };
            for m in &mut instance.block_device_mappings {
                if let Some(ebs) = m.ebs.as_mut() {
                    ebs.status = if next == "terminated" {
                        "detached"
                    } else {
                        "attached"
                    }
                    .into();
                }
            }
        }
    }

    /// Moves each instance of `ids` to `to` unless it is in one of `stays` (or already there):
    /// its change, as Start/Stop/TerminateInstances answer. An unknown ID fails the call first;
    /// a terminated instance can only be terminated again.
    fn change(
        &self,
        ids: &[String],
        to: &str,
        stays: &[&str],
    ) -> Result<pb::InstanceStateChanges, Status> {
        let mut instances = self.instances();
        if let Some(id) = ids.iter().find(|id| !instances.contains_key(*id)) {
            return Err(no_instance(id));
        }
        let mut changes = Vec::new();
        for id in ids {
            let Some((_, instance)) = instances.get_mut(id) else {
                continue;
            };
            let previous = instance.state.clone().unwrap_or_default();
            if previous.name == "terminated" && to != "shutting-down" {
                return Err(ec2_error(
                    Status::failed_precondition(format!(
                        "The instance '{id}' is not in a state from which it can be started or stopped."
                    )),
                    "IncorrectInstanceState",
                ));
            }
            if !stays.contains(&previous.name.as_str()) {
                instance.state = Some(instance_state(to));
            }
            changes.push(pb::InstanceStateChange {
                instance_id: id.clone(),
                current_state: instance.state.clone(),
                previous_state: Some(previous),
            });
        }
        Ok(pb::InstanceStateChanges { instances: changes })
    }

    /// `snap-pending` as the `n`th (from 0) poll sees it: `pending` at 0% and 45%, then
    /// `completed`.
    fn pending_snapshot(&self) -> pb::Snapshot {
        match self.pending_polls.fetch_add(1, Ordering::SeqCst) {
            0 => snapshot("snap-pending", "pending", "0%"),
            1 => snapshot("snap-pending", "pending", "45%"),
            _ => pb::Snapshot {
                completion_time: "2024-05-01T12:00:05.000Z".into(),
                ..snapshot("snap-pending", "completed", "100%")
            },
        }
    }
}

/// An instance state by name, with EC2's code.
fn instance_state(name: &str) -> pb::InstanceState {
    let code = match name {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        _ => 80,
    };
    pb::InstanceState {
        code,
        name: name.to_owned(),
    }
}

fn no_instance(instance_id: &str) -> Status {
    ec2_error(
        Status::not_found(format!("The instance ID '{instance_id}' does not exist")),
        "InvalidInstanceID.NotFound",
    )
}

fn no_snapshot(snapshot_id: &str) -> Status {
    ec2_error(
        Status::not_found(format!("The snapshot '{snapshot_id}' does not exist.")),
        "InvalidSnapshot.NotFound",
    )
}

/// Snapshot `id` of [`shapes::tests::snapshot`]'s volume, in `state`; completion time only when
/// completed.
fn snapshot(id: &str, state: &str, progress: &str) -> pb::Snapshot {
    let done = shapes::tests::snapshot();
    pb::Snapshot {
        snapshot_id: id.to_owned(),
        state: state.to_owned(),
        progress: progress.to_owned(),
        completion_time: if state == "completed" {
            done.completion_time.clone()
        } else {
            String::new()
        },
        ..done
    }
}

/// The tags of a request's `tag_specifications`, whatever their resource type.
fn spec_tags(specs: Vec<pb::TagSpecification>) -> Vec<pb::Tag> {
    specs.into_iter().flat_map(|s| s.tags).collect()
}

/// The zones the mock serves.
const ZONES: [&str; 2] = ["us-east-1a", "us-east-1b"];

/// `snapshot_id`'s fast snapshot restore in `availability_zone`, in `state`, with the times of
/// the states it went through (those of [`shapes::tests::fast_snapshot_restore`]).
fn fsr(snapshot_id: &str, availability_zone: &str, state: &str) -> pb::FastSnapshotRestore {
    const STATES: [&str; 5] = ["enabling", "optimizing", "enabled", "disabling", "disabled"];
    let at = STATES.iter().position(|s| *s == state).unwrap_or(0);
    let time = |step: usize, time: &str| {
        if at >= step {
            time.to_owned()
        } else {
            String::new()
        }
    };
    let enabled = shapes::tests::fast_snapshot_restore();
    pb::FastSnapshotRestore {
        snapshot_id: snapshot_id.to_owned(),
        availability_zone: availability_zone.to_owned(),
        state: state.to_owned(),
        state_transition_reason: if at >= 3 {
            "Client.UserInitiated - Lifecycle state transition".to_owned()
        } else {
            enabled.state_transition_reason.clone()
        },
        optimizing_time: time(1, &enabled.optimizing_time),
        enabled_time: time(2, &enabled.enabled_time),
        disabling_time: time(3, "2024-05-01T12:02:00.000Z"),
        disabled_time: time(4, "2024-05-01T12:02:01.000Z"),
        ..enabled
    }
}

/// Enables (`enabling`) or disables (`disabling`) every snapshot in every zone, zone by zone (so
/// the errors of different snapshots interleave). A zone the mock does not serve, `snap-gone`,
/// and (to enable) `snap-pending` fail.
fn fsr_pairs(
    zones: &[String],
    snapshots: &[String],
    enable: bool,
) -> pb::FastSnapshotRestoresResult {
    let mut result = pb::FastSnapshotRestoresResult::default();
    for az in zones {
        for snap in snapshots {
            let fail = |code: &str, message: String| pb::FastSnapshotRestoreError {
                snapshot_id: snap.clone(),
                availability_zone: az.clone(),
                code: code.to_owned(),
                message,
            };
            let failure = if !ZONES.contains(&az.as_str()) {
                Some(fail(
                    "InvalidParameterValue",
                    format!("Invalid availability zone: [{az}]"),
                ))
            } else if snap == "snap-gone" {
                Some(fail(
                    "InvalidSnapshot.NotFound",
                    format!("The snapshot '{snap}' does not exist."),
                ))
            } else if enable && snap == "snap-pending" {
                Some(fail(
                    "IncorrectState",
                    format!("Snapshot {snap} is not completed."),
                ))
            } else {
                None
            };
            match failure {
                Some(e) => result.unsuccessful.push(e),
                None if enable => result.successful.push(fsr(snap, az, "enabling")),
                None => result.successful.push(fsr(snap, az, "disabling")),
            }
        }
    }
    result
}

/// The instance types the mock knows, in its order: EBS-only, instance store, GPU, bare metal.
fn instance_types() -> Vec<pb::InstanceTypeInfo> {
    let m5d = shapes::tests::m5d_large();
    let named = |name: &str, t: pb::InstanceTypeInfo| pb::InstanceTypeInfo {
        instance_type: name.to_owned(),
        ..t
    };
    vec![
        named(
            "m5.large",
            pb::InstanceTypeInfo {
                instance_storage_supported: false,
                instance_storage_info: None,
                ..m5d.clone()
            },
        ),
        m5d.clone(),
        named(
            "m5d.metal",
            pb::InstanceTypeInfo {
                hypervisor: String::new(),
                ..m5d.clone()
            },
        ),
        shapes::tests::p3_8xlarge(),
        named(
            "t3.micro",
            pb::InstanceTypeInfo {
                burstable_performance_supported: true,
                instance_storage_supported: false,
                instance_storage_info: None,
                ..m5d
            },
        ),
    ]
}

/// Whether `name` matches one of `patterns`, where a final `*` matches any rest.
fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

/// The account that owns every AMI of the mock, as the server's.
const IMAGE_OWNER: &str = "000000000000";

fn no_image(image_id: &str) -> Status {
    ec2_error(
        Status::not_found(format!("The image id '[{image_id}]' does not exist")),
        "InvalidAMIID.NotFound",
    )
}

fn check_image_id(image_id: &str) -> Result<(), Status> {
    if image_id.starts_with("ami-") {
        return Ok(());
    }
    Err(ec2_error(
        Status::invalid_argument(format!(
            "Invalid id: \"{image_id}\" (expecting \"ami-...\")"
        )),
        "InvalidAMIID.Malformed",
    ))
}

/// Whether `image` passes `filter` (image-id, name, state, architecture, tag:KEY).
fn image_matches(image: &pb::Image, filter: &pb::Filter) -> bool {
    let field = match filter.name.as_str() {
        "image-id" => Some(image.image_id.as_str()),
        "name" => Some(image.name.as_str()),
        "state" => Some(image.state.as_str()),
        "architecture" => Some(image.architecture.as_str()),
        other => other.strip_prefix("tag:").and_then(|key| {
            image
                .tags
                .iter()
                .find(|t| t.key == key)
                .map(|t| t.value.as_str())
        }),
    };
    field.is_some_and(|v| matches_any(&filter.values, v))
}

fn no_volume(volume_id: &str) -> Status {
    ec2_error(
        Status::not_found(format!("The volume '{volume_id}' does not exist.")),
        "InvalidVolume.NotFound",
    )
}

/// The report of a volume where `instance_id` alone is registered, with `key`.
fn one_registrant(
    volume_id: String,
    instance_id: String,
    key: u64,
    holder: bool,
) -> pb::ReservationStatus {
    pb::ReservationStatus {
        volume_id,
        generation: 1,
        r#type: pb::ReservationType::Unspecified.into(),
        holder_instance_id: String::new(),
        registrants: vec![pb::Registrant {
            instance_id,
            key,
            holder,
        }],
    }
}

fn ec2_error(status: Status, code: &'static str) -> Status {
    let mut status = status;
    status
        .metadata_mut()
        .insert(proto::EC2_ERROR_CODE_KEY, MetadataValue::from_static(code));
    status
}

fn volume(id: &str, state: &str) -> pb::Volume {
    pb::Volume {
        volume_id: id.to_owned(),
        state: state.to_owned(),
        ..shapes::tests::volume()
    }
}

/// The `n`th (from 0) GetVolumeMetrics reading of the mock's open volumes:
/// * `vol-a` (io2, 4000 IOPS): 100 reads of 4 KiB and 50 writes of 64 KiB per reading, 2 ms each
///   on average, 3 queued, over its IOPS limit;
/// * `vol-b` (gp2, burst 97.5%): idle, open for readings 0 and 1 only;
/// * `vol-c` (gp2): opened at reading 2, 10 reads per reading.
fn metrics_reading(n: u64) -> Vec<pb::VolumeMetrics> {
    let mut open = vec![pb::VolumeMetrics {
        volume_id: "vol-a".into(),
        volume_read_ops: 100 * n,
        volume_write_ops: 50 * n,
        volume_read_bytes: 100 * n * 4096,
        volume_write_bytes: 50 * n * 65536,
        volume_total_read_time: 0.1 * n as f64,
        volume_total_write_time: 0.2 * n as f64,
        volume_queue_length: 3,
        volume_throughput_percentage: Some(100.0),
        volume_consumed_read_write_ops: 150 * n,
        volume_iops_exceeded_check: 1,
        provisioned_iops: 4000,
        ..pb::VolumeMetrics::default()
    }];
    let gp2 = |id: &str, ops: u64| pb::VolumeMetrics {
        volume_id: id.to_owned(),
        volume_read_ops: ops,
        volume_read_bytes: ops * 4096,
        volume_total_read_time: 0.001 * ops as f64,
        volume_consumed_read_write_ops: ops,
        burst_balance: Some(97.5),
        provisioned_iops: 100,
        provisioned_throughput_bytes: 128 * 1_048_576,
        ..pb::VolumeMetrics::default()
    };
    if n < 2 {
        open.push(gp2("vol-b", 7));
    } else {
        open.push(gp2("vol-c", 10 * (n - 1)));
    }
    open
}

fn modification(volume_id: &str) -> pb::VolumeModification {
    pb::VolumeModification {
        volume_id: volume_id.to_owned(),
        ..shapes::tests::modification()
    }
}

#[tonic::async_trait]
impl VolumeService for Mock {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        self.record_snapshot_call(SnapshotCall::CreateVolume(r.clone()));
        if r.snapshot_id.as_deref() == Some("snap-gone") {
            return Err(no_snapshot("snap-gone"));
        }
        // A restored volume starts with none of its blocks local, unless `snap-fast` has fast
        // snapshot restore.
        let fast_restored = r.snapshot_id.as_deref() == Some("snap-fast");
        let initialization_progress = r
            .snapshot_id
            .as_ref()
            .map(|_| if fast_restored { 100 } else { 0 });
        let tags = spec_tags(r.tag_specifications);
        Ok(Response::new(pb::Volume {
            volume_id: "vol-new".into(),
            snapshot_id: r.snapshot_id.unwrap_or_default(),
            initialization_progress,
            fast_restored,
            size: r.size.unwrap_or(0),
            availability_zone: r.availability_zone,
            state: "available".into(),
            volume_type: r.volume_type.unwrap_or_else(|| "gp2".into()),
            iops: r.iops,
            throughput: r.throughput,
            encrypted: r.encrypted.unwrap_or(false),
            multi_attach_enabled: r.multi_attach_enabled.unwrap_or(false),
            tags,
            attachments: vec![],
            ..shapes::tests::volume()
        }))
    }

    async fn describe_volumes(
        &self,
        request: Request<pb::DescribeVolumesRequest>,
    ) -> Result<Response<pb::DescribeVolumesResponse>, Status> {
        self.describe_calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        let all: Vec<pb::Volume> = match r.volume_ids.first().map(String::as_str) {
            Some("vol-gone") => {
                return Err(ec2_error(
                    Status::not_found("The volume 'vol-gone' does not exist."),
                    "InvalidVolume.NotFound",
                ));
            }
            Some("vol-creating") => vec![volume("vol-creating", "creating")],
            Some("vol-error") => vec![volume("vol-error", "error")],
            _ => (0..5)
                .map(|i| volume(&format!("vol-{i}"), "available"))
                .collect(),
        };
        let start: usize = r.next_token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let size = usize::try_from(r.max_results.unwrap_or(2)).unwrap_or(2);
        let end = (start + size).min(all.len());
        Ok(Response::new(pb::DescribeVolumesResponse {
            volumes: all[start..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        }))
    }

    async fn delete_volume(
        &self,
        _: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn attach_volume(
        &self,
        _: Request<pb::AttachVolumeRequest>,
    ) -> Result<Response<pb::VolumeAttachment>, Status> {
        Err(ec2_error(
            Status::failed_precondition("vol-1 is already attached to an instance"),
            "VolumeInUse",
        ))
    }

    async fn detach_volume(
        &self,
        _: Request<pb::DetachVolumeRequest>,
    ) -> Result<Response<pb::VolumeAttachment>, Status> {
        Ok(Response::new(shapes::tests::attachment()))
    }

    async fn create_tags(
        &self,
        _: Request<pb::CreateTagsRequest>,
    ) -> Result<Response<pb::CreateTagsResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn describe_volume_attribute(
        &self,
        _: Request<pb::DescribeVolumeAttributeRequest>,
    ) -> Result<Response<pb::DescribeVolumeAttributeResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn modify_volume_attribute(
        &self,
        _: Request<pb::ModifyVolumeAttributeRequest>,
    ) -> Result<Response<pb::ModifyVolumeAttributeResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn enable_volume_io(
        &self,
        _: Request<pb::EnableVolumeIoRequest>,
    ) -> Result<Response<pb::EnableVolumeIoResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn delete_tags(
        &self,
        _: Request<pb::DeleteTagsRequest>,
    ) -> Result<Response<pb::DeleteTagsResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn register_host(
        &self,
        _: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn deregister_host(
        &self,
        _: Request<pb::DeregisterHostRequest>,
    ) -> Result<Response<pb::DeregisterHostResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn describe_hosts(
        &self,
        _: Request<pb::DescribeHostsRequest>,
    ) -> Result<Response<pb::DescribeHostsResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    /// Modifies the gp3 8 GiB volume of [`shapes::tests::volume`]; `vol-gone` does not exist.
    async fn modify_volume(
        &self,
        request: Request<pb::ModifyVolumeRequest>,
    ) -> Result<Response<pb::VolumeModification>, Status> {
        let r = request.into_inner();
        if r.volume_id == "vol-gone" {
            return Err(ec2_error(
                Status::not_found("The volume 'vol-gone' does not exist."),
                "InvalidVolume.NotFound",
            ));
        }
        let original = shapes::tests::volume();
        Ok(Response::new(pb::VolumeModification {
            volume_id: r.volume_id,
            modification_state: "modifying".into(),
            status_message: String::new(),
            target_size: r.size.unwrap_or(original.size),
            target_iops: r.iops.or(original.iops),
            target_volume_type: r
                .volume_type
                .unwrap_or_else(|| original.volume_type.clone()),
            target_throughput: r.throughput.or(original.throughput),
            target_multi_attach_enabled: r
                .multi_attach_enabled
                .unwrap_or(original.multi_attach_enabled),
            original_size: original.size,
            original_iops: original.iops,
            original_volume_type: original.volume_type,
            original_throughput: original.throughput,
            original_multi_attach_enabled: original.multi_attach_enabled,
            progress: 0,
            start_time: "2024-05-01T12:00:02.000Z".into(),
            end_time: String::new(),
        }))
    }

    /// `vol-1` is being modified, `vol-2`'s modification completed; honours `volume_ids` and the
    /// `modification-state` filter.
    async fn describe_volumes_modifications(
        &self,
        request: Request<pb::DescribeVolumesModificationsRequest>,
    ) -> Result<Response<pb::DescribeVolumesModificationsResponse>, Status> {
        let r = request.into_inner();
        let all = [
            modification("vol-1"),
            pb::VolumeModification {
                modification_state: "completed".into(),
                status_message: "done".into(),
                progress: 100,
                end_time: "2024-05-01T12:00:09.000Z".into(),
                ..modification("vol-2")
            },
        ];
        let states: Vec<&str> = r
            .filters
            .iter()
            .filter(|f| f.name == "modification-state")
            .flat_map(|f| f.values.iter().map(String::as_str))
            .collect();
        let volumes_modifications = all
            .into_iter()
            .filter(|m| r.volume_ids.is_empty() || r.volume_ids.contains(&m.volume_id))
            .filter(|m| states.is_empty() || states.contains(&m.modification_state.as_str()))
            .collect();
        Ok(Response::new(pb::DescribeVolumesModificationsResponse {
            volumes_modifications,
        }))
    }

    /// Serves [`metrics_reading`] `n` on the `n`th call; an ID that is not open is not found.
    async fn describe_volume_status(
        &self,
        request: Request<pb::DescribeVolumeStatusRequest>,
    ) -> Result<Response<pb::DescribeVolumeStatusResponse>, Status> {
        let ids = request.into_inner().volume_ids;
        Ok(Response::new(pb::DescribeVolumeStatusResponse {
            volume_statuses: ids
                .into_iter()
                .map(|volume_id| pb::VolumeStatusItem {
                    volume_id,
                    availability_zone: "us-east-1a".into(),
                    volume_status: Some(pb::VolumeStatusInfo {
                        status: "impaired".into(),
                        details: vec![pb::VolumeStatusDetail {
                            name: "io-enabled".into(),
                            status: "failed".into(),
                        }],
                    }),
                })
                .collect(),
        }))
    }

    async fn get_volume_metrics(
        &self,
        request: Request<pb::GetVolumeMetricsRequest>,
    ) -> Result<Response<pb::GetVolumeMetricsResponse>, Status> {
        let ids = request.into_inner().volume_ids;
        let n = {
            let mut requests = self
                .metrics_requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            requests.push(ids.clone());
            requests.len() as u64 - 1
        };
        let open = metrics_reading(n);
        if let Some(unknown) = ids
            .iter()
            .find(|id| !open.iter().any(|m| &m.volume_id == *id))
        {
            return Err(ec2_error(
                Status::not_found(format!("The volume '{unknown}' does not exist.")),
                "InvalidVolume.NotFound",
            ));
        }
        let metrics = open
            .into_iter()
            .filter(|m| ids.is_empty() || ids.contains(&m.volume_id))
            .collect();
        Ok(Response::new(pb::GetVolumeMetricsResponse { metrics }))
    }

    async fn read_blocks(
        &self,
        _: Request<pb::ReadBlocksRequest>,
    ) -> Result<Response<pb::ReadBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn write_blocks(
        &self,
        _: Request<tonic::Streaming<pb::WriteBlocksRequest>>,
    ) -> Result<Response<pb::WriteBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn flush_blocks(
        &self,
        _: Request<pb::FlushBlocksRequest>,
    ) -> Result<Response<pb::FlushBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn trim_blocks(
        &self,
        _: Request<pb::TrimBlocksRequest>,
    ) -> Result<Response<pb::TrimBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn write_zero_blocks(
        &self,
        _: Request<pb::WriteZeroBlocksRequest>,
    ) -> Result<Response<pb::WriteZeroBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    /// Echoes the registration: the host alone, with its (new) key; `vol-gone` does not exist.
    async fn reservation_register(
        &self,
        request: Request<pb::ReservationRegisterRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let r = request.into_inner();
        self.record(ResvCall::Register(r.clone()));
        if r.volume_id == "vol-gone" {
            return Err(no_volume(&r.volume_id));
        }
        let mut report = match r.action.as_str() {
            "register" => one_registrant(r.volume_id, r.instance_id, r.key, false),
            "replace" => one_registrant(r.volume_id, r.instance_id, r.new_key, false),
            "unregister" => pb::ReservationStatus {
                registrants: vec![],
                ..one_registrant(r.volume_id, r.instance_id, 0, false)
            },
            other => {
                return Err(Status::invalid_argument(format!("action {other}")));
            }
        };
        report.generation = 2;
        Ok(Response::new(report))
    }

    /// Echoes the acquisition: the host holds the reservation of the type asked for; key `0xbad`
    /// conflicts.
    async fn reservation_acquire(
        &self,
        request: Request<pb::ReservationAcquireRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let r = request.into_inner();
        self.record(ResvCall::Acquire(r.clone()));
        if r.key == 0xbad {
            return Err(ec2_error(
                Status::failed_precondition("i-1 is not registered with key 2989"),
                "ReservationConflict",
            ));
        }
        Ok(Response::new(pb::ReservationStatus {
            r#type: r.r#type,
            holder_instance_id: r.instance_id.clone(),
            ..one_registrant(r.volume_id, r.instance_id, r.key, true)
        }))
    }

    /// Echoes the release: no reservation; the host stays registered unless `clear`.
    async fn reservation_release(
        &self,
        request: Request<pb::ReservationReleaseRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let r = request.into_inner();
        self.record(ResvCall::Release(r.clone()));
        let mut report = one_registrant(r.volume_id, r.instance_id, r.key, false);
        if r.clear {
            report.registrants.clear();
        }
        Ok(Response::new(report))
    }

    /// [`shapes::tests::reservation_report`] of the volume; `vol-gone` does not exist.
    async fn reservation_report(
        &self,
        request: Request<pb::ReservationReportRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let r = request.into_inner();
        self.record(ResvCall::Report(r.clone()));
        if r.volume_id == "vol-gone" {
            return Err(no_volume(&r.volume_id));
        }
        Ok(Response::new(pb::ReservationStatus {
            volume_id: r.volume_id,
            ..shapes::tests::reservation_report()
        }))
    }

    /// A `pending` snapshot `snap-new` echoing the request; `vol-gone` does not exist.
    async fn create_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::Snapshot>, Status> {
        let r = request.into_inner();
        self.record_snapshot_call(SnapshotCall::Create(r.clone()));
        if r.volume_id == "vol-gone" {
            return Err(no_volume(&r.volume_id));
        }
        Ok(Response::new(pb::Snapshot {
            volume_id: r.volume_id,
            description: r.description.unwrap_or_default(),
            tags: spec_tags(r.tag_specifications),
            full_snapshot_size_in_bytes: 0,
            block_count: 0,
            blocks_written: 0,
            ..snapshot("snap-new", "pending", "0%")
        }))
    }

    /// Without IDs, five completed snapshots `snap-0`..`snap-4`, two per page unless asked
    /// otherwise. By ID: `snap-gone` does not exist, `snap-error` failed, `snap-pending` completes
    /// at its third poll, any other ID is completed.
    async fn describe_snapshots(
        &self,
        request: Request<pb::DescribeSnapshotsRequest>,
    ) -> Result<Response<pb::DescribeSnapshotsResponse>, Status> {
        let r = request.into_inner();
        self.record_snapshot_call(SnapshotCall::Describe(r.clone()));
        let all: Vec<pb::Snapshot> = if r.snapshot_ids.is_empty() {
            (0..5)
                .map(|i| snapshot(&format!("snap-{i}"), "completed", "100%"))
                .collect()
        } else {
            r.snapshot_ids
                .iter()
                .map(|id| match id.as_str() {
                    "snap-gone" => Err(no_snapshot(id)),
                    "snap-error" => Ok(pb::Snapshot {
                        state_message: "The volume's data could not be read.".into(),
                        ..snapshot(id, "error", "40%")
                    }),
                    "snap-pending" => Ok(self.pending_snapshot()),
                    _ => Ok(snapshot(id, "completed", "100%")),
                })
                .collect::<Result<_, Status>>()?
        };
        let start: usize = r.next_token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let size = usize::try_from(r.max_results.unwrap_or(2)).unwrap_or(2);
        let end = (start + size).min(all.len());
        Ok(Response::new(pb::DescribeSnapshotsResponse {
            snapshots: all[start..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        }))
    }

    /// `snap-gone` does not exist.
    async fn delete_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let r = request.into_inner();
        self.record_snapshot_call(SnapshotCall::Delete(r.clone()));
        if r.snapshot_id == "snap-gone" {
            return Err(no_snapshot(&r.snapshot_id));
        }
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    /// The copy is `snap-copy`; `snap-gone` does not exist; the mock is in us-east-1.
    async fn copy_snapshot(
        &self,
        request: Request<pb::CopySnapshotRequest>,
    ) -> Result<Response<pb::CopySnapshotResponse>, Status> {
        let r = request.into_inner();
        self.record_snapshot_call(SnapshotCall::Copy(r.clone()));
        if r.source_snapshot_id == "snap-gone" {
            return Err(no_snapshot(&r.source_snapshot_id));
        }
        if let Some(region) = r.destination_region.filter(|r| r != "us-east-1") {
            return Err(ec2_error(
                Status::invalid_argument(format!(
                    "The destination region {region} is not this region (us-east-1)."
                )),
                "InvalidParameterValue",
            ));
        }
        Ok(Response::new(pb::CopySnapshotResponse {
            snapshot_id: "snap-copy".into(),
        }))
    }

    /// See [`fsr_pairs`].
    async fn enable_fast_snapshot_restores(
        &self,
        request: Request<pb::EnableFastSnapshotRestoresRequest>,
    ) -> Result<Response<pb::FastSnapshotRestoresResult>, Status> {
        let r = request.into_inner();
        self.record_fsr_call(FsrCall::Enable(r.clone()));
        Ok(Response::new(fsr_pairs(
            &r.availability_zones,
            &r.source_snapshot_ids,
            true,
        )))
    }

    /// See [`fsr_pairs`].
    async fn disable_fast_snapshot_restores(
        &self,
        request: Request<pb::DisableFastSnapshotRestoresRequest>,
    ) -> Result<Response<pb::FastSnapshotRestoresResult>, Status> {
        let r = request.into_inner();
        self.record_fsr_call(FsrCall::Disable(r.clone()));
        Ok(Response::new(fsr_pairs(
            &r.availability_zones,
            &r.source_snapshot_ids,
            false,
        )))
    }

    /// Five pairs: `snap-0` enabled in both zones, `snap-1` optimizing in us-east-1a and disabled
    /// in us-east-1b, `snap-2` enabled in us-east-1a; two per page unless asked otherwise. Honours
    /// the `state` filter; a filter the server does not know is an error, as there.
    async fn describe_fast_snapshot_restores(
        &self,
        request: Request<pb::DescribeFastSnapshotRestoresRequest>,
    ) -> Result<Response<pb::DescribeFastSnapshotRestoresResponse>, Status> {
        let r = request.into_inner();
        self.record_fsr_call(FsrCall::Describe(r.clone()));
        if let Some(f) = r.filters.iter().find(|f| {
            !matches!(
                f.name.as_str(),
                "availability-zone" | "snapshot-id" | "state" | "owner-id"
            )
        }) {
            return Err(ec2_error(
                Status::invalid_argument(format!("The filter '{}' is invalid", f.name)),
                "InvalidParameterValue",
            ));
        }
        let states: Vec<&str> = r
            .filters
            .iter()
            .filter(|f| f.name == "state")
            .flat_map(|f| f.values.iter().map(String::as_str))
            .collect();
        let all: Vec<pb::FastSnapshotRestore> = [
            fsr("snap-0", "us-east-1a", "enabled"),
            fsr("snap-0", "us-east-1b", "enabled"),
            fsr("snap-1", "us-east-1a", "optimizing"),
            fsr("snap-1", "us-east-1b", "disabled"),
            fsr("snap-2", "us-east-1a", "enabled"),
        ]
        .into_iter()
        .filter(|f| states.is_empty() || states.contains(&f.state.as_str()))
        .collect();
        let start: usize = r.next_token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let size = usize::try_from(r.max_results.unwrap_or(2)).unwrap_or(2);
        let end = (start + size).min(all.len());
        Ok(Response::new(pb::DescribeFastSnapshotRestoresResponse {
            fast_snapshot_restores: all[start..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        }))
    }

    async fn start_snapshot(
        &self,
        _: Request<pb::StartSnapshotRequest>,
    ) -> Result<Response<pb::StartSnapshotResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn put_snapshot_block(
        &self,
        _: Request<pb::PutSnapshotBlockRequest>,
    ) -> Result<Response<pb::PutSnapshotBlockResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn complete_snapshot(
        &self,
        _: Request<pb::CompleteSnapshotRequest>,
    ) -> Result<Response<pb::CompleteSnapshotResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn list_snapshot_blocks(
        &self,
        _: Request<pb::ListSnapshotBlocksRequest>,
    ) -> Result<Response<pb::ListSnapshotBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn list_changed_blocks(
        &self,
        _: Request<pb::ListChangedBlocksRequest>,
    ) -> Result<Response<pb::ListChangedBlocksResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn get_snapshot_block(
        &self,
        _: Request<pb::GetSnapshotBlockRequest>,
    ) -> Result<Response<pb::GetSnapshotBlockResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    /// See [`instance_types`]: two per page unless asked otherwise. Honours `instance_types`
    /// (an unknown one fails the call) and the `instance-type` filter; any other filter is
    /// invalid, as a filter the server does not know is there.
    async fn describe_instance_types(
        &self,
        request: Request<pb::DescribeInstanceTypesRequest>,
    ) -> Result<Response<pb::DescribeInstanceTypesResponse>, Status> {
        let r = request.into_inner();
        self.instance_type_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(r.clone());
        let known = instance_types();
        if let Some(unknown) = r
            .instance_types
            .iter()
            .find(|n| !known.iter().any(|t| &t.instance_type == *n))
        {
            return Err(ec2_error(
                Status::invalid_argument(format!(
                    "The following supplied instance types do not exist: [{unknown}]"
                )),
                "InvalidInstanceType",
            ));
        }
        if let Some(f) = r.filters.iter().find(|f| f.name != "instance-type") {
            return Err(ec2_error(
                Status::invalid_argument(format!("The filter '{}' is invalid", f.name)),
                "InvalidParameterValue",
            ));
        }
        let all: Vec<pb::InstanceTypeInfo> = known
            .into_iter()
            .filter(|t| r.instance_types.is_empty() || r.instance_types.contains(&t.instance_type))
            .filter(|t| {
                r.filters
                    .iter()
                    .all(|f| matches_any(&f.values, &t.instance_type))
            })
            .collect();
        let start: usize = r.next_token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let size = usize::try_from(r.max_results.unwrap_or(2)).unwrap_or(2);
        let end = (start + size).min(all.len());
        Ok(Response::new(pb::DescribeInstanceTypesResponse {
            instance_types: all[start.min(end)..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        }))
    }

    /// See [`Mock::register`].
    async fn register_image(
        &self,
        request: Request<pb::RegisterImageRequest>,
    ) -> Result<Response<pb::RegisterImageResponse>, Status> {
        let r = request.into_inner();
        self.record_image_call(ImageCall::Register(r.clone()));
        let image = self.register(r)?;
        Ok(Response::new(pb::RegisterImageResponse {
            image_id: image.image_id,
        }))
    }

    /// The registered AMIs in ID order, two per page unless asked otherwise (5-1000, not with
    /// IDs, as the server). By ID: every ID must exist, no paging. Owners other than `self` or
    /// [`IMAGE_OWNER`] own none. Honours the image-id, name, state, architecture and tag:KEY
    /// filters; any other filter is invalid.
    async fn describe_images(
        &self,
        request: Request<pb::DescribeImagesRequest>,
    ) -> Result<Response<pb::DescribeImagesResponse>, Status> {
        let r = request.into_inner();
        self.record_image_call(ImageCall::Describe(r.clone()));
        // An AMI made by CreateImage is pending when first described, then available.
        {
            let mut unseen = self
                .unseen_images
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for image in self.images().values_mut() {
                if image.state == "pending" && !unseen.contains(&image.image_id) {
                    image.state = "available".into();
                }
            }
            unseen.clear();
        }
        for id in &r.image_ids {
            check_image_id(id)?;
        }
        if let Some(f) = r.filters.iter().find(|f| {
            !matches!(
                f.name.as_str(),
                "image-id" | "name" | "state" | "architecture"
            ) && !f.name.starts_with("tag:")
        }) {
            return Err(ec2_error(
                Status::invalid_argument(format!("The filter '{}' is invalid", f.name)),
                "InvalidParameterValue",
            ));
        }
        let page_size = match r.max_results {
            None => 2,
            Some(_) if !r.image_ids.is_empty() => {
                return Err(ec2_error(
                    Status::invalid_argument(
                        "The parameter 'MaxResults' cannot be used with the parameter 'ImageIds'.",
                    ),
                    "InvalidParameterCombination",
                ));
            }
            Some(n) if !(5..=1000).contains(&n) => {
                return Err(ec2_error(
                    Status::invalid_argument(format!(
                        "Value ({n}) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
                    )),
                    "InvalidParameterValue",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(5),
        };
        let owned = r.owners.iter().all(|o| o == "self" || o == IMAGE_OWNER);
        let selected = |i: &pb::Image| owned && r.filters.iter().all(|f| image_matches(i, f));
        let images = self.images();
        if !r.image_ids.is_empty() {
            let mut found: Vec<pb::Image> = Vec::new();
            for id in &r.image_ids {
                let image = images.get(id).ok_or_else(|| no_image(id))?;
                if selected(image) && !found.iter().any(|f| f.image_id == *id) {
                    found.push(image.clone());
                }
            }
            return Ok(Response::new(pb::DescribeImagesResponse {
                images: found,
                next_token: None,
            }));
        }
        // The token is the last ID of the previous page.
        let after = r.next_token.unwrap_or_default();
        let mut rest = images
            .values()
            .filter(|i| i.image_id > after && selected(i))
            .cloned();
        let page: Vec<pb::Image> = rest.by_ref().take(page_size).collect();
        let next_token = match rest.next() {
            Some(_) => page.last().map(|i| i.image_id.clone()),
            None => None,
        };
        Ok(Response::new(pb::DescribeImagesResponse {
            images: page,
            next_token,
        }))
    }

    async fn deregister_image(
        &self,
        request: Request<pb::DeregisterImageRequest>,
    ) -> Result<Response<pb::DeregisterImageResponse>, Status> {
        let r = request.into_inner();
        self.record_image_call(ImageCall::Deregister(r.clone()));
        check_image_id(&r.image_id)?;
        match self.images().remove(&r.image_id) {
            Some(_) => Ok(Response::new(pb::DeregisterImageResponse {})),
            None => Err(no_image(&r.image_id)),
        }
    }

    /// An AMI of the instance, `pending` until a DescribeImages has seen it, then `available`;
    /// named `broken`, it is `failed`.
    async fn create_image(
        &self,
        request: Request<pb::CreateImageRequest>,
    ) -> Result<Response<pb::CreateImageResponse>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::CreateImage(r.clone()));
        if !self.instances().contains_key(&r.instance_id) {
            return Err(no_instance(&r.instance_id));
        }
        let n = self.images_registered.fetch_add(1, Ordering::SeqCst) + 1;
        let image_id = format!("ami-{n:017x}");
        let image = pb::Image {
            image_id: image_id.clone(),
            state: if r.name == "broken" {
                "failed"
            } else {
                "pending"
            }
            .into(),
            name: r.name,
            description: r.description.unwrap_or_default(),
            tags: spec_tags(r.tag_specifications),
            ..shapes::tests::image()
        };
        self.images().insert(image_id.clone(), image);
        self.unseen_images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(image_id.clone());
        Ok(Response::new(pb::CreateImageResponse { image_id }))
    }

    /// See [`Mock::run`].
    async fn run_instances(
        &self,
        request: Request<pb::RunInstancesRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Run(r.clone()));
        self.run(r).map(Response::new)
    }

    /// The instances (all, or by ID: each must exist) grouped by reservation in launch order, two
    /// reservations per page unless asked otherwise. Honours the instance-state-name filter; any
    /// other filter is invalid. Then time passes: see [`Mock::advance_instances`].
    async fn describe_instances(
        &self,
        request: Request<pb::DescribeInstancesRequest>,
    ) -> Result<Response<pb::DescribeInstancesResponse>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Describe(r.clone()));
        if let Some(f) = r.filters.iter().find(|f| f.name != "instance-state-name") {
            return Err(ec2_error(
                Status::invalid_argument(format!("The filter '{}' is invalid", f.name)),
                "InvalidParameterValue",
            ));
        }
        let mut reservations: Vec<pb::Reservation> = Vec::new();
        {
            let instances = self.instances();
            if let Some(id) = r
                .instance_ids
                .iter()
                .find(|id| !instances.contains_key(*id))
            {
                return Err(no_instance(id));
            }
            for (id, (reservation_id, instance)) in instances.iter() {
                let state = instance.state.clone().unwrap_or_default().name;
                let wanted = r.instance_ids.is_empty() || r.instance_ids.contains(id);
                if !wanted || !r.filters.iter().all(|f| f.values.contains(&state)) {
                    continue;
                }
                match reservations.last_mut() {
                    Some(last) if last.reservation_id == *reservation_id => {
                        last.instances.push(instance.clone());
                    }
                    _ => reservations.push(pb::Reservation {
                        reservation_id: reservation_id.clone(),
                        owner_id: IMAGE_OWNER.into(),
                        instances: vec![instance.clone()],
                    }),
                }
            }
        }
        self.advance_instances();
        let start: usize = r.next_token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let size = usize::try_from(r.max_results.unwrap_or(2)).unwrap_or(2);
        let end = (start + size).min(reservations.len());
        Ok(Response::new(pb::DescribeInstancesResponse {
            reservations: reservations[start.min(end)..end].to_vec(),
            next_token: (end < reservations.len()).then(|| end.to_string()),
        }))
    }

    async fn start_instances(
        &self,
        request: Request<pb::InstanceIdsRequest>,
    ) -> Result<Response<pb::InstanceStateChanges>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Start(r.clone()));
        self.change(&r.instance_ids, "pending", &["pending", "running"])
            .map(Response::new)
    }

    /// Hibernation is refused, as by the server.
    async fn stop_instances(
        &self,
        request: Request<pb::StopInstancesRequest>,
    ) -> Result<Response<pb::InstanceStateChanges>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Stop(r.clone()));
        if r.hibernate {
            return Err(ec2_error(
                Status::invalid_argument("Hibernation is not supported."),
                "UnsupportedHibernationConfiguration",
            ));
        }
        self.change(&r.instance_ids, "stopping", &["stopping", "stopped"])
            .map(Response::new)
    }

    async fn reboot_instances(
        &self,
        request: Request<pb::InstanceIdsRequest>,
    ) -> Result<Response<pb::RebootInstancesResponse>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Reboot(r.clone()));
        if let Some(id) = r
            .instance_ids
            .iter()
            .find(|id| !self.instances().contains_key(*id))
        {
            return Err(no_instance(id));
        }
        Ok(Response::new(pb::RebootInstancesResponse {}))
    }

    async fn terminate_instances(
        &self,
        request: Request<pb::InstanceIdsRequest>,
    ) -> Result<Response<pb::InstanceStateChanges>, Status> {
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Terminate(r.clone()));
        self.change(
            &r.instance_ids,
            "shutting-down",
            &["shutting-down", "terminated"],
        )
        .map(Response::new)
    }

    /// One day of two services' costs.
    async fn get_cost_and_usage(
        &self,
        request: Request<pb::GetCostAndUsageRequest>,
    ) -> Result<Response<pb::GetCostAndUsageResponse>, Status> {
        let r = request.into_inner();
        self.cost_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(r.clone());
        let value = |a: &str| pb::MetricValue {
            amount: a.into(),
            unit: "USD".into(),
        };
        let group = |k: &str, a: &str| pb::CostGroup {
            keys: vec![k.into()],
            metrics: [(r.metrics[0].clone(), value(a))].into(),
        };
        Ok(Response::new(pb::GetCostAndUsageResponse {
            results_by_time: vec![pb::CostPeriod {
                start: r.start.clone(),
                end: r.end.clone(),
                total: Default::default(),
                groups: vec![
                    group("Amazon Elastic Compute Cloud - Compute", "2.304"),
                    group("EC2 - Other", "0.8"),
                ],
            }],
        }))
    }

    /// `hello from <id>` and a byte that is not UTF-8, base64-encoded as EC2 sends it.
    async fn get_console_output(
        &self,
        request: Request<pb::GetConsoleOutputRequest>,
    ) -> Result<Response<pb::GetConsoleOutputResponse>, Status> {
        use base64::Engine as _;
        let r = request.into_inner();
        self.record_instance_call(InstanceCall::Console(r.clone()));
        if !self.instances().contains_key(&r.instance_id) {
            return Err(no_instance(&r.instance_id));
        }
        let text = format!("booting\nhello from {} \u{1b}[0m\n", r.instance_id);
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\n");
        Ok(Response::new(pb::GetConsoleOutputResponse {
            instance_id: r.instance_id,
            output: base64::engine::general_purpose::STANDARD.encode(bytes),
            timestamp: "2024-05-01T12:00:10.000Z".into(),
        }))
    }
}

/// Serves `mock` on a free port; returns its endpoint URL.
async fn serve(mock: Arc<Mock>) -> String {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => panic!("local_addr: {e}"),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VolumeServiceServer::from_arc(mock))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

async fn ebsctl(endpoint: &str, args: &[&str]) -> Result<Option<String>, CliError> {
    let argv = ["ebsctl", "--endpoint", endpoint]
        .into_iter()
        .chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => run(cli).await,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn json(out: Result<Option<String>, CliError>) -> serde_json::Value {
    match out {
        Ok(Some(text)) => match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => panic!("not JSON ({e}): {text}"),
        },
        other => panic!("expected output, got {other:?}"),
    }
}

#[tokio::test]
async fn describe_volumes_follows_next_token_unless_paging_is_asked_for() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let all = json(ebsctl(&endpoint, &["describe-volumes"]).await);
    let ids: Vec<&str> = all["Volumes"]
        .as_array()
        .map(|v| v.iter().filter_map(|v| v["VolumeId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["vol-0", "vol-1", "vol-2", "vol-3", "vol-4"]);
    assert!(all.get("NextToken").is_none(), "{all}");
    assert_eq!(mock.describe_calls.load(Ordering::SeqCst), 3);

    let page = json(ebsctl(&endpoint, &["describe-volumes", "--max-results", "2"]).await);
    assert_eq!(page["Volumes"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["NextToken"], "2");
}

#[tokio::test]
async fn create_volume_sends_flags_and_prints_the_volume() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let volume = json(
        ebsctl(
            &endpoint,
            &[
                "create-volume",
                "--availability-zone",
                "us-east-1b",
                "--size",
                "16",
                "--volume-type",
                "io2",
                "--iops",
                "1000",
                "--multi-attach-enabled",
                "--tag-specifications",
                "ResourceType=volume,Tags=[{Key=Name,Value=db}]",
            ],
        )
        .await,
    );
    assert_eq!(volume["VolumeId"], "vol-new");
    assert_eq!(volume["AvailabilityZone"], "us-east-1b");
    assert_eq!(volume["Size"], 16);
    assert_eq!(volume["VolumeType"], "io2");
    assert_eq!(volume["Iops"], 1000);
    assert_eq!(volume["MultiAttachEnabled"], true);
    assert!(volume.get("Throughput").is_none(), "{volume}");
    assert_eq!(
        volume["Tags"],
        serde_json::json!([{"Key": "Name", "Value": "db"}])
    );
}

#[tokio::test]
async fn service_errors_carry_the_ec2_code_and_operation() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let args = [
        "attach-volume",
        "--volume-id",
        "vol-1",
        "--instance-id",
        "i-1",
        "--device",
        "/dev/sdf",
    ];
    let err = match ebsctl(&endpoint, &args).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        "An error occurred (VolumeInUse) when calling the AttachVolume operation: vol-1 is already attached to an instance"
    );
    assert_eq!(err.exit_code(), 254);
}

#[tokio::test]
async fn quiet_commands_print_nothing() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let out = ebsctl(&endpoint, &["delete-volume", "--volume-id", "vol-1"]).await;
    assert!(matches!(out, Ok(None)), "{out:?}");
}

#[tokio::test]
async fn no_server_is_a_connection_error() {
    // A port that was free a moment ago: nothing listens there.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        match listener.and_then(|l| l.local_addr()) {
            Ok(addr) => format!("http://{addr}"),
            Err(e) => panic!("bind: {e}"),
        }
    };
    let err = match ebsctl(&endpoint, &["describe-volumes"]).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        format!("Could not connect to the endpoint URL: \"{endpoint}\"")
    );
    assert_eq!(err.exit_code(), 255);
}

/// A server started in the background a moment before the first call (`volume-server &` in a
/// script) is waited for, briefly, instead of failing the call.
#[tokio::test]
async fn a_server_still_starting_is_waited_for() {
    let addr = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr,
        Err(e) => panic!("bind: {e}"),
    };
    let late = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => panic!("rebind {addr}: {e}"),
        };
        tonic::transport::Server::builder()
            .add_service(VolumeServiceServer::from_arc(Arc::new(Mock::default())))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });
    let out = ebsctl(&format!("http://{addr}"), &["describe-volumes"]).await;
    assert!(out.is_ok(), "{out:?}");
    late.abort();
}

#[tokio::test]
async fn endpoints_must_be_http_urls() {
    for (endpoint, says) in [
        (
            "https://127.0.0.1:50051",
            "does not speak TLS; use http://127.0.0.1:50051",
        ),
        ("127.0.0.1:50051", "no scheme; use http://127.0.0.1:50051"),
        (
            "grpc://127.0.0.1:50051",
            "the scheme grpc:// is not http://",
        ),
    ] {
        let err = match ebsctl(endpoint, &["describe-volumes"]).await {
            Err(e) => e,
            Ok(out) => panic!("{endpoint}: expected an error, got {out:?}"),
        };
        assert!(err.to_string().contains(says), "{endpoint}: {err}");
        assert_eq!(err.exit_code(), 255);
    }
}

#[tokio::test]
async fn argument_errors_come_before_connecting() {
    let err = match ebsctl(
        "http://127.0.0.1:1",
        &["describe-volumes", "--filters", "Name"],
    )
    .await
    {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(err.exit_code(), 252, "{err}");
}

#[tokio::test]
async fn waiters() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let wait = |waiter: &'static str, id: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let args = [
                "wait",
                waiter,
                "--volume-ids",
                id,
                "--delay",
                "0",
                "--max-attempts",
                "2",
            ];
            ebsctl(&endpoint, &args).await
        }
    };

    assert!(matches!(wait("volume-available", "vol-1").await, Ok(None)));
    assert!(matches!(wait("volume-deleted", "vol-gone").await, Ok(None)));

    let timeout = wait("volume-available", "vol-creating").await;
    match timeout {
        Err(e) => {
            assert_eq!(
                e.to_string(),
                "Waiter VolumeAvailable failed: Max attempts exceeded"
            );
            assert_eq!(e.exit_code(), 255);
        }
        Ok(out) => panic!("expected a timeout, got {out:?}"),
    }

    match wait("volume-available", "vol-error").await {
        Err(e) => assert!(e.to_string().contains("terminal failure state"), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
    match wait("volume-in-use", "vol-gone").await {
        Err(e) => assert!(e.to_string().contains("InvalidVolume.NotFound"), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
}

#[tokio::test]
async fn modify_volume_prints_the_modification() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "modify-volume",
                "--volume-id",
                "vol-1",
                "--size",
                "16",
                "--volume-type",
                "io2",
                "--iops",
                "4000",
                "--multi-attach-enabled",
            ],
        )
        .await,
    );
    let keys: Vec<&str> = reply
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["VolumeModification"]);
    let m = &reply["VolumeModification"];
    assert_eq!(m["VolumeId"], "vol-1");
    assert_eq!(m["ModificationState"], "modifying");
    assert_eq!(m["TargetSize"], 16);
    assert_eq!(m["TargetVolumeType"], "io2");
    assert_eq!(m["TargetIops"], 4000);
    assert_eq!(m["TargetThroughput"], 125);
    assert_eq!(m["TargetMultiAttachEnabled"], true);
    assert_eq!(m["OriginalSize"], 8);
    assert_eq!(m["OriginalVolumeType"], "gp3");
    assert_eq!(m["OriginalIops"], 3000);
    assert_eq!(m["OriginalThroughput"], 125);
    assert_eq!(m["OriginalMultiAttachEnabled"], false);
    assert_eq!(m["Progress"], 0);
    assert_eq!(m["StartTime"], "2024-05-01T12:00:02.000Z");
    for absent in ["StatusMessage", "EndTime"] {
        assert!(m.get(absent).is_none(), "{absent} in {m}");
    }

    // --no-multi-attach-enabled is sent as false, not left out.
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "modify-volume",
                "--volume-id",
                "vol-1",
                "--no-multi-attach-enabled",
            ],
        )
        .await,
    );
    assert_eq!(
        reply["VolumeModification"]["TargetMultiAttachEnabled"],
        false
    );
    assert_eq!(reply["VolumeModification"]["TargetSize"], 8);

    let err = match ebsctl(&endpoint, &["modify-volume", "--volume-id", "vol-gone"]).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidVolume.NotFound) when calling the ModifyVolume operation: The volume 'vol-gone' does not exist."
    );
}

#[tokio::test]
async fn describe_volumes_modifications_lists_and_filters() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let all = json(ebsctl(&endpoint, &["describe-volumes-modifications"]).await);
    let list = all["VolumesModifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 2, "{all}");
    assert_eq!(list[0]["VolumeId"], "vol-1");
    assert!(list[0].get("EndTime").is_none(), "{all}");
    assert_eq!(list[1]["VolumeId"], "vol-2");
    assert_eq!(list[1]["ModificationState"], "completed");
    assert_eq!(list[1]["StatusMessage"], "done");
    assert_eq!(list[1]["Progress"], 100);
    assert_eq!(list[1]["EndTime"], "2024-05-01T12:00:09.000Z");

    let completed = json(
        ebsctl(
            &endpoint,
            &[
                "describe-volumes-modifications",
                "--filters",
                "Name=modification-state,Values=completed,failed",
            ],
        )
        .await,
    );
    let ids: Vec<&str> = completed["VolumesModifications"]
        .as_array()
        .map(|v| v.iter().filter_map(|m| m["VolumeId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["vol-2"]);

    let one = json(
        ebsctl(
            &endpoint,
            &["describe-volumes-modifications", "--volume-ids", "vol-1"],
        )
        .await,
    );
    assert_eq!(
        one["VolumesModifications"].as_array().map(Vec::len),
        Some(1)
    );

    let none = ebsctl(
        &endpoint,
        &["describe-volumes-modifications", "--volume-ids", "vol-9"],
    )
    .await;
    assert_eq!(json(none), serde_json::json!({"VolumesModifications": []}));
}

#[tokio::test]
async fn describe_volume_status_prints_the_aws_shape() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let reply = json(
        ebsctl(
            &endpoint,
            &["describe-volume-status", "--volume-ids", "vol-a"],
        )
        .await,
    );
    let want = serde_json::json!({"VolumeStatuses": [{
        "VolumeId": "vol-a",
        "AvailabilityZone": "us-east-1a",
        "VolumeStatus": {"Status": "impaired", "Details": [{"Name": "io-enabled", "Status": "failed"}]},
        "Actions": [],
        "Events": [],
    }]});
    assert_eq!(reply, want);
}

#[tokio::test]
async fn get_volume_metrics_prints_cloudwatch_names() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let reply = json(ebsctl(&endpoint, &["get-volume-metrics", "--volume-id", "vol-a"]).await);
    let want = serde_json::json!({"Metrics": [{
        "VolumeId": "vol-a",
        "VolumeReadOps": 0,
        "VolumeWriteOps": 0,
        "VolumeReadBytes": 0,
        "VolumeWriteBytes": 0,
        "VolumeTotalReadTime": 0.0,
        "VolumeTotalWriteTime": 0.0,
        "VolumeIdleTime": 0.0,
        "VolumeQueueLength": 3,
        "VolumeThroughputPercentage": 100.0,
        "VolumeConsumedReadWriteOps": 0,
        "VolumeIOPSExceededCheck": 1,
        "VolumeThroughputExceededCheck": 0,
        "ProvisionedIops": 4000,
        "ProvisionedThroughputBytes": 0,
        "ThrottleWaitTime": 0.0,
    }]});
    assert_eq!(reply, want);

    // Every open volume; gp2 has BurstBalance and no VolumeThroughputPercentage.
    let all = json(ebsctl(&endpoint, &["get-volume-metrics"]).await);
    let metrics = all["Metrics"].as_array().cloned().unwrap_or_default();
    assert_eq!(metrics.len(), 2, "{all}");
    assert_eq!(metrics[0]["VolumeReadOps"], 100);
    assert_eq!(metrics[1]["VolumeId"], "vol-b");
    assert_eq!(metrics[1]["BurstBalance"], 97.5);
    assert!(
        metrics[1].get("VolumeThroughputPercentage").is_none(),
        "{all}"
    );

    let two = json(
        ebsctl(
            &endpoint,
            &["get-volume-metrics", "--volume-ids", "vol-a", "vol-c"],
        )
        .await,
    );
    assert_eq!(two["Metrics"].as_array().map(Vec::len), Some(2), "{two}");

    let requests = mock
        .metrics_requests
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert_eq!(
        requests,
        [
            vec!["vol-a".to_owned()],
            vec![],
            vec!["vol-a".to_owned(), "vol-c".to_owned()]
        ]
    );

    let err = match ebsctl(&endpoint, &["get-volume-metrics", "--volume-id", "vol-x"]).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert!(
        err.to_string()
            .contains("when calling the GetVolumeMetrics operation"),
        "{err}"
    );
}

/// Runs `top` against `endpoint` every 10 ms; returns what it wrote.
async fn top(endpoint: &str, count: u64, volume_ids: &[&str]) -> Result<String, CliError> {
    let args = cli::TopArgs {
        interval: Duration::from_millis(10),
        count: Some(count),
        volume_ids: volume_ids.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut out = Vec::new();
    crate::top::top(&mut Api::new(endpoint.to_owned()), args, &mut out).await?;
    String::from_utf8(out).map_err(|e| CliError::Output(e.to_string()))
}

/// The cells of each line of `text`.
fn cells(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[tokio::test]
async fn top_prints_rates_and_follows_volumes_coming_and_going() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let text = match top(&endpoint, 3, &[]).await {
        Ok(text) => text,
        Err(e) => panic!("{e}"),
    };
    let lines = cells(&text);
    // Report 1: vol-a and vol-b; report 2: vol-a (vol-b went, vol-c is new); report 3: vol-a, vol-c.
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l.first().copied().unwrap_or(""))
        .collect();
    assert_eq!(
        ids,
        ["VOLUME", "vol-a", "vol-b", "vol-a", "", "vol-a", "vol-c"],
        "{text}"
    );
    assert_eq!(lines[0].len(), 11, "{text}");
    // await-ms, queue, burst%, iops-exceeded, tput-exceeded do not depend on the elapsed time.
    assert_eq!(lines[1][6..], ["2.00", "3", "-", "yes", "-"], "{text}");
    assert_eq!(
        lines[2][1..],
        [
            "0.0", "0.0", "0.00", "0.00", "0.0", "-", "0", "97.5", "no", "no"
        ],
        "{text}"
    );
    assert_eq!(lines[6][6..], ["1.00", "0", "97.5", "no", "no"], "{text}");
    for line in &lines[1..] {
        if !line.is_empty() {
            assert_eq!(line.len(), 11, "{text}");
        }
    }
    assert_eq!(
        mock.metrics_requests.lock().map(|r| r.len()).unwrap_or(0),
        4
    );
}

#[tokio::test]
async fn top_with_volume_ids_checks_them_once_then_keeps_only_them() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let text = match top(&endpoint, 2, &["vol-b"]).await {
        Ok(text) => text,
        Err(e) => panic!("{e}"),
    };
    // vol-b is gone at the third reading: dropped, not an error.
    let ids: Vec<&str> = cells(&text)
        .iter()
        .map(|l| l.first().copied().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["VOLUME", "vol-b"], "{text}");
    let requests = mock
        .metrics_requests
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    assert_eq!(requests, [vec!["vol-b".to_owned()], vec![], vec![]]);

    let err = match top(&endpoint, 1, &["vol-x"]).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out}"),
    };
    assert_eq!(err.exit_code(), 254, "{err}");
}

fn resv_args<'a>(command: &'a str, key: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    [
        command,
        "--volume-id",
        "vol-1",
        "--instance-id",
        "i-1",
        "--key",
        key,
    ]
    .into_iter()
    .chain(rest.iter().copied())
    .collect()
}

async fn expect_err(endpoint: &str, args: &[&str]) -> CliError {
    match ebsctl(endpoint, args).await {
        Err(e) => e,
        Ok(out) => panic!("{args:?}: expected an error, got {out:?}"),
    }
}

#[tokio::test]
async fn resv_register_sends_the_action_and_keys() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let reply = json(ebsctl(&endpoint, &resv_args("resv-register", "0xA", &[])).await);
    assert_eq!(
        reply,
        serde_json::json!({
            "VolumeId": "vol-1",
            "Generation": 2,
            "Type": null,
            "Holder": null,
            "Registrants": [{"InstanceId": "i-1", "Key": 10, "Holder": false}],
        })
    );

    let reply = json(
        ebsctl(
            &endpoint,
            &resv_args(
                "resv-register",
                "10",
                &["--action", "replace", "--new-key", "0xffffffffffffffff"],
            ),
        )
        .await,
    );
    assert_eq!(reply["Registrants"][0]["Key"], u64::MAX);

    let reply = json(
        ebsctl(
            &endpoint,
            &resv_args("resv-register", "10", &["--action", "unregister"]),
        )
        .await,
    );
    assert_eq!(reply["Registrants"], serde_json::json!([]));

    let request = |key, action: &str, new_key| {
        ResvCall::Register(pb::ReservationRegisterRequest {
            volume_id: "vol-1".into(),
            instance_id: "i-1".into(),
            key,
            action: action.into(),
            new_key,
        })
    };
    assert_eq!(
        mock.resv_requests(),
        [
            request(10, "register", 0),
            request(10, "replace", u64::MAX),
            request(10, "unregister", 0),
        ]
    );

    // --new-key outside replace is a usage error, found before connecting.
    let err = expect_err(
        "http://127.0.0.1:1",
        &resv_args("resv-register", "1", &["--new-key", "2"]),
    )
    .await;
    assert_eq!(err.exit_code(), 252, "{err}");
    assert_eq!(
        err.to_string(),
        "Error parsing parameter '--new-key': only valid with --action replace, not register"
    );

    let err = expect_err(
        &endpoint,
        &[
            "resv-register",
            "--volume-id",
            "vol-gone",
            "--instance-id",
            "i-1",
            "--key",
            "1",
        ],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidVolume.NotFound) when calling the ReservationRegister operation: The volume 'vol-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);
}

#[tokio::test]
async fn resv_acquire_sends_the_type_action_and_preempt_key() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let reply = json(
        ebsctl(
            &endpoint,
            &resv_args("resv-acquire", "7", &["--type", "write-exclusive"]),
        )
        .await,
    );
    assert_eq!(
        reply,
        serde_json::json!({
            "VolumeId": "vol-1",
            "Generation": 1,
            "Type": "write-exclusive",
            "Holder": "i-1",
            "Registrants": [{"InstanceId": "i-1", "Key": 7, "Holder": true}],
        })
    );

    let reply = json(
        ebsctl(
            &endpoint,
            &resv_args(
                "resv-acquire",
                "7",
                &[
                    "--type",
                    "exclusive-access-registrants-only",
                    "--action",
                    "preempt-abort",
                    "--preempt-key",
                    "0x20",
                ],
            ),
        )
        .await,
    );
    assert_eq!(reply["Type"], "exclusive-access-registrants-only");

    let request = |r#type: pb::ReservationType, action: &str, preempt_key| {
        ResvCall::Acquire(pb::ReservationAcquireRequest {
            volume_id: "vol-1".into(),
            instance_id: "i-1".into(),
            key: 7,
            r#type: r#type.into(),
            action: action.into(),
            preempt_key,
        })
    };
    assert_eq!(
        mock.resv_requests(),
        [
            request(pb::ReservationType::WriteExclusive, "acquire", 0),
            request(
                pb::ReservationType::ExclusiveAccessRegistrantsOnly,
                "preempt-abort",
                32
            ),
        ]
    );

    let err = expect_err(
        "http://127.0.0.1:1",
        &resv_args(
            "resv-acquire",
            "7",
            &["--type", "exclusive-access", "--preempt-key", "1"],
        ),
    )
    .await;
    assert_eq!(err.exit_code(), 252, "{err}");

    let err = expect_err(
        &endpoint,
        &resv_args("resv-acquire", "0xbad", &["--type", "exclusive-access"]),
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (ReservationConflict) when calling the ReservationAcquire operation: i-1 is not registered with key 2989"
    );
    assert_eq!(err.exit_code(), 254);
}

#[tokio::test]
async fn resv_release_sends_the_type_and_clear() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let reply = json(
        ebsctl(
            &endpoint,
            &resv_args("resv-release", "3", &["--type", "exclusive-access"]),
        )
        .await,
    );
    assert_eq!(reply["Type"], serde_json::Value::Null);
    assert_eq!(reply["Holder"], serde_json::Value::Null);
    assert_eq!(
        reply["Registrants"],
        serde_json::json!([{"InstanceId": "i-1", "Key": 3, "Holder": false}])
    );

    let reply = json(
        ebsctl(
            &endpoint,
            &resv_args(
                "resv-release",
                "3",
                &["--type", "write-exclusive-all-registrants", "--clear"],
            ),
        )
        .await,
    );
    assert_eq!(reply["Registrants"], serde_json::json!([]));

    // --clear without --type: the type is sent unspecified.
    let reply = json(ebsctl(&endpoint, &resv_args("resv-release", "3", &["--clear"])).await);
    assert_eq!(reply["Registrants"], serde_json::json!([]));

    let request = |r#type: pb::ReservationType, clear| {
        ResvCall::Release(pb::ReservationReleaseRequest {
            volume_id: "vol-1".into(),
            instance_id: "i-1".into(),
            key: 3,
            r#type: r#type.into(),
            clear,
        })
    };
    assert_eq!(
        mock.resv_requests(),
        [
            request(pb::ReservationType::ExclusiveAccess, false),
            request(pb::ReservationType::WriteExclusiveAllRegistrants, true),
            request(pb::ReservationType::Unspecified, true),
        ]
    );
}

#[tokio::test]
async fn resv_report_prints_the_report_in_every_format() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let reply = ebsctl(&endpoint, &["resv-report", "--volume-id", "vol-1"]).await;
    let want = r#"{
    "VolumeId": "vol-1",
    "Generation": 4,
    "Type": "write-exclusive-all-registrants",
    "Holder": "i-0123456789abcdef0",
    "Registrants": [
        {
            "InstanceId": "i-0123456789abcdef0",
            "Key": 3735928559,
            "Holder": true
        },
        {
            "InstanceId": "i-0fedcba9876543210",
            "Key": 18446744073709551615,
            "Holder": true
        }
    ]
}
"#;
    assert_eq!(reply.ok().flatten().as_deref(), Some(want));
    assert_eq!(
        mock.resv_requests(),
        [ResvCall::Report(pb::ReservationReportRequest {
            volume_id: "vol-1".into()
        })]
    );

    let text = ebsctl(
        &endpoint,
        &["resv-report", "--volume-id", "vol-1", "--output", "text"],
    )
    .await;
    let want = "4\ti-0123456789abcdef0\twrite-exclusive-all-registrants\tvol-1\n\
REGISTRANTS\tTrue\ti-0123456789abcdef0\t3735928559\n\
REGISTRANTS\tTrue\ti-0fedcba9876543210\t18446744073709551615\n";
    assert_eq!(text.ok().flatten().as_deref(), Some(want));

    let table = match ebsctl(
        &endpoint,
        &["resv-report", "--volume-id", "vol-1", "--output", "table"],
    )
    .await
    {
        Ok(Some(table)) => table,
        other => panic!("expected a table, got {other:?}"),
    };
    assert!(table.contains("ReservationReport"), "{table}");
    assert!(table.contains("Registrants"), "{table}");
    assert!(
        table.contains("|  Key        |  18446744073709551615"),
        "{table}"
    );

    let err = expect_err(&endpoint, &["resv-report", "--volume-id", "vol-gone"]).await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidVolume.NotFound) when calling the ReservationReport operation: The volume 'vol-gone' does not exist."
    );
}

#[tokio::test]
async fn create_snapshot_sends_flags_and_prints_the_snapshot() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = ebsctl(
        &endpoint,
        &[
            "create-snapshot",
            "--volume-id",
            "vol-1",
            "--description",
            "nightly",
            "--tag-specifications",
            "ResourceType=snapshot,Tags=[{Key=Name,Value=n},{Key=env,Value=prod}]",
        ],
    )
    .await;
    let want = r#"{
    "SnapshotId": "snap-new",
    "VolumeId": "vol-1",
    "State": "pending",
    "StartTime": "2024-05-01T12:00:03.000Z",
    "Progress": "0%",
    "VolumeSize": 8,
    "Description": "nightly",
    "Encrypted": false,
    "OwnerId": "self",
    "Tags": [
        {
            "Key": "Name",
            "Value": "n"
        },
        {
            "Key": "env",
            "Value": "prod"
        }
    ],
    "FullSnapshotSizeInBytes": 0,
    "Ebsemu": {
        "BlockCount": 0,
        "BlocksWritten": 0
    }
}
"#;
    assert_eq!(out.ok().flatten().as_deref(), Some(want));

    // Without the optional flags, and with tag specifications as JSON.
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "create-snapshot",
                "--volume-id",
                "vol-2",
                "--tag-specifications",
                r#"[{"ResourceType": "snapshot", "Tags": [{"Key": "a", "Value": "b"}]}]"#,
            ],
        )
        .await,
    );
    assert_eq!(reply["Description"], "");
    assert_eq!(
        reply["Tags"],
        serde_json::json!([{"Key": "a", "Value": "b"}])
    );

    let tag = |key: &str, value: &str| pb::Tag {
        key: key.into(),
        value: value.into(),
    };
    let spec = |tags| pb::TagSpecification {
        resource_type: "snapshot".into(),
        tags,
    };
    assert_eq!(
        mock.snapshot_requests(),
        [
            SnapshotCall::Create(pb::CreateSnapshotRequest {
                volume_id: "vol-1".into(),
                description: Some("nightly".into()),
                tag_specifications: vec![spec(vec![tag("Name", "n"), tag("env", "prod")])],
            }),
            SnapshotCall::Create(pb::CreateSnapshotRequest {
                volume_id: "vol-2".into(),
                description: None,
                tag_specifications: vec![spec(vec![tag("a", "b")])],
            }),
        ]
    );

    let err = expect_err(&endpoint, &["create-snapshot", "--volume-id", "vol-gone"]).await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidVolume.NotFound) when calling the CreateSnapshot operation: The volume 'vol-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);

    // A malformed tag specification is a usage error, found before connecting.
    let err = expect_err(
        "http://127.0.0.1:1",
        &[
            "create-snapshot",
            "--volume-id",
            "vol-1",
            "--tag-specifications",
            "ResourceType=snapshot,Tags=[{Key=a",
        ],
    )
    .await;
    assert_eq!(err.exit_code(), 252, "{err}");
}

/// The `SnapshotId`s of a describe-snapshots reply.
fn snapshot_ids(reply: &serde_json::Value) -> Vec<&str> {
    reply["Snapshots"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s["SnapshotId"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn describe_snapshots_follows_next_token_unless_paging_is_asked_for() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let all = json(ebsctl(&endpoint, &["describe-snapshots"]).await);
    assert_eq!(
        snapshot_ids(&all),
        ["snap-0", "snap-1", "snap-2", "snap-3", "snap-4"]
    );
    assert!(all.get("NextToken").is_none(), "{all}");
    let tokens: Vec<Option<String>> = mock
        .snapshot_requests()
        .into_iter()
        .map(|call| match call {
            SnapshotCall::Describe(r) => r.next_token,
            other => panic!("not a DescribeSnapshots: {other:?}"),
        })
        .collect();
    assert_eq!(tokens, [None, Some("2".into()), Some("4".into())]);

    let page = json(ebsctl(&endpoint, &["describe-snapshots", "--max-results", "2"]).await);
    assert_eq!(snapshot_ids(&page), ["snap-0", "snap-1"]);
    assert_eq!(page["NextToken"], "2");

    // --next-token alone also prints one page: the last one has no NextToken.
    let last = json(ebsctl(&endpoint, &["describe-snapshots", "--next-token", "4"]).await);
    assert_eq!(snapshot_ids(&last), ["snap-4"]);
    assert!(last.get("NextToken").is_none(), "{last}");

    let first = &all["Snapshots"][0];
    assert_eq!(first["State"], "completed");
    assert_eq!(first["Progress"], "100%");
    assert_eq!(first["CompletionTime"], "2024-05-01T12:00:05.000Z");
    assert_eq!(first["Ebsemu"]["BlockCount"], 12);
    assert_eq!(first["Ebsemu"]["BlocksWritten"], 4);
    for absent in [
        "BlockCount",
        "BlocksWritten",
        "StateMessage",
        "SourceRegion",
    ] {
        assert!(first.get(absent).is_none(), "{absent} in {first}");
    }
}

#[tokio::test]
async fn describe_snapshots_sends_ids_owners_and_filters() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "describe-snapshots",
                "--snapshot-ids",
                "snap-a",
                "snap-error",
                "--owner-ids",
                "self",
                "--filters",
                "Name=status,Values=completed,error",
                r#"{"Name": "tag:Env", "Values": ["prod"]}"#,
            ],
        )
        .await,
    );
    assert_eq!(snapshot_ids(&reply), ["snap-a", "snap-error"]);
    let failed = &reply["Snapshots"][1];
    assert_eq!(failed["State"], "error");
    assert_eq!(
        failed["StateMessage"],
        "The volume's data could not be read."
    );
    assert!(failed.get("CompletionTime").is_none(), "{failed}");

    let filter = |name: &str, values: &[&str]| pb::Filter {
        name: name.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    assert_eq!(
        mock.snapshot_requests(),
        [SnapshotCall::Describe(pb::DescribeSnapshotsRequest {
            snapshot_ids: vec!["snap-a".into(), "snap-error".into()],
            owner_ids: vec!["self".into()],
            filters: vec![
                filter("status", &["completed", "error"]),
                filter("tag:Env", &["prod"]),
            ],
            max_results: None,
            next_token: None,
        })]
    );

    let err = expect_err(
        &endpoint,
        &["describe-snapshots", "--snapshot-ids", "snap-gone"],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidSnapshot.NotFound) when calling the DescribeSnapshots operation: The snapshot 'snap-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);

    let err = expect_err(
        "http://127.0.0.1:1",
        &["describe-snapshots", "--filters", "Name=status,Valuez=x"],
    )
    .await;
    assert_eq!(err.exit_code(), 252, "{err}");
}

#[tokio::test]
async fn describe_snapshots_as_text_and_table() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let text = ebsctl(
        &endpoint,
        &[
            "describe-snapshots",
            "--snapshot-ids",
            "snap-a",
            "--output",
            "text",
        ],
    )
    .await;
    // Columns: CompletionTime, Description, Encrypted, FullSnapshotSizeInBytes, OwnerId, Progress,
    // SnapshotId, StartTime, State, VolumeId, VolumeSize; then the nested objects, by name.
    let want = "SNAPSHOTS\t2024-05-01T12:00:05.000Z\tnightly\tFalse\t1048576\tself\t100%\tsnap-a\t2024-05-01T12:00:03.000Z\tcompleted\tvol-0123456789abcdef0\t8\n\
EBSEMU\t12\t4\n\
TAGS\tName\tdb\n";
    assert_eq!(text.ok().flatten().as_deref(), Some(want));

    let table = match ebsctl(
        &endpoint,
        &[
            "describe-snapshots",
            "--snapshot-ids",
            "snap-a",
            "--output",
            "table",
        ],
    )
    .await
    {
        Ok(Some(table)) => table,
        other => panic!("expected a table, got {other:?}"),
    };
    let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
    for want in [
        "DescribeSnapshots",
        "||  SnapshotId              |  snap-a",
        "|||  BlockCount    |  12",
        "Ebsemu",
        "Tags",
    ] {
        assert!(table.contains(want), "{want:?} not in\n{table}");
    }
}

#[tokio::test]
async fn delete_snapshot_prints_nothing() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = ebsctl(&endpoint, &["delete-snapshot", "--snapshot-id", "snap-1"]).await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    assert_eq!(
        mock.snapshot_requests(),
        [SnapshotCall::Delete(pb::DeleteSnapshotRequest {
            snapshot_id: "snap-1".into()
        })]
    );

    let err = expect_err(
        &endpoint,
        &["delete-snapshot", "--snapshot-id", "snap-gone"],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidSnapshot.NotFound) when calling the DeleteSnapshot operation: The snapshot 'snap-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);
}

#[tokio::test]
async fn copy_snapshot_sends_flags_and_prints_the_new_id() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = ebsctl(
        &endpoint,
        &[
            "copy-snapshot",
            "--source-region",
            "us-west-2",
            "--source-snapshot-id",
            "snap-1",
            "--description",
            "dr copy",
            "--destination-region",
            "us-east-1",
            "--tag-specifications",
            "ResourceType=snapshot,Tags=[{Key=Name,Value=dr}]",
            "--encrypted",
        ],
    )
    .await;
    assert_eq!(
        out.ok().flatten().as_deref(),
        Some("{\n    \"SnapshotId\": \"snap-copy\"\n}\n")
    );

    // Only the required flags: the rest is left out of the request.
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "copy-snapshot",
                "--source-region",
                "us-east-1",
                "--source-snapshot-id",
                "snap-2",
            ],
        )
        .await,
    );
    assert_eq!(reply, serde_json::json!({"SnapshotId": "snap-copy"}));

    assert_eq!(
        mock.snapshot_requests(),
        [
            SnapshotCall::Copy(pb::CopySnapshotRequest {
                source_region: "us-west-2".into(),
                source_snapshot_id: "snap-1".into(),
                description: Some("dr copy".into()),
                destination_region: Some("us-east-1".into()),
                tag_specifications: vec![pb::TagSpecification {
                    resource_type: "snapshot".into(),
                    tags: vec![pb::Tag {
                        key: "Name".into(),
                        value: "dr".into(),
                    }],
                }],
                encrypted: Some(true),
            }),
            SnapshotCall::Copy(pb::CopySnapshotRequest {
                source_region: "us-east-1".into(),
                source_snapshot_id: "snap-2".into(),
                description: None,
                destination_region: None,
                tag_specifications: vec![],
                encrypted: None,
            }),
        ]
    );

    let err = expect_err(
        &endpoint,
        &[
            "copy-snapshot",
            "--source-region",
            "us-west-2",
            "--source-snapshot-id",
            "snap-gone",
        ],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidSnapshot.NotFound) when calling the CopySnapshot operation: The snapshot 'snap-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);

    let err = expect_err(
        &endpoint,
        &[
            "copy-snapshot",
            "--source-region",
            "us-west-2",
            "--source-snapshot-id",
            "snap-1",
            "--destination-region",
            "eu-west-1",
        ],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidParameterValue) when calling the CopySnapshot operation: The destination region eu-west-1 is not this region (us-east-1)."
    );
}

#[tokio::test]
async fn create_volume_from_a_snapshot_sends_the_initialization_rate() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let volume = json(
        ebsctl(
            &endpoint,
            &[
                "create-volume",
                "--availability-zone",
                "us-east-1a",
                "--snapshot-id",
                "snap-1",
                "--volume-initialization-rate",
                "200",
            ],
        )
        .await,
    );
    assert_eq!(volume["SnapshotId"], "snap-1");
    assert_eq!(volume["InitializationProgress"], 0);

    let plain = json(
        ebsctl(
            &endpoint,
            &[
                "create-volume",
                "--availability-zone",
                "us-east-1a",
                "--size",
                "8",
            ],
        )
        .await,
    );
    assert_eq!(plain["SnapshotId"], "");
    assert!(plain.get("InitializationProgress").is_none(), "{plain}");

    let requests: Vec<(Option<i32>, Option<String>, Option<i32>)> = mock
        .snapshot_requests()
        .into_iter()
        .map(|call| match call {
            SnapshotCall::CreateVolume(r) => (r.size, r.snapshot_id, r.volume_initialization_rate),
            other => panic!("not a CreateVolume: {other:?}"),
        })
        .collect();
    assert_eq!(
        requests,
        [
            (None, Some("snap-1".into()), Some(200)),
            (Some(8), None, None)
        ]
    );

    let err = expect_err(
        &endpoint,
        &[
            "create-volume",
            "--availability-zone",
            "us-east-1a",
            "--snapshot-id",
            "snap-gone",
        ],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidSnapshot.NotFound) when calling the CreateVolume operation: The snapshot 'snap-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);
}

/// `wait snapshot-completed` for `ids`, polling without delay at most `attempts` times.
async fn wait_snapshots(
    endpoint: &str,
    ids: &[&str],
    attempts: &str,
) -> Result<Option<String>, CliError> {
    let args: Vec<&str> = ["wait", "snapshot-completed", "--snapshot-ids"]
        .into_iter()
        .chain(ids.iter().copied())
        .chain(["--delay", "0", "--max-attempts", attempts])
        .collect();
    ebsctl(endpoint, &args).await
}

#[tokio::test]
async fn wait_snapshot_completed_succeeds_once_pending_turns_completed() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = wait_snapshots(&endpoint, &["snap-pending", "snap-a"], "5").await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    // pending 0%, pending 45%, completed.
    assert_eq!(mock.pending_polls.load(Ordering::SeqCst), 3);
    let describes = mock.snapshot_requests();
    assert_eq!(describes.len(), 3);
    assert!(describes.iter().all(|call| matches!(
        call,
        SnapshotCall::Describe(r) if r.snapshot_ids == ["snap-pending", "snap-a"]
    )));

    // Already completed: one poll.
    let out = wait_snapshots(&endpoint, &["snap-a"], "1").await;
    assert!(matches!(out, Ok(None)), "{out:?}");
}

#[tokio::test]
async fn wait_snapshot_completed_sends_owners_and_filters() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = ebsctl(
        &endpoint,
        &[
            "wait",
            "snapshot-completed",
            "--owner-ids",
            "self",
            "--filters",
            "Name=volume-id,Values=vol-1",
            "--delay",
            "0",
        ],
    )
    .await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    // Every page of the listing at each attempt.
    let requests = mock.snapshot_requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(
        requests[0],
        SnapshotCall::Describe(pb::DescribeSnapshotsRequest {
            snapshot_ids: vec![],
            owner_ids: vec!["self".into()],
            filters: vec![pb::Filter {
                name: "volume-id".into(),
                values: vec!["vol-1".into()],
            }],
            max_results: None,
            next_token: None,
        })
    );
}

#[tokio::test]
async fn wait_snapshot_completed_fails_on_error_not_found_and_timeout() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let err = match wait_snapshots(&endpoint, &["snap-a", "snap-error"], "5").await {
        Err(e) => e,
        Ok(out) => panic!("expected a failure, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        "Waiter SnapshotCompleted failed: Waiter encountered a terminal failure state: For expression \"Snapshots[].State\" we matched expected path: \"error\" at least once"
    );
    assert_eq!(err.exit_code(), 255);
    // A terminal state ends the wait at once.
    assert_eq!(mock.snapshot_requests().len(), 1);

    let err = match wait_snapshots(&endpoint, &["snap-gone"], "5").await {
        Err(e) => e,
        Ok(out) => panic!("expected a failure, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        "Waiter SnapshotCompleted failed: An error occurred (InvalidSnapshot.NotFound): The snapshot 'snap-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 255);

    let err = match wait_snapshots(&endpoint, &["snap-pending"], "2").await {
        Err(e) => e,
        Ok(out) => panic!("expected a timeout, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        "Waiter SnapshotCompleted failed: Max attempts exceeded"
    );
}

#[tokio::test]
async fn wait_snapshot_completed_draws_progress_when_asked() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let request = pb::DescribeSnapshotsRequest {
        snapshot_ids: vec!["snap-pending".into()],
        ..pb::DescribeSnapshotsRequest::default()
    };
    let mut bar = Vec::new();
    let result = waiter::wait(
        &mut Api::new(endpoint.clone()),
        Kind::SnapshotCompleted,
        Describe::Snapshots(request),
        Duration::ZERO,
        5,
        Some(&mut bar),
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        String::from_utf8_lossy(&bar),
        "\rsnap-pending [--------------------]   0%\
         \rsnap-pending [#########-----------]  45%\
         \rsnap-pending [####################] 100%\n"
    );

    // A failed wait ends the bar's line too, before the error is printed.
    let request = pb::DescribeSnapshotsRequest {
        snapshot_ids: vec!["snap-error".into()],
        ..pb::DescribeSnapshotsRequest::default()
    };
    let mut bar = Vec::new();
    let result = waiter::wait(
        &mut Api::new(endpoint),
        Kind::SnapshotCompleted,
        Describe::Snapshots(request),
        Duration::ZERO,
        5,
        Some(&mut bar),
    )
    .await;
    assert!(result.is_err());
    assert_eq!(
        String::from_utf8_lossy(&bar),
        "\rsnap-error [########------------]  40%\n"
    );
}

/// The `(SnapshotId, AvailabilityZone, State)` of each element of `list`.
fn fsr_pairs_of(list: &serde_json::Value) -> Vec<(&str, &str, &str)> {
    list.as_array()
        .map(|v| {
            v.iter()
                .map(|f| {
                    (
                        f["SnapshotId"].as_str().unwrap_or_default(),
                        f["AvailabilityZone"].as_str().unwrap_or_default(),
                        f["State"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn enable_fast_snapshot_restores_groups_the_failures_by_snapshot() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "enable-fast-snapshot-restores",
                "--availability-zones",
                "us-east-1a",
                "us-east-1z",
                "--source-snapshot-ids",
                "snap-1",
                "snap-gone",
                "snap-pending",
            ],
        )
        .await,
    );
    // The mock answers zone by zone: the failures of one snapshot are apart in its reply.
    let error = |az: &str, code: &str, message: &str| {
        serde_json::json!({
            "AvailabilityZone": az,
            "Error": {"Code": code, "Message": message},
        })
    };
    let bad_zone = "Invalid availability zone: [us-east-1z]";
    let want = serde_json::json!({
        "Successful": [{
            "SnapshotId": "snap-1",
            "AvailabilityZone": "us-east-1a",
            "State": "enabling",
            "StateTransitionReason": "Client.UserInitiated",
            "OwnerId": "000000000000",
            "EnablingTime": "2024-05-01T12:00:06.000Z",
        }],
        "Unsuccessful": [
            {
                "SnapshotId": "snap-gone",
                "FastSnapshotRestoreStateErrors": [
                    error(
                        "us-east-1a",
                        "InvalidSnapshot.NotFound",
                        "The snapshot 'snap-gone' does not exist.",
                    ),
                    error("us-east-1z", "InvalidParameterValue", bad_zone),
                ],
            },
            {
                "SnapshotId": "snap-pending",
                "FastSnapshotRestoreStateErrors": [
                    error(
                        "us-east-1a",
                        "IncorrectState",
                        "Snapshot snap-pending is not completed.",
                    ),
                    error("us-east-1z", "InvalidParameterValue", bad_zone),
                ],
            },
            {
                "SnapshotId": "snap-1",
                "FastSnapshotRestoreStateErrors": [
                    error("us-east-1z", "InvalidParameterValue", bad_zone),
                ],
            },
        ],
    });
    assert_eq!(reply, want);

    // Every pair succeeds: Unsuccessful is an empty list, as in EC2's reply.
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "enable-fast-snapshot-restores",
                "--availability-zones",
                "us-east-1a",
                "us-east-1b",
                "--source-snapshot-ids",
                "snap-1",
            ],
        )
        .await,
    );
    assert_eq!(
        fsr_pairs_of(&reply["Successful"]),
        [
            ("snap-1", "us-east-1a", "enabling"),
            ("snap-1", "us-east-1b", "enabling"),
        ]
    );
    assert_eq!(reply["Unsuccessful"], serde_json::json!([]));

    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        mock.fsr_requests(),
        [
            FsrCall::Enable(pb::EnableFastSnapshotRestoresRequest {
                availability_zones: strings(&["us-east-1a", "us-east-1z"]),
                source_snapshot_ids: strings(&["snap-1", "snap-gone", "snap-pending"]),
            }),
            FsrCall::Enable(pb::EnableFastSnapshotRestoresRequest {
                availability_zones: strings(&["us-east-1a", "us-east-1b"]),
                source_snapshot_ids: strings(&["snap-1"]),
            }),
        ]
    );
}

#[tokio::test]
async fn disable_fast_snapshot_restores_prints_the_disabling_pairs() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = ebsctl(
        &endpoint,
        &[
            "disable-fast-snapshot-restores",
            "--availability-zones",
            "us-east-1a",
            "--source-snapshot-ids",
            "snap-1",
            "snap-gone",
        ],
    )
    .await;
    let want = r#"{
    "Successful": [
        {
            "SnapshotId": "snap-1",
            "AvailabilityZone": "us-east-1a",
            "State": "disabling",
            "StateTransitionReason": "Client.UserInitiated - Lifecycle state transition",
            "OwnerId": "000000000000",
            "EnablingTime": "2024-05-01T12:00:06.000Z",
            "OptimizingTime": "2024-05-01T12:00:06.000Z",
            "EnabledTime": "2024-05-01T12:01:06.000Z",
            "DisablingTime": "2024-05-01T12:02:00.000Z"
        }
    ],
    "Unsuccessful": [
        {
            "SnapshotId": "snap-gone",
            "FastSnapshotRestoreStateErrors": [
                {
                    "AvailabilityZone": "us-east-1a",
                    "Error": {
                        "Code": "InvalidSnapshot.NotFound",
                        "Message": "The snapshot 'snap-gone' does not exist."
                    }
                }
            ]
        }
    ]
}
"#;
    assert_eq!(out.ok().flatten().as_deref(), Some(want));
    assert_eq!(
        mock.fsr_requests(),
        [FsrCall::Disable(pb::DisableFastSnapshotRestoresRequest {
            availability_zones: vec!["us-east-1a".into()],
            source_snapshot_ids: vec!["snap-1".into(), "snap-gone".into()],
        })]
    );
}

#[tokio::test]
async fn fast_snapshot_restores_as_text_and_table() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let args = |output: &'static str| {
        [
            "disable-fast-snapshot-restores",
            "--availability-zones",
            "us-east-1a",
            "us-east-1z",
            "--source-snapshot-ids",
            "snap-gone",
            "--output",
            output,
        ]
    };
    let text = ebsctl(&endpoint, &args("text")).await;
    // Each snapshot's line, then its zones' lines, each followed by its error.
    let want = "UNSUCCESSFUL\tsnap-gone\n\
FASTSNAPSHOTRESTORESTATEERRORS\tus-east-1a\n\
ERROR\tInvalidSnapshot.NotFound\tThe snapshot 'snap-gone' does not exist.\n\
FASTSNAPSHOTRESTORESTATEERRORS\tus-east-1z\n\
ERROR\tInvalidParameterValue\tInvalid availability zone: [us-east-1z]\n";
    assert_eq!(text.ok().flatten().as_deref(), Some(want));

    let text = ebsctl(
        &endpoint,
        &[
            "describe-fast-snapshot-restores",
            "--max-results",
            "1",
            "--output",
            "text",
        ],
    )
    .await;
    // The NextToken first; then columns AvailabilityZone, EnabledTime, EnablingTime,
    // OptimizingTime, OwnerId, SnapshotId, State, StateTransitionReason.
    let want = "1\n\
FASTSNAPSHOTRESTORES\tus-east-1a\t2024-05-01T12:01:06.000Z\t2024-05-01T12:00:06.000Z\t2024-05-01T12:00:06.000Z\t000000000000\tsnap-0\tenabled\tClient.UserInitiated\n";
    assert_eq!(text.ok().flatten().as_deref(), Some(want));

    let table = match ebsctl(&endpoint, &args("table")).await {
        Ok(Some(table)) => table,
        other => panic!("expected a table, got {other:?}"),
    };
    let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
    for want in [
        "DisableFastSnapshotRestores",
        "Unsuccessful",
        "FastSnapshotRestoreStateErrors",
        "|||  AvailabilityZone |  us-east-1a",
        "||||  Code    |  InvalidSnapshot.NotFound",
    ] {
        assert!(table.contains(want), "{want:?} not in\n{table}");
    }
}

#[tokio::test]
async fn describe_fast_snapshot_restores_follows_next_token_unless_paging_is_asked_for() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let all = json(ebsctl(&endpoint, &["describe-fast-snapshot-restores"]).await);
    assert_eq!(
        fsr_pairs_of(&all["FastSnapshotRestores"]),
        [
            ("snap-0", "us-east-1a", "enabled"),
            ("snap-0", "us-east-1b", "enabled"),
            ("snap-1", "us-east-1a", "optimizing"),
            ("snap-1", "us-east-1b", "disabled"),
            ("snap-2", "us-east-1a", "enabled"),
        ]
    );
    assert!(all.get("NextToken").is_none(), "{all}");
    let tokens: Vec<Option<String>> = mock
        .fsr_requests()
        .into_iter()
        .map(|call| match call {
            FsrCall::Describe(r) => r.next_token,
            other => panic!("not a DescribeFastSnapshotRestores: {other:?}"),
        })
        .collect();
    assert_eq!(tokens, [None, Some("2".into()), Some("4".into())]);

    // Times a pair has not reached are left out.
    let optimizing = &all["FastSnapshotRestores"][2];
    assert_eq!(optimizing["OptimizingTime"], "2024-05-01T12:00:06.000Z");
    for absent in ["EnabledTime", "DisablingTime", "DisabledTime"] {
        assert!(optimizing.get(absent).is_none(), "{absent} in {optimizing}");
    }
    let disabled = &all["FastSnapshotRestores"][3];
    assert_eq!(disabled["DisabledTime"], "2024-05-01T12:02:01.000Z");

    let page = json(
        ebsctl(
            &endpoint,
            &["describe-fast-snapshot-restores", "--max-results", "2"],
        )
        .await,
    );
    assert_eq!(
        fsr_pairs_of(&page["FastSnapshotRestores"]),
        [
            ("snap-0", "us-east-1a", "enabled"),
            ("snap-0", "us-east-1b", "enabled"),
        ]
    );
    assert_eq!(page["NextToken"], "2");

    // --next-token alone also prints one page: the last one has no NextToken.
    let last = json(
        ebsctl(
            &endpoint,
            &["describe-fast-snapshot-restores", "--next-token", "4"],
        )
        .await,
    );
    assert_eq!(
        fsr_pairs_of(&last["FastSnapshotRestores"]),
        [("snap-2", "us-east-1a", "enabled")]
    );
    assert!(last.get("NextToken").is_none(), "{last}");
}

#[tokio::test]
async fn describe_fast_snapshot_restores_sends_filters_and_prints_errors() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "describe-fast-snapshot-restores",
                "--filters",
                "Name=state,Values=optimizing,disabled",
                r#"{"Name": "owner-id", "Values": ["self"]}"#,
                "--max-results",
                "10",
            ],
        )
        .await,
    );
    assert_eq!(
        fsr_pairs_of(&reply["FastSnapshotRestores"]),
        [
            ("snap-1", "us-east-1a", "optimizing"),
            ("snap-1", "us-east-1b", "disabled"),
        ]
    );
    let filter = |name: &str, values: &[&str]| pb::Filter {
        name: name.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    assert_eq!(
        mock.fsr_requests(),
        [FsrCall::Describe(pb::DescribeFastSnapshotRestoresRequest {
            filters: vec![
                filter("state", &["optimizing", "disabled"]),
                filter("owner-id", &["self"]),
            ],
            max_results: Some(10),
            next_token: None,
        })]
    );

    let err = expect_err(
        &endpoint,
        &[
            "describe-fast-snapshot-restores",
            "--filters",
            "Name=volume-id,Values=vol-1",
        ],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidParameterValue) when calling the DescribeFastSnapshotRestores operation: The filter 'volume-id' is invalid"
    );
    assert_eq!(err.exit_code(), 254);

    // A malformed filter is a usage error, found before connecting.
    let err = expect_err(
        "http://127.0.0.1:1",
        &[
            "describe-fast-snapshot-restores",
            "--filters",
            "Name=state,Valuez=x",
        ],
    )
    .await;
    assert_eq!(err.exit_code(), 252, "{err}");
}

#[tokio::test]
async fn enable_fast_snapshot_restores_with_only_failed_pairs_is_not_an_error() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let out = ebsctl(
        &endpoint,
        &[
            "enable-fast-snapshot-restores",
            "--availability-zones",
            "us-east-1z",
            "--source-snapshot-ids",
            "snap-1",
        ],
    )
    .await;
    // Every pair failed: still a reply (exit 0), as EC2 answers and the AWS CLI prints it.
    let reply = json(out);
    assert_eq!(reply["Successful"], serde_json::json!([]));
    assert_eq!(
        reply["Unsuccessful"][0]["FastSnapshotRestoreStateErrors"][0]["Error"]["Code"],
        "InvalidParameterValue"
    );
}

#[tokio::test]
async fn a_volume_restored_with_fast_snapshot_restore_is_fast_restored() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let create = |snapshot_id: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            json(
                ebsctl(
                    &endpoint,
                    &[
                        "create-volume",
                        "--availability-zone",
                        "us-east-1a",
                        "--snapshot-id",
                        snapshot_id,
                    ],
                )
                .await,
            )
        }
    };
    let fast = create("snap-fast").await;
    assert_eq!(fast["FastRestored"], true);
    assert_eq!(fast["InitializationProgress"], 100);
    let slow = create("snap-1").await;
    assert_eq!(slow["FastRestored"], false);
    assert_eq!(slow["InitializationProgress"], 0);
}

/// The `InstanceType`s of a describe-instance-types reply.
fn instance_type_names(reply: &serde_json::Value) -> Vec<&str> {
    reply["InstanceTypes"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|t| t["InstanceType"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn describe_instance_types_follows_next_token_unless_paging_is_asked_for() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let all = json(ebsctl(&endpoint, &["describe-instance-types"]).await);
    assert_eq!(
        instance_type_names(&all),
        [
            "m5.large",
            "m5d.large",
            "m5d.metal",
            "p3.8xlarge",
            "t3.micro"
        ]
    );
    assert!(all.get("NextToken").is_none(), "{all}");
    let tokens: Vec<Option<String>> = mock
        .instance_type_requests()
        .into_iter()
        .map(|r| r.next_token)
        .collect();
    assert_eq!(tokens, [None, Some("2".into()), Some("4".into())]);

    let page = json(
        ebsctl(
            &endpoint,
            &["describe-instance-types", "--max-results", "2"],
        )
        .await,
    );
    assert_eq!(instance_type_names(&page), ["m5.large", "m5d.large"]);
    assert_eq!(page["NextToken"], "2");

    // --next-token alone also prints one page: the last one has no NextToken.
    let last = json(ebsctl(&endpoint, &["describe-instance-types", "--next-token", "4"]).await);
    assert_eq!(instance_type_names(&last), ["t3.micro"]);
    assert!(last.get("NextToken").is_none(), "{last}");
    assert_eq!(
        last["InstanceTypes"][0]["BurstablePerformanceSupported"],
        true
    );
}

#[tokio::test]
async fn describe_instance_types_sends_types_and_filters_and_prints_aws_shapes() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "describe-instance-types",
                "--instance-types",
                "m5d.large",
                "p3.8xlarge",
                "m5d.metal",
                "--filters",
                "Name=instance-type,Values=m5d.*,p3.*",
            ],
        )
        .await,
    );
    // Three matches, two per page: the second call asks for the page after "2".
    let requests = mock.instance_type_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0],
        pb::DescribeInstanceTypesRequest {
            instance_types: vec!["m5d.large".into(), "p3.8xlarge".into(), "m5d.metal".into()],
            filters: vec![pb::Filter {
                name: "instance-type".into(),
                values: vec!["m5d.*".into(), "p3.*".into()],
            }],
            max_results: None,
            next_token: None,
        }
    );
    assert_eq!(requests[1].next_token.as_deref(), Some("2"));
    assert_eq!(
        instance_type_names(&reply),
        ["m5d.large", "m5d.metal", "p3.8xlarge"]
    );

    let m5d = &reply["InstanceTypes"][0];
    assert_eq!(m5d["VCpuInfo"]["DefaultVCpus"], 2);
    assert_eq!(m5d["MemoryInfo"]["SizeInMiB"], 8192);
    assert_eq!(
        m5d["InstanceStorageInfo"],
        serde_json::json!({
            "TotalSizeInGB": 75,
            "Disks": [{"SizeInGB": 75, "Count": 1, "Type": "ssd"}],
            "NvmeSupport": "required"
        })
    );
    assert_eq!(m5d["EbsInfo"]["EbsOptimizedSupport"], "default");
    assert_eq!(m5d["EbsInfo"]["EbsOptimizedInfo"]["MaximumIops"], 18750);
    assert_eq!(
        m5d["EbsInfo"]["EbsOptimizedInfo"]["MaximumThroughputInMBps"],
        593.75
    );
    assert_eq!(
        m5d["ProcessorInfo"]["SupportedArchitectures"],
        serde_json::json!(["x86_64"])
    );
    assert_eq!(m5d["NetworkInfo"]["NetworkPerformance"], "Up to 10 Gigabit");
    assert_eq!(m5d["Hypervisor"], "nitro");
    assert!(m5d.get("GpuInfo").is_none(), "{m5d}");

    let metal = &reply["InstanceTypes"][1];
    assert!(metal.get("Hypervisor").is_none(), "{metal}");

    let p3 = &reply["InstanceTypes"][2];
    assert_eq!(p3["InstanceStorageSupported"], false);
    assert!(p3.get("InstanceStorageInfo").is_none(), "{p3}");
    assert_eq!(p3["GpuInfo"]["Gpus"][0]["Name"], "V100");
    assert_eq!(p3["GpuInfo"]["TotalGpuMemoryInMiB"], 65536);
    assert_eq!(p3["Hypervisor"], "xen");
}

#[tokio::test]
async fn describe_instance_types_errors() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let err = expect_err(
        &endpoint,
        &["describe-instance-types", "--instance-types", "m5.huge"],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidInstanceType) when calling the DescribeInstanceTypes operation: The following supplied instance types do not exist: [m5.huge]"
    );
    assert_eq!(err.exit_code(), 254);

    let err = expect_err(
        &endpoint,
        &[
            "describe-instance-types",
            "--filters",
            "Name=vcpus,Values=2",
        ],
    )
    .await;
    assert!(err.to_string().contains("(InvalidParameterValue)"), "{err}");

    let err = expect_err(
        "http://127.0.0.1:1",
        &[
            "describe-instance-types",
            "--filters",
            "Name=instance-type,Valuez=x",
        ],
    )
    .await;
    assert_eq!(err.exit_code(), 252, "{err}");
}

#[tokio::test]
async fn describe_instance_types_as_text() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let text = match ebsctl(
        &endpoint,
        &[
            "describe-instance-types",
            "--instance-types",
            "m5d.large",
            "--output",
            "text",
        ],
    )
    .await
    {
        Ok(Some(text)) => text,
        other => panic!("expected text, got {other:?}"),
    };
    // Columns: BurstablePerformanceSupported, CurrentGeneration, Hypervisor,
    // InstanceStorageSupported, InstanceType; then the nested objects, by name.
    assert!(
        text.starts_with("INSTANCETYPES\tFalse\tTrue\tnitro\tTrue\tm5d.large\n"),
        "{text}"
    );
    assert!(text.contains("DISKS\t1\t75\tssd\n"), "{text}");
}

/// The brief's mappings as JSON: an EBS root with every member, an instance store volume and a
/// suppressed device.
const MAPPINGS_JSON: &str = r#"[{"DeviceName":"/dev/xvda","Ebs":{"SnapshotId":"snap-0123456789abcdef0","VolumeSize":8,"VolumeType":"gp3","Iops":3000,"Throughput":125,"DeleteOnTermination":true}},{"DeviceName":"/dev/sdb","VirtualName":"ephemeral0"},{"DeviceName":"/dev/sdc","NoDevice":""}]"#;

/// [`MAPPINGS_JSON`] in shorthand, one mapping per value.
const MAPPINGS_SHORTHAND: [&str; 3] = [
    "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-0123456789abcdef0,VolumeSize=8,VolumeType=gp3,Iops=3000,Throughput=125,DeleteOnTermination=true}",
    "DeviceName=/dev/sdb,VirtualName=ephemeral0",
    "DeviceName=/dev/sdc,NoDevice=",
];

/// What both [`MAPPINGS_JSON`] and [`MAPPINGS_SHORTHAND`] must be sent as.
fn sent_mappings() -> Vec<pb::BlockDeviceMapping> {
    vec![
        pb::BlockDeviceMapping {
            device_name: "/dev/xvda".into(),
            ebs: Some(pb::EbsBlockDevice {
                snapshot_id: Some("snap-0123456789abcdef0".into()),
                volume_size: Some(8),
                volume_type: Some("gp3".into()),
                iops: Some(3000),
                throughput: Some(125),
                delete_on_termination: Some(true),
                encrypted: None,
            }),
            virtual_name: None,
            no_device: None,
        },
        pb::BlockDeviceMapping {
            device_name: "/dev/sdb".into(),
            ebs: None,
            virtual_name: Some("ephemeral0".into()),
            no_device: None,
        },
        pb::BlockDeviceMapping {
            device_name: "/dev/sdc".into(),
            ebs: None,
            virtual_name: None,
            no_device: Some(String::new()),
        },
    ]
}

/// `register-image --name NAME` of a root from a snapshot, plus `extra` flags; its ImageId.
async fn register_image(endpoint: &str, name: &str, extra: &[&str]) -> String {
    let args: Vec<&str> = [
        "register-image",
        "--name",
        name,
        "--root-device-name",
        "/dev/xvda",
        "--block-device-mappings",
        "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-0123456789abcdef0}",
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .collect();
    let reply = json(ebsctl(endpoint, &args).await);
    match reply["ImageId"].as_str() {
        Some(id) => id.to_owned(),
        None => panic!("no ImageId in {reply}"),
    }
}

/// The `ImageId`s of a describe-images reply.
fn image_ids(reply: &serde_json::Value) -> Vec<&str> {
    reply["Images"]
        .as_array()
        .map(|v| v.iter().filter_map(|i| i["ImageId"].as_str()).collect())
        .unwrap_or_default()
}

/// The mock's `n`th (from 1) AMI ID.
fn ami(n: u32) -> String {
    format!("ami-{n:017x}")
}

#[tokio::test]
async fn register_image_sends_json_and_shorthand_mappings_alike_and_prints_the_image_id() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let out = ebsctl(
        &endpoint,
        &[
            "register-image",
            "--name",
            "web-1",
            "--root-device-name",
            "/dev/xvda",
            "--block-device-mappings",
            MAPPINGS_JSON,
            "--description",
            "web server",
            "--architecture",
            "arm64",
            "--virtualization-type",
            "hvm",
            "--tag-specifications",
            "ResourceType=image,Tags=[{Key=Name,Value=web}]",
        ],
    )
    .await;
    // Exactly EC2's reply: the ID and nothing else.
    let want = format!("{{\n    \"ImageId\": \"{}\"\n}}\n", ami(1));
    assert_eq!(out.ok().flatten(), Some(want));

    let shorthand: Vec<&str> = [
        "register-image",
        "--name",
        "web-2",
        "--root-device-name",
        "/dev/xvda",
        "--block-device-mappings",
    ]
    .into_iter()
    .chain(MAPPINGS_SHORTHAND)
    .collect();
    let reply = json(ebsctl(&endpoint, &shorthand).await);
    assert_eq!(reply["ImageId"], ami(2));

    let tag = pb::Tag {
        key: "Name".into(),
        value: "web".into(),
    };
    assert_eq!(
        mock.image_requests(),
        [
            ImageCall::Register(pb::RegisterImageRequest {
                name: "web-1".into(),
                description: Some("web server".into()),
                root_device_name: "/dev/xvda".into(),
                block_device_mappings: sent_mappings(),
                architecture: Some("arm64".into()),
                virtualization_type: Some("hvm".into()),
                tag_specifications: vec![pb::TagSpecification {
                    resource_type: "image".into(),
                    tags: vec![tag],
                }],
            }),
            // Absent flags are left unset: the server applies its defaults.
            ImageCall::Register(pb::RegisterImageRequest {
                name: "web-2".into(),
                description: None,
                root_device_name: "/dev/xvda".into(),
                block_device_mappings: sent_mappings(),
                architecture: None,
                virtualization_type: None,
                tag_specifications: vec![],
            }),
        ]
    );

    let text = ebsctl(
        &endpoint,
        &[
            "register-image",
            "--name",
            "web-3",
            "--root-device-name",
            "/dev/xvda",
            "--block-device-mappings",
            MAPPINGS_JSON,
            "--output",
            "text",
        ],
    )
    .await;
    assert_eq!(text.ok().flatten(), Some(format!("{}\n", ami(3))));
}

#[tokio::test]
async fn describe_images_prints_the_aws_shape() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let tagged = register_image(
        &endpoint,
        "web-1",
        &[
            "--description",
            "web server",
            "--tag-specifications",
            "ResourceType=image,Tags=[{Key=Name,Value=web}]",
        ],
    )
    .await;
    let mut shorthand = vec![
        "register-image",
        "--name",
        "web-2",
        "--root-device-name",
        "/dev/xvda",
        "--architecture",
        "arm64",
        "--block-device-mappings",
    ];
    shorthand.extend(MAPPINGS_SHORTHAND);
    let bare = json(ebsctl(&endpoint, &shorthand).await);

    let reply = json(ebsctl(&endpoint, &["describe-images"]).await);
    let keys: Vec<&str> = reply
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["Images"], "no NextToken after every page: {reply}");
    assert_eq!(image_ids(&reply), [tagged.as_str(), ami(2).as_str()]);
    assert_eq!(bare["ImageId"], ami(2));

    // In the order the shapes test pins, as printed (serde_json::Value does not keep it).
    let raw = match ebsctl(&endpoint, &["describe-images", "--image-ids", &tagged]).await {
        Ok(Some(raw)) => raw,
        other => panic!("expected output, got {other:?}"),
    };
    let positions: Vec<Option<usize>> = [
        "ImageId",
        "Name",
        "Description",
        "State",
        "CreationDate",
        "RootDeviceName",
        "RootDeviceType",
        "Architecture",
        "VirtualizationType",
        "BlockDeviceMappings",
        "OwnerId",
        "Public",
        "ImageType",
        "Tags",
    ]
    .iter()
    .map(|field| raw.find(&format!("\"{field}\": ")))
    .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.windows(2).all(|w| w[0] < w[1]),
        "{positions:?} in\n{raw}"
    );

    let first = &reply["Images"][0];
    assert_eq!(
        first.as_object().map(serde_json::Map::len),
        Some(14),
        "{first}"
    );
    assert_eq!(first["Name"], "web-1");
    assert_eq!(first["Description"], "web server");
    assert_eq!(first["State"], "available");
    assert_eq!(first["CreationDate"], "2024-05-01T12:00:07.000Z");
    assert_eq!(first["RootDeviceName"], "/dev/xvda");
    assert_eq!(first["RootDeviceType"], "ebs");
    assert_eq!(first["Architecture"], "x86_64");
    assert_eq!(first["VirtualizationType"], "hvm");
    assert_eq!(first["OwnerId"], "000000000000");
    assert_eq!(first["Public"], false);
    assert_eq!(first["ImageType"], "machine");
    assert_eq!(
        first["Tags"],
        serde_json::json!([{"Key": "Name", "Value": "web"}])
    );
    // The server's defaults show; what was not given stays out.
    assert_eq!(
        first["BlockDeviceMappings"],
        serde_json::json!([{
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "SnapshotId": "snap-0123456789abcdef0",
                "DeleteOnTermination": true,
                "Encrypted": false
            }
        }])
    );

    let second = &reply["Images"][1];
    assert_eq!(second["Architecture"], "arm64");
    for absent in ["Description", "Tags"] {
        assert!(second.get(absent).is_none(), "{absent} in {second}");
    }
    assert_eq!(
        second["BlockDeviceMappings"],
        serde_json::json!([
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {
                    "SnapshotId": "snap-0123456789abcdef0",
                    "VolumeSize": 8,
                    "VolumeType": "gp3",
                    "Iops": 3000,
                    "Throughput": 125,
                    "DeleteOnTermination": true,
                    "Encrypted": false
                }
            },
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/sdc", "NoDevice": ""}
        ])
    );
}

#[tokio::test]
async fn describe_images_follows_next_token_unless_paging_is_asked_for() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    for n in 1..=6 {
        register_image(&endpoint, &format!("web-{n}"), &[]).await;
    }
    let ids: Vec<String> = (1..=6).map(ami).collect();

    let all = json(ebsctl(&endpoint, &["describe-images"]).await);
    assert_eq!(image_ids(&all), ids);
    assert!(all.get("NextToken").is_none(), "{all}");
    let tokens: Vec<Option<String>> = mock
        .image_requests()
        .into_iter()
        .filter_map(|call| match call {
            ImageCall::Describe(r) => Some(r.next_token),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, [None, Some(ami(2)), Some(ami(4))]);

    let page = json(ebsctl(&endpoint, &["describe-images", "--max-results", "5"]).await);
    assert_eq!(image_ids(&page), ids[..5]);
    assert_eq!(page["NextToken"], ami(5));

    // --next-token alone also prints one page (the mock's two): the last one has no NextToken.
    let next = ami(4);
    let last = json(ebsctl(&endpoint, &["describe-images", "--next-token", &next]).await);
    assert_eq!(image_ids(&last), ids[4..]);
    assert!(last.get("NextToken").is_none(), "{last}");
}

#[tokio::test]
async fn describe_images_sends_ids_owners_and_filters() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let web = register_image(
        &endpoint,
        "web-1",
        &[
            "--tag-specifications",
            "ResourceType=image,Tags=[{Key=Env,Value=prod}]",
        ],
    )
    .await;
    let db = register_image(&endpoint, "db-1", &["--architecture", "arm64"]).await;

    let reply = json(
        ebsctl(
            &endpoint,
            &[
                "describe-images",
                "--image-ids",
                &db,
                &web,
                "--owners",
                "self",
                "--filters",
                "Name=name,Values=web-*,db-*",
                r#"{"Name": "state", "Values": ["available"]}"#,
            ],
        )
        .await,
    );
    // By ID: in the order asked for.
    assert_eq!(image_ids(&reply), [db.as_str(), web.as_str()]);
    let filter = |name: &str, values: &[&str]| pb::Filter {
        name: name.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let describes: Vec<ImageCall> = mock
        .image_requests()
        .into_iter()
        .filter(|c| matches!(c, ImageCall::Describe(_)))
        .collect();
    assert_eq!(
        describes,
        [ImageCall::Describe(pb::DescribeImagesRequest {
            image_ids: vec![db.clone(), web.clone()],
            owners: vec!["self".into()],
            filters: vec![
                filter("name", &["web-*", "db-*"]),
                filter("state", &["available"]),
            ],
            max_results: None,
            next_token: None,
        })]
    );

    let arm = json(
        ebsctl(
            &endpoint,
            &[
                "describe-images",
                "--filters",
                "Name=architecture,Values=arm64",
            ],
        )
        .await,
    );
    assert_eq!(image_ids(&arm), [db.as_str()]);
    let prod = json(
        ebsctl(
            &endpoint,
            &["describe-images", "--filters", "Name=tag:Env,Values=prod"],
        )
        .await,
    );
    assert_eq!(image_ids(&prod), [web.as_str()]);
    // Nobody else owns an AMI here.
    let amazon = json(ebsctl(&endpoint, &["describe-images", "--owners", "amazon"]).await);
    assert_eq!(amazon, serde_json::json!({"Images": []}));
}

#[tokio::test]
async fn image_errors_carry_the_ec2_code_and_exit_254() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let gone = "ami-0123456789abcdef0";

    let err = expect_err(&endpoint, &["describe-images", "--image-ids", gone]).await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidAMIID.NotFound) when calling the DescribeImages operation: The image id '[ami-0123456789abcdef0]' does not exist"
    );
    assert_eq!(err.exit_code(), 254);

    let err = expect_err(&endpoint, &["deregister-image", "--image-id", gone]).await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidAMIID.NotFound) when calling the DeregisterImage operation: The image id '[ami-0123456789abcdef0]' does not exist"
    );
    assert_eq!(err.exit_code(), 254);

    let err = expect_err(&endpoint, &["deregister-image", "--image-id", "snap-1"]).await;
    assert!(
        err.to_string().contains("(InvalidAMIID.Malformed)"),
        "{err}"
    );

    let register = |name: &'static str, mapping: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let args = [
                "register-image",
                "--name",
                name,
                "--root-device-name",
                "/dev/xvda",
                "--block-device-mappings",
                mapping,
            ];
            expect_err(&endpoint, &args).await
        }
    };
    let err = register("web-1", "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-gone}").await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidSnapshot.NotFound) when calling the RegisterImage operation: The snapshot 'snap-gone' does not exist."
    );
    assert_eq!(err.exit_code(), 254);
    let err = register("web-1", "DeviceName=/dev/sdf,Ebs={SnapshotId=snap-1}").await;
    assert!(err.to_string().contains("(InvalidParameterValue)"), "{err}");
    let err = register(
        "web-1",
        "DeviceName=/dev/xvda,VirtualName=ephemeral0,Ebs={SnapshotId=snap-1}",
    )
    .await;
    assert!(
        err.to_string().contains("(InvalidBlockDeviceMapping)"),
        "{err}"
    );

    register_image(&endpoint, "web-1", &[]).await;
    let err = register("web-1", "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1}").await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidAMIName.Duplicate) when calling the RegisterImage operation: AMI name web-1 is already in use by an AMI"
    );

    let err = expect_err(&endpoint, &["describe-images", "--max-results", "2"]).await;
    assert!(err.to_string().contains("(InvalidParameterValue)"), "{err}");
    let err = expect_err(
        &endpoint,
        &[
            "describe-images",
            "--image-ids",
            &ami(1),
            "--max-results",
            "5",
        ],
    )
    .await;
    assert!(
        err.to_string().contains("(InvalidParameterCombination)"),
        "{err}"
    );
    let err = expect_err(
        &endpoint,
        &["describe-images", "--filters", "Name=kernel-id,Values=k"],
    )
    .await;
    assert!(err.to_string().contains("(InvalidParameterValue)"), "{err}");
}

#[tokio::test]
async fn block_device_mapping_errors_come_before_connecting() {
    for mapping in [
        "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1",
        "DeviceName=/dev/xvda,Ebs={VolumeSize=eight}",
        r#"[{"DeviceName": "/dev/xvda", "Ebs": {"KmsKeyId": "k"}}]"#,
        r#"[{"DeviceName": "/dev/xvda""#,
    ] {
        let err = expect_err(
            "http://127.0.0.1:1",
            &[
                "register-image",
                "--name",
                "web-1",
                "--root-device-name",
                "/dev/xvda",
                "--block-device-mappings",
                mapping,
            ],
        )
        .await;
        assert_eq!(err.exit_code(), 252, "{mapping}: {err}");
        assert!(
            err.to_string()
                .starts_with("Error parsing parameter '--block-device-mappings': "),
            "{err}"
        );
    }
}

#[tokio::test]
async fn deregister_image_prints_nothing_and_the_image_is_gone() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let web = register_image(&endpoint, "web-1", &[]).await;
    let db = register_image(&endpoint, "db-1", &[]).await;

    let out = ebsctl(&endpoint, &["deregister-image", "--image-id", &web]).await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    assert!(
        mock.image_requests()
            .contains(&ImageCall::Deregister(pb::DeregisterImageRequest {
                image_id: web.clone()
            }))
    );

    let left = json(ebsctl(&endpoint, &["describe-images"]).await);
    assert_eq!(image_ids(&left), [db.as_str()]);
    let err = expect_err(&endpoint, &["describe-images", "--image-ids", &web]).await;
    assert!(err.to_string().contains("(InvalidAMIID.NotFound)"), "{err}");
    // Its name is free again.
    let again = register_image(&endpoint, "web-1", &[]).await;
    assert_eq!(again, ami(3));
}

#[tokio::test]
async fn describe_images_as_text_and_table() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let mut args = vec![
        "register-image",
        "--name",
        "web-1",
        "--root-device-name",
        "/dev/xvda",
        "--description",
        "web server",
        "--tag-specifications",
        "ResourceType=image,Tags=[{Key=Name,Value=web}]",
        "--block-device-mappings",
    ];
    args.extend(MAPPINGS_SHORTHAND);
    json(ebsctl(&endpoint, &args).await);

    let text = ebsctl(&endpoint, &["describe-images", "--output", "text"]).await;
    // Columns: Architecture, CreationDate, Description, ImageId, ImageType, Name, OwnerId, Public,
    // RootDeviceName, RootDeviceType, State, VirtualizationType; each mapping's DeviceName,
    // NoDevice, VirtualName, then its Ebs; then the tags.
    let want = format!(
        "IMAGES\tx86_64\t2024-05-01T12:00:07.000Z\tweb server\t{}\tmachine\tweb-1\t000000000000\tFalse\t/dev/xvda\tebs\tavailable\thvm\n\
BLOCKDEVICEMAPPINGS\t/dev/xvda\t\t\n\
EBS\tTrue\tFalse\t3000\tsnap-0123456789abcdef0\t125\t8\tgp3\n\
BLOCKDEVICEMAPPINGS\t/dev/sdb\t\tephemeral0\n\
BLOCKDEVICEMAPPINGS\t/dev/sdc\t\t\n\
TAGS\tName\tweb\n",
        ami(1)
    );
    assert_eq!(text.ok().flatten(), Some(want));

    let table = match ebsctl(&endpoint, &["describe-images", "--output", "table"]).await {
        Ok(Some(table)) => table,
        other => panic!("expected a table, got {other:?}"),
    };
    let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
    for want in [
        "DescribeImages",
        "||  ImageId            |  ami-00000000000000001",
        "BlockDeviceMappings",
        "|||  DeviceName  |  /dev/sdb",
        "|||  VirtualName |  ephemeral0",
        "||||  SnapshotId          |  snap-0123456789abcdef0",
        "|||  NoDevice   |   ",
        "Tags",
    ] {
        assert!(table.contains(want), "{want:?} not in\n{table}");
    }
}

/// The mock's `n`th (from 1) instance ID.
fn instance_id(n: u32) -> String {
    format!("i-{n:017x}")
}

/// `run-instances --image-id ami-1` plus `extra` flags; the reservation printed.
async fn run_instances(endpoint: &str, extra: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = ["run-instances", "--image-id", "ami-1"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    json(ebsctl(endpoint, &args).await)
}

/// The `InstanceId`s of a reservation or of a describe-instances reply, in order.
fn instance_ids(reply: &serde_json::Value) -> Vec<String> {
    let reservations = match reply.get("Reservations") {
        Some(list) => list.as_array().cloned().unwrap_or_default(),
        None => vec![reply.clone()],
    };
    reservations
        .iter()
        .flat_map(|r| r["Instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["InstanceId"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn run_instances_sends_flags_and_prints_the_reservation() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let mut args = vec![
        "--instance-type",
        "m5d.large",
        "--count",
        "1:2",
        "--placement",
        r#"{"AvailabilityZone": "us-east-1b"}"#,
        "--user-data",
        "#!/bin/sh\necho hi\n",
        "--workload",
        "fio --name=t --filename=$EBS_DEVICE_XVDA",
        "--instance-initiated-shutdown-behavior",
        "terminate",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=web}]",
        "ResourceType=volume,Tags=[{Key=app,Value=web}]",
        "--client-token",
        "tok-1",
        "--disable-api-termination",
        "--block-device-mappings",
    ];
    args.extend(MAPPINGS_SHORTHAND);
    let reply = run_instances(&endpoint, &args).await;

    // EC2's RunInstances reply: the reservation itself.
    let keys: Vec<&str> = reply
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["Instances", "OwnerId", "ReservationId"]);
    assert_eq!(reply["ReservationId"], "r-00000000000000001");
    assert_eq!(reply["OwnerId"], IMAGE_OWNER);
    assert_eq!(instance_ids(&reply), [instance_id(1), instance_id(2)]);
    let first = &reply["Instances"][0];
    assert_eq!(
        first["State"],
        serde_json::json!({"Code": 0, "Name": "pending"})
    );
    assert_eq!(
        first["StateReason"],
        serde_json::json!({"Code": "pending", "Message": "pending"})
    );
    assert_eq!(first["InstanceType"], "m5d.large");
    assert_eq!(first["Placement"]["AvailabilityZone"], "us-east-1b");
    assert_eq!(first["InstanceInitiatedShutdownBehavior"], "terminate");
    assert_eq!(
        first["Tags"],
        serde_json::json!([{"Key": "Name", "Value": "web"}])
    );
    assert_eq!(
        first["BlockDeviceMappings"][0]["Ebs"]["Status"],
        "attaching"
    );
    assert_eq!(first["DeviceUris"], serde_json::json!({}));
    assert!(first.get("WorkloadPid").is_none(), "{first}");
    assert_eq!(reply["Instances"][1]["AmiLaunchIndex"], 1);

    // The minimum: one instance, every optional member left unset for the server's defaults.
    let reply = run_instances(&endpoint, &[]).await;
    assert_eq!(instance_ids(&reply), [instance_id(3)]);
    assert_eq!(reply["Instances"][0]["InstanceType"], "m5.large");
    assert!(reply["Instances"][0].get("Tags").is_none(), "{reply}");

    let tag = |key: &str| pb::Tag {
        key: key.into(),
        value: "web".into(),
    };
    let runs: Vec<pb::RunInstancesRequest> = mock
        .instance_requests()
        .into_iter()
        .filter_map(|c| match c {
            InstanceCall::Run(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(
        runs,
        [
            pb::RunInstancesRequest {
                image_id: "ami-1".into(),
                instance_type: Some("m5d.large".into()),
                min_count: 1,
                max_count: 2,
                placement: Some(pb::Placement {
                    availability_zone: "us-east-1b".into(),
                }),
                block_device_mappings: sent_mappings(),
                // base64 of the script, as the AWS CLI sends it.
                user_data: Some("IyEvYmluL3NoCmVjaG8gaGkK".into()),
                workload: Some("fio --name=t --filename=$EBS_DEVICE_XVDA".into()),
                instance_initiated_shutdown_behavior: Some("terminate".into()),
                tag_specifications: vec![
                    pb::TagSpecification {
                        resource_type: "instance".into(),
                        tags: vec![tag("Name")],
                    },
                    pb::TagSpecification {
                        resource_type: "volume".into(),
                        tags: vec![tag("app")],
                    },
                ],
                client_token: Some("tok-1".into()),
                disable_api_termination: true,
                ..Default::default()
            },
            pb::RunInstancesRequest {
                image_id: "ami-1".into(),
                instance_type: None,
                min_count: 1,
                max_count: 1,
                placement: None,
                block_device_mappings: vec![],
                user_data: None,
                workload: None,
                instance_initiated_shutdown_behavior: None,
                tag_specifications: vec![],
                client_token: None,
                disable_api_termination: false,
                ..Default::default()
            },
        ]
    );
}

#[tokio::test]
async fn run_instances_reads_user_data_from_a_file_and_shorthand_placement() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let dir = std::env::temp_dir().join(format!("ebsctl-run-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let script = dir.join("boot.sh");
    if let Err(e) = std::fs::write(&script, "#!/bin/sh\necho hi\n") {
        panic!("{e}");
    }
    let user_data = format!("file://{}", script.display());
    run_instances(
        &endpoint,
        &[
            "--user-data",
            &user_data,
            "--placement",
            "AvailabilityZone=us-east-1b",
            "--count",
            "2",
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let Some(InstanceCall::Run(sent)) = mock.instance_requests().pop() else {
        panic!("no RunInstances call");
    };
    assert_eq!(sent.user_data.as_deref(), Some("IyEvYmluL3NoCmVjaG8gaGkK"));
    assert_eq!(
        sent.placement.map(|p| p.availability_zone).as_deref(),
        Some("us-east-1b")
    );
    assert_eq!((sent.min_count, sent.max_count), (2, 2));
}

#[tokio::test]
async fn run_instances_argument_errors_come_before_connecting() {
    for bad in [
        ["--placement", "AvailabilityZone"],
        ["--placement", "Zone=us-east-1a"],
        ["--user-data", "file:///nonexistent/ebsctl/boot.sh"],
        [
            "--block-device-mappings",
            "DeviceName=/dev/sdf,Ebs={VolumeSize=x}",
        ],
        ["--tag-specifications", "Tags=[{Key=a,Value=b}]"],
    ] {
        let args: Vec<&str> = ["run-instances", "--image-id", "ami-1"]
            .into_iter()
            .chain(bad)
            .collect();
        let err = expect_err("http://127.0.0.1:1", &args).await;
        assert_eq!(err.exit_code(), 252, "{bad:?}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("Error parsing parameter '{}': ", bad[0])),
            "{err}"
        );
    }
}

#[tokio::test]
async fn instance_errors_carry_the_ec2_code() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let err = expect_err(&endpoint, &["run-instances", "--image-id", "ami-gone"]).await;
    assert_eq!(
        err.to_string(),
        "An error occurred (InvalidAMIID.NotFound) when calling the RunInstances operation: The image id '[ami-gone]' does not exist"
    );
    assert_eq!(err.exit_code(), 254);
    let err = expect_err(
        &endpoint,
        &["run-instances", "--image-id", "ami-1", "--count", "3:2"],
    )
    .await;
    assert!(err.to_string().contains("(InvalidParameterValue)"), "{err}");

    for args in [
        &["describe-instances", "--instance-ids", "i-gone"][..],
        &["start-instances", "--instance-ids", "i-gone"],
        &["stop-instances", "--instance-ids", "i-gone"],
        &["reboot-instances", "--instance-ids", "i-gone"],
        &["terminate-instances", "--instance-ids", "i-gone"],
        &["get-console-output", "--instance-id", "i-gone"],
        &["create-image", "--instance-id", "i-gone", "--name", "web-1"],
    ] {
        let err = expect_err(&endpoint, args).await;
        assert!(
            err.to_string()
                .starts_with("An error occurred (InvalidInstanceID.NotFound) when calling the "),
            "{args:?}: {err}"
        );
        assert_eq!(err.exit_code(), 254);
    }

    let id = instance_id(1);
    run_instances(&endpoint, &[]).await;
    let err = expect_err(
        &endpoint,
        &["stop-instances", "--instance-ids", &id, "--hibernate"],
    )
    .await;
    assert_eq!(
        err.to_string(),
        "An error occurred (UnsupportedHibernationConfiguration) when calling the StopInstances operation: Hibernation is not supported."
    );
}

#[tokio::test]
async fn describe_instances_groups_by_reservation_and_follows_next_token() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    run_instances(&endpoint, &[]).await;
    run_instances(&endpoint, &["--count", "2"]).await;
    run_instances(&endpoint, &[]).await;

    let all = json(ebsctl(&endpoint, &["describe-instances"]).await);
    let reservations = all["Reservations"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = reservations
        .iter()
        .filter_map(|r| r["ReservationId"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "r-00000000000000001",
            "r-00000000000000002",
            "r-00000000000000003"
        ]
    );
    assert_eq!(reservations[1]["OwnerId"], IMAGE_OWNER);
    assert_eq!(
        instance_ids(&all),
        (1..=4).map(instance_id).collect::<Vec<_>>()
    );
    assert!(all.get("NextToken").is_none(), "{all}");
    // Two pages of two reservations.
    let describes = |mock: &Mock| {
        mock.instance_requests()
            .into_iter()
            .filter(|c| matches!(c, InstanceCall::Describe(_)))
            .count()
    };
    assert_eq!(describes(&mock), 2);

    let page = json(ebsctl(&endpoint, &["describe-instances", "--max-results", "1"]).await);
    assert_eq!(page["Reservations"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["NextToken"], "1");
    let last = json(
        ebsctl(
            &endpoint,
            &[
                "describe-instances",
                "--max-results",
                "5",
                "--next-token",
                "2",
            ],
        )
        .await,
    );
    assert_eq!(instance_ids(&last), [instance_id(4)]);
    assert!(last.get("NextToken").is_none(), "{last}");

    // The first describe saw them pending; now they run.
    let one = json(
        ebsctl(
            &endpoint,
            &[
                "describe-instances",
                "--instance-ids",
                &instance_id(2),
                "--filters",
                "Name=instance-state-name,Values=running",
            ],
        )
        .await,
    );
    let instance = &one["Reservations"][0]["Instances"][0];
    assert_eq!(
        instance["State"],
        serde_json::json!({"Code": 16, "Name": "running"})
    );
    assert!(instance.get("StateReason").is_none(), "{instance}");
    assert_eq!(instance["WorkloadPid"], 4242);
    assert_eq!(
        instance["DeviceUris"],
        serde_json::json!({"/dev/xvda": "nbd://127.0.0.1:10809/tok"})
    );
    assert!(mock.instance_requests().contains(&InstanceCall::Describe(
        pb::DescribeInstancesRequest {
            instance_ids: vec![instance_id(2)],
            filters: vec![pb::Filter {
                name: "instance-state-name".into(),
                values: vec!["running".into()],
            }],
            max_results: None,
            next_token: None,
        }
    )));

    let none = json(
        ebsctl(
            &endpoint,
            &[
                "describe-instances",
                "--filters",
                "Name=instance-state-name,Values=stopped",
            ],
        )
        .await,
    );
    assert_eq!(none, serde_json::json!({"Reservations": []}));
}

#[tokio::test]
async fn start_stop_reboot_terminate_print_the_state_changes() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    run_instances(&endpoint, &["--count", "2"]).await;
    let (a, b) = (instance_id(1), instance_id(2));
    json(ebsctl(&endpoint, &["describe-instances"]).await);

    let state = |code: i32, name: &str| serde_json::json!({"Code": code, "Name": name});
    let reply = json(
        ebsctl(
            &endpoint,
            &["stop-instances", "--instance-ids", &a, &b, "--force"],
        )
        .await,
    );
    assert_eq!(
        reply,
        serde_json::json!({"StoppingInstances": [
            {"CurrentState": state(64, "stopping"), "InstanceId": a, "PreviousState": state(16, "running")},
            {"CurrentState": state(64, "stopping"), "InstanceId": b, "PreviousState": state(16, "running")},
        ]})
    );
    json(ebsctl(&endpoint, &["describe-instances"]).await);

    let reply = json(ebsctl(&endpoint, &["start-instances", "--instance-ids", &a]).await);
    assert_eq!(
        reply,
        serde_json::json!({"StartingInstances": [
            {"CurrentState": state(0, "pending"), "InstanceId": a, "PreviousState": state(80, "stopped")},
        ]})
    );

    // Like AWS, reboot-instances prints nothing.
    let out = ebsctl(&endpoint, &["reboot-instances", "--instance-ids", &a]).await;
    assert!(matches!(out, Ok(None)), "{out:?}");

    let reply = json(ebsctl(&endpoint, &["terminate-instances", "--instance-ids", &b]).await);
    assert_eq!(
        reply,
        serde_json::json!({"TerminatingInstances": [
            {"CurrentState": state(32, "shutting-down"), "InstanceId": b, "PreviousState": state(80, "stopped")},
        ]})
    );

    let calls = mock.instance_requests();
    assert!(
        calls.contains(&InstanceCall::Stop(pb::StopInstancesRequest {
            instance_ids: vec![a.clone(), b.clone()],
            force: true,
            hibernate: false,
        }))
    );
    assert!(calls.contains(&InstanceCall::Start(pb::InstanceIdsRequest {
        instance_ids: vec![a.clone()],
    })));
    assert!(
        calls.contains(&InstanceCall::Reboot(pb::InstanceIdsRequest {
            instance_ids: vec![a.clone()],
        }))
    );
    assert!(
        calls.contains(&InstanceCall::Terminate(pb::InstanceIdsRequest {
            instance_ids: vec![b.clone()],
        }))
    );

    let text = ebsctl(
        &endpoint,
        &["stop-instances", "--instance-ids", &a, "--output", "text"],
    )
    .await;
    assert_eq!(
        text.ok().flatten(),
        Some(format!(
            "STOPPINGINSTANCES\t{a}\nCURRENTSTATE\t64\tstopping\nPREVIOUSSTATE\t0\tpending\n"
        ))
    );
}

#[tokio::test]
async fn cost_asks_for_this_month_by_service_and_draws_the_answer() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    let out = ebsctl(&endpoint, &["cost"]).await.unwrap().unwrap();
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        reply["ResultsByTime"][0]["Groups"][1]["Metrics"]["UnblendedCost"]["Amount"],
        "0.8"
    );
    let out = ebsctl(
        &endpoint,
        &[
            "cost",
            "--start",
            "2026-12-01",
            "--end",
            "2026-12-02",
            "--group-by",
            "NONE",
            "--chart",
        ],
    )
    .await
    .unwrap()
    .unwrap();
    assert!(out.contains("Total (USD)") && out.contains("3.10"), "{out}");
    assert!(
        out.contains("█ Amazon Elastic Compute Cloud - Compute"),
        "{out}"
    );
    let asked = mock.cost_requests.lock().unwrap().clone();
    assert_eq!(asked[0].group_by, ["SERVICE"]);
    assert_eq!(asked[0].metrics, ["UnblendedCost"]);
    assert_eq!(asked[0].granularity, "DAILY");
    assert!(asked[0].start.ends_with("-01"), "{:?}", asked[0]);
    assert!(asked[1].group_by.is_empty());
    assert_eq!(
        (asked[1].start.as_str(), asked[1].end.as_str()),
        ("2026-12-01", "2026-12-02")
    );
}

#[tokio::test]
async fn get_console_output_prints_the_decoded_output() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    run_instances(&endpoint, &[]).await;
    let id = instance_id(1);
    let out = ebsctl(
        &endpoint,
        &["get-console-output", "--instance-id", &id, "--latest"],
    )
    .await;
    let want = format!(
        "{{\n    \"InstanceId\": \"{id}\",\n    \"Timestamp\": \"2024-05-01T12:00:10.000Z\",\n    \"Output\": \"booting\\nhello from {id} \\u001b[0m\\n\u{fffd}\\n\"\n}}\n"
    );
    assert_eq!(out.ok().flatten(), Some(want));
    assert_eq!(
        mock.instance_requests().last(),
        Some(&InstanceCall::Console(pb::GetConsoleOutputRequest {
            instance_id: id.clone()
        }))
    );

    let text = ebsctl(
        &endpoint,
        &[
            "get-console-output",
            "--instance-id",
            &id,
            "--output",
            "text",
        ],
    )
    .await;
    assert_eq!(
        text.ok().flatten(),
        Some(format!(
            "{id}\tbooting\nhello from {id} \u{1b}[0m\n\u{fffd}\n\t2024-05-01T12:00:10.000Z\n"
        ))
    );
}

#[tokio::test]
async fn create_image_sends_flags_and_prints_the_image_id() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    run_instances(&endpoint, &[]).await;
    let id = instance_id(1);

    let out = ebsctl(
        &endpoint,
        &[
            "create-image",
            "--instance-id",
            &id,
            "--name",
            "web-1",
            "--description",
            "web server",
            "--no-reboot",
            "--tag-specifications",
            "ResourceType=image,Tags=[{Key=Name,Value=web}]",
        ],
    )
    .await;
    assert_eq!(
        out.ok().flatten(),
        Some(format!("{{\n    \"ImageId\": \"{}\"\n}}\n", ami(1)))
    );
    let reply = json(
        ebsctl(
            &endpoint,
            &["create-image", "--instance-id", &id, "--name", "web-2"],
        )
        .await,
    );
    assert_eq!(reply["ImageId"], ami(2));

    let created: Vec<pb::CreateImageRequest> = mock
        .instance_requests()
        .into_iter()
        .filter_map(|c| match c {
            InstanceCall::CreateImage(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        [
            pb::CreateImageRequest {
                instance_id: id.clone(),
                name: "web-1".into(),
                description: Some("web server".into()),
                no_reboot: true,
                tag_specifications: vec![pb::TagSpecification {
                    resource_type: "image".into(),
                    tags: vec![pb::Tag {
                        key: "Name".into(),
                        value: "web".into(),
                    }],
                }],
            },
            // Rebooting is the default.
            pb::CreateImageRequest {
                instance_id: id.clone(),
                name: "web-2".into(),
                description: None,
                no_reboot: false,
                tag_specifications: vec![],
            },
        ]
    );
}

/// `wait WAITER --instance-ids IDS` polling at once, at most `attempts` times.
async fn wait_instances(
    endpoint: &str,
    waiter: &str,
    ids: &[&str],
    attempts: &str,
) -> Result<Option<String>, CliError> {
    let args: Vec<&str> = [
        "wait",
        waiter,
        "--delay",
        "0",
        "--max-attempts",
        attempts,
        "--instance-ids",
    ]
    .into_iter()
    .chain(ids.iter().copied())
    .collect();
    ebsctl(endpoint, &args).await
}

#[tokio::test]
async fn instance_waiters() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    run_instances(&endpoint, &["--count", "2"]).await;
    let (a, b) = (instance_id(1), instance_id(2));

    // Pending at the first poll, running at the second.
    let out = wait_instances(&endpoint, "instance-running", &[&a, &b], "3").await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    let out = wait_instances(&endpoint, "instance-exists", &[&a], "1").await;
    assert!(matches!(out, Ok(None)), "{out:?}");

    json(ebsctl(&endpoint, &["stop-instances", "--instance-ids", &a]).await);
    // Stopping is a terminal failure for instance-running, as in the AWS CLI.
    match wait_instances(&endpoint, "instance-running", &[&a, &b], "3").await {
        Err(e) => {
            assert_eq!(
                e.to_string(),
                "Waiter InstanceRunning failed: Waiter encountered a terminal failure state: For expression \"Reservations[].Instances[].State.Name\" we matched expected path: \"stopping\" at least once"
            );
            assert_eq!(e.exit_code(), 255);
        }
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
    let out = wait_instances(&endpoint, "instance-stopped", &[&a], "3").await;
    assert!(matches!(out, Ok(None)), "{out:?}");

    json(ebsctl(&endpoint, &["terminate-instances", "--instance-ids", &b]).await);
    match wait_instances(&endpoint, "instance-stopped", &[&b], "3").await {
        Err(e) => assert!(e.to_string().contains("\"terminated\""), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
    let out = wait_instances(&endpoint, "instance-terminated", &[&b], "3").await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    // An unknown id fails instance-terminated (as in botocore); one that is not there yet may
    // come, for instance-exists and instance-running.
    match wait_instances(&endpoint, "instance-terminated", &["i-gone"], "1").await {
        Err(e) => assert!(e.to_string().contains("InvalidInstanceID.NotFound"), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
    match wait_instances(&endpoint, "instance-exists", &["i-gone"], "2").await {
        Err(e) => assert_eq!(
            e.to_string(),
            "Waiter InstanceExists failed: Max attempts exceeded"
        ),
        Ok(out) => panic!("expected a timeout, got {out:?}"),
    }
    match wait_instances(&endpoint, "instance-running", &["i-gone"], "3").await {
        Err(e) => assert_eq!(
            e.to_string(),
            "Waiter InstanceRunning failed: Max attempts exceeded",
            "an unknown id keeps instance-running waiting, as in botocore"
        ),
        Ok(out) => panic!("expected a timeout, got {out:?}"),
    }

    // Filters go to DescribeInstances.
    let out = ebsctl(
        &endpoint,
        &[
            "wait",
            "instance-stopped",
            "--filters",
            "Name=instance-state-name,Values=stopped",
            "--delay",
            "0",
        ],
    )
    .await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    assert_eq!(
        mock.instance_requests().last(),
        Some(&InstanceCall::Describe(pb::DescribeInstancesRequest {
            instance_ids: vec![],
            filters: vec![pb::Filter {
                name: "instance-state-name".into(),
                values: vec!["stopped".into()],
            }],
            max_results: None,
            next_token: None,
        }))
    );
}

#[tokio::test]
async fn wait_image_available() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;
    run_instances(&endpoint, &[]).await;
    let id = instance_id(1);
    let create = |name: &'static str| {
        let endpoint = endpoint.clone();
        let id = id.clone();
        async move {
            let reply = json(
                ebsctl(
                    &endpoint,
                    &["create-image", "--instance-id", &id, "--name", name],
                )
                .await,
            );
            reply["ImageId"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default()
        }
    };
    let wait = |image: String, attempts: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            ebsctl(
                &endpoint,
                &[
                    "wait",
                    "image-available",
                    "--image-ids",
                    &image,
                    "--delay",
                    "0",
                    "--max-attempts",
                    attempts,
                ],
            )
            .await
        }
    };

    // Pending at the first poll: one attempt is not enough, a second is.
    let web = create("web-1").await;
    match wait(web.clone(), "1").await {
        Err(e) => assert_eq!(
            e.to_string(),
            "Waiter ImageAvailable failed: Max attempts exceeded"
        ),
        Ok(out) => panic!("expected a timeout, got {out:?}"),
    }
    let out = wait(web, "1").await;
    assert!(matches!(out, Ok(None)), "{out:?}");

    let broken = create("broken").await;
    match wait(broken, "3").await {
        Err(e) => assert_eq!(
            e.to_string(),
            "Waiter ImageAvailable failed: Waiter encountered a terminal failure state: For expression \"Images[].State\" we matched expected path: \"failed\" at least once"
        ),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
    match wait("ami-gone".into(), "3").await {
        Err(e) => assert!(e.to_string().contains("(InvalidAMIID.NotFound)"), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
}

#[tokio::test]
async fn describe_instances_as_text_and_table() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    run_instances(
        &endpoint,
        &[
            "--tag-specifications",
            "ResourceType=instance,Tags=[{Key=Name,Value=web}]",
        ],
    )
    .await;
    let id = instance_id(1);

    let text = match ebsctl(&endpoint, &["describe-instances", "--output", "text"]).await {
        Ok(Some(text)) => text,
        other => panic!("expected text, got {other:?}"),
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "RESERVATIONS\t000000000000\tr-00000000000000001",
        "{text}"
    );
    // Columns: AmiLaunchIndex, Architecture, DevicesFile, EbsOptimized, ImageId,
    // InstanceId, InstanceInitiatedShutdownBehavior, InstanceType, LaunchTime, RootDeviceName,
    // RootDeviceType, StateTransitionReason, VirtualizationType; then the nested objects.
    assert_eq!(
        lines[1],
        format!(
            "INSTANCES\t0\tx86_64\t/data/instances/{id}/devices.json\tTrue\tami-1\t{id}\tstop\tm5.large\t2024-05-01T12:00:08.000Z\t/dev/xvda\tebs\t\thvm"
        ),
        "{text}"
    );
    for want in [
        "BLOCKDEVICEMAPPINGS\t/dev/xvda",
        "EBS\t2024-05-01T12:00:09.000Z\tTrue\tattaching\tvol-00000000000000001",
        "CPUOPTIONS\t1",
        "PLACEMENT\tus-east-1a",
        "STATE\t0\tpending",
        "STATEREASON\tpending\tpending",
        "TAGS\tName\tweb",
    ] {
        assert!(lines.contains(&want), "{want:?} not in\n{text}");
    }

    let table = match ebsctl(&endpoint, &["describe-instances", "--output", "table"]).await {
        Ok(Some(table)) => table,
        other => panic!("expected a table, got {other:?}"),
    };
    let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
    for want in [
        "DescribeInstances",
        "Reservations",
        "ReservationId",
        "Instances",
        "|||  InstanceId                        |  i-00000000000000001",
        "DeviceUris",
        "||||  /dev/xvda |  nbd://127.0.0.1:10809/tok",
        "State",
        "running",
    ] {
        assert!(table.contains(want), "{want:?} not in\n{table}");
    }
}
