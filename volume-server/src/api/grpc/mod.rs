//! The `ebs.v1.VolumeService` gRPC service: decodes requests, runs the control plane on a
//! blocking thread, and encodes records as protobuf responses with AWS field semantics.

use std::sync::Arc;

use super::format_time;
use pb::volume_service_server::VolumeService;
use proto::ebs::v1 as pb;
use tonic::{Request, Response, Status};

use crate::catalog::{AttachmentRecord, HostRecord, ModificationRecord, VolumeRecord};
use crate::catalog::{ImageRecord, MappingRecord};
use crate::control::fsr::FsrView;
use crate::control::modify::modification_state;
use crate::control::now_ms;
use crate::control::snapshots::SnapshotView;
use crate::control::views::{
    FsrFailure, InstanceStateChange, InstanceView, ReservationView, VolumeStatus,
};
use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode};
use crate::datapath::{self, IoError, IoRequest};
use crate::exports::Exports;
use instance_manager::lifecycle::InstanceState;
use storage_engine::{ReadData, VolumeError, ZeroFlags};

mod convert;

/// The account every gRPC call acts for: the API authenticates with one shared token
/// (`--grpc-token-file`) and has no notion of accounts, so `ebsctl` and other gRPC clients
/// manage the resources of the local account, the one unauthenticated AWS callers use too.
const CALLER: Account = Account::LOCAL;

/// The gRPC face of the control plane.
#[derive(Debug, Clone)]
pub struct VolumeApi {
    control: Arc<ControlPlane>,
    exports: Arc<Exports>,
}

impl VolumeApi {
    /// Serves `control`.
    pub fn new(control: Arc<ControlPlane>, exports: Arc<Exports>) -> VolumeApi {
        VolumeApi { control, exports }
    }

    /// Runs `f` on a blocking thread (control-plane methods do file and catalog I/O).
    async fn run<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&ControlPlane) -> Result<T, Ec2Error> + Send + 'static,
    {
        let control = Arc::clone(&self.control);
        match tokio::task::spawn_blocking(move || f(&control)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.into_status()),
            Err(join) => {
                Err(Ec2Error::internal(format!("control-plane task failed: {join}")).into_status())
            }
        }
    }
}

fn tags(map: &std::collections::BTreeMap<String, String>) -> Vec<pb::Tag> {
    map.iter()
        .map(|(k, v)| pb::Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn attachment(cp: &ControlPlane, volume_id: &str, a: &AttachmentRecord) -> pb::VolumeAttachment {
    pb::VolumeAttachment {
        volume_id: volume_id.to_string(),
        instance_id: a.instance_id.clone(),
        device: a.device.clone(),
        state: a.state.as_str().to_string(),
        attach_time: format_time(a.attach_time_ms),
        delete_on_termination: a.delete_on_termination,
        nbd_uri: cp.nbd_uri(&a.token),
        generation: a.generation,
    }
}

fn volume(cp: &ControlPlane, v: &VolumeRecord) -> pb::Volume {
    pb::Volume {
        volume_id: v.volume_id.clone(),
        size: v.size_gib as i32,
        snapshot_id: v.snapshot_id.clone().unwrap_or_default(),
        availability_zone: v.availability_zone.clone(),
        state: v.state.as_str().to_string(),
        create_time: format_time(v.create_time_ms),
        attachments: v
            .attachments
            .iter()
            .map(|a| attachment(cp, &v.volume_id, a))
            .collect(),
        volume_type: v.volume_type.as_str().to_string(),
        iops: v.iops.map(|n| n as i32),
        throughput: v.throughput.map(|n| n as i32),
        encrypted: v.encryption.is_some(),
        multi_attach_enabled: v.multi_attach_enabled,
        fast_restored: v.fast_restored,
        tags: tags(&v.tags),
        initialization_progress: cp.initialization_progress(&v.volume_id).map(|p| p as i32),
    }
}

fn snapshot(s: &SnapshotView) -> pb::Snapshot {
    let r = &s.record;
    let (source_region, source_snapshot_id) = r.source.clone().unwrap_or_default();
    pb::Snapshot {
        snapshot_id: r.snapshot_id.clone(),
        volume_id: r.volume_id.clone(),
        state: r.state.as_str().to_string(),
        state_message: r.state_message.clone(),
        start_time: format_time(r.start_ms),
        progress: format!("{}%", s.progress),
        volume_size: r.volume_size_gib as i32,
        description: r.description.clone(),
        encrypted: r.kms_key_id.is_some(),
        owner_id: r.owner_id.clone(),
        tags: tags(&r.tags),
        completion_time: r.complete_ms.map(format_time).unwrap_or_default(),
        full_snapshot_size_in_bytes: r.bytes_written as i64,
        block_count: r.block_count as i64,
        blocks_written: r.blocks_written as i64,
        source_region,
        source_snapshot_id,
    }
}

fn fsr(v: &FsrView) -> pb::FastSnapshotRestore {
    let f = &v.record;
    pb::FastSnapshotRestore {
        snapshot_id: f.snapshot_id.clone(),
        availability_zone: f.availability_zone.clone(),
        state: v.state.to_string(),
        state_transition_reason: v.transition_reason().to_string(),
        owner_id: v.owner_id.clone(),
        enabling_time: format_time(f.enabling_ms),
        optimizing_time: v.optimizing_ms.map(format_time).unwrap_or_default(),
        enabled_time: v.enabled_ms.map(format_time).unwrap_or_default(),
        disabling_time: f.disabled_ms.map(format_time).unwrap_or_default(),
        disabled_time: f.disabled_ms.map(format_time).unwrap_or_default(),
    }
}

fn fsr_result((ok, failed): (Vec<FsrView>, Vec<FsrFailure>)) -> pb::FastSnapshotRestoresResult {
    pb::FastSnapshotRestoresResult {
        successful: ok.iter().map(fsr).collect(),
        unsuccessful: failed
            .into_iter()
            .map(|f| pb::FastSnapshotRestoreError {
                snapshot_id: f.snapshot_id,
                availability_zone: f.availability_zone,
                code: f.code.as_str().to_string(),
                message: f.message,
            })
            .collect(),
    }
}

fn reservation(r: &ReservationView) -> pb::Reservation {
    pb::Reservation {
        reservation_id: r.reservation_id.clone(),
        owner_id: r.owner_id.clone(),
        instances: r.instances.iter().map(instance).collect(),
    }
}

fn instance(v: &InstanceView) -> pb::Instance {
    let h = &v.host;
    let r = v.record();
    let running = r.state == InstanceState::Running;
    pb::Instance {
        instance_id: h.instance_id.clone(),
        image_id: r.image_id.clone(),
        instance_type: r.instance_type.clone(),
        state: Some(r.state.to_pb()),
        placement: Some(pb::Placement {
            availability_zone: h.availability_zone.clone(),
        }),
        launch_time: format_time(h.launch_time_ms),
        root_device_name: r.root_device_name.clone(),
        root_device_type: "ebs".into(),
        block_device_mappings: v
            .attachments
            .iter()
            .map(|(volume_id, a)| pb::InstanceBlockDeviceMapping {
                device_name: a.device.clone(),
                ebs: Some(pb::EbsInstanceBlockDevice {
                    volume_id: volume_id.clone(),
                    status: a.state.as_str().to_string(),
                    attach_time: format_time(a.attach_time_ms),
                    delete_on_termination: a.delete_on_termination,
                }),
            })
            .collect(),
        state_reason: r.state_reason.as_ref().map(|s| pb::StateReason {
            code: s.code.clone(),
            message: s.message.clone(),
        }),
        state_transition_reason: v
            .transition_reason()
            .map(|(why, at)| format!("{why} ({})", format_time(at)))
            .unwrap_or_default(),
        tags: tags(&h.tags),
        ami_launch_index: r.launch_index as i32,
        architecture: r.architecture.clone(),
        virtualization_type: r.virtualization_type.clone(),
        ebs_optimized: true,
        instance_initiated_shutdown_behavior: r.shutdown_behavior.as_str().into(),
        instance_store_devices: r
            .instance_store
            .iter()
            .map(|d| pb::InstanceStoreDevice {
                device_name: d.device_name.clone(),
                virtual_name: d.virtual_name.clone(),
                size_bytes: d.size_bytes as i64,
            })
            .collect(),
        workload_pid: r.pid.filter(|_| running).map(|(p, _)| p as i32),
        devices_file: v.devices_file.clone(),
        device_uris: v.device_uris.clone(),
        cpu_core_count: v.cpu_core_count as i32,
    }
}

fn state_changes(changes: Vec<InstanceStateChange>) -> pb::InstanceStateChanges {
    pb::InstanceStateChanges {
        instances: changes
            .into_iter()
            .map(|c| pb::InstanceStateChange {
                instance_id: c.instance_id,
                current_state: Some(c.current.to_pb()),
                previous_state: Some(c.previous.to_pb()),
            })
            .collect(),
    }
}

/// A volume's status checks: `io-enabled` fails once its file failed an I/O (the volume then
/// refuses all I/O until it is reopened: detached from every instance and attached again).
fn volume_status(st: VolumeStatus, v: &VolumeRecord) -> pb::VolumeStatusItem {
    pb::VolumeStatusItem {
        volume_id: v.volume_id.clone(),
        availability_zone: v.availability_zone.clone(),
        volume_status: Some(pb::VolumeStatusInfo {
            status: st.status.into(),
            details: st
                .details
                .iter()
                .map(|(name, status)| pb::VolumeStatusDetail {
                    name: (*name).into(),
                    status: (*status).into(),
                })
                .collect(),
        }),
    }
}

fn image((i, state): &(ImageRecord, &str)) -> pb::Image {
    pb::Image {
        image_id: i.image_id.clone(),
        name: i.name.clone(),
        description: i.description.clone(),
        state: (*state).into(),
        creation_date: format_time(i.creation_ms),
        root_device_name: i.root_device_name.clone(),
        root_device_type: "ebs".into(),
        architecture: i.architecture.clone(),
        virtualization_type: i.virtualization_type.clone(),
        block_device_mappings: i.mappings.iter().map(mapping_pb).collect(),
        owner_id: i.owner_id.clone(),
        public: false,
        image_type: "machine".into(),
        tags: tags(&i.tags),
    }
}

fn host(cp: &ControlPlane, h: &HostRecord, atts: &[(String, AttachmentRecord)]) -> pb::Host {
    pb::Host {
        instance_id: h.instance_id.clone(),
        name: h.name.clone(),
        availability_zone: h.availability_zone.clone(),
        // Registered hosts are always running; launched instances say where they are.
        state: h
            .instance
            .as_ref()
            .map_or("running", |i| i.state.as_str())
            .to_string(),
        launch_time: format_time(h.launch_time_ms),
        tags: tags(&h.tags),
        attachments: atts.iter().map(|(vid, a)| attachment(cp, vid, a)).collect(),
    }
}

fn modification(volume_id: &str, m: &ModificationRecord, fresh: bool) -> pb::VolumeModification {
    let (state, progress) = if fresh {
        ("modifying", 0)
    } else {
        modification_state(m, now_ms())
    };
    pb::VolumeModification {
        volume_id: volume_id.to_string(),
        modification_state: state.to_string(),
        status_message: String::new(),
        target_size: m.target.size_gib as i32,
        target_iops: m.target.iops.map(|n| n as i32),
        target_volume_type: m.target.volume_type.as_str().to_string(),
        target_throughput: m.target.throughput.map(|n| n as i32),
        target_multi_attach_enabled: m.target.multi_attach_enabled,
        original_size: m.original.size_gib as i32,
        original_iops: m.original.iops.map(|n| n as i32),
        original_volume_type: m.original.volume_type.as_str().to_string(),
        original_throughput: m.original.throughput.map(|n| n as i32),
        original_multi_attach_enabled: m.original.multi_attach_enabled,
        progress: progress as i32,
        start_time: format_time(m.start_ms),
        end_time: if state == "completed" {
            format_time(m.end_ms)
        } else {
            String::new()
        },
    }
}

fn reservation_report(
    volume_id: &str,
    r: &crate::reservation::ReservationRecord,
) -> pb::ReservationStatus {
    pb::ReservationStatus {
        volume_id: volume_id.to_string(),
        generation: r.generation,
        r#type: r.rtype.map_or(0, |t| t.nvme()),
        holder_instance_id: r.holder.clone().unwrap_or_default(),
        registrants: r
            .registrants
            .iter()
            .map(|(h, k)| pb::Registrant {
                instance_id: h.clone(),
                key: *k,
                holder: r.is_holder(h),
            })
            .collect(),
    }
}

/// The proto form of a stored mapping.
fn mapping_pb(m: &MappingRecord) -> pb::BlockDeviceMapping {
    pb::BlockDeviceMapping {
        device_name: m.device_name.clone(),
        ebs: m.ebs.as_ref().map(|e| pb::EbsBlockDevice {
            snapshot_id: e.snapshot_id.clone(),
            volume_size: e.volume_size.map(|n| n as i32),
            volume_type: e.volume_type.clone(),
            iops: e.iops.map(|n| n as i32),
            throughput: e.throughput.map(|n| n as i32),
            delete_on_termination: Some(e.delete_on_termination.unwrap_or(true)),
            encrypted: Some(e.encrypted.unwrap_or(false)),
        }),
        virtual_name: m.virtual_name.clone(),
        no_device: m.no_device.then(String::new),
    }
}

/// The gRPC status of a failed block request, with its code.
fn io_status(e: IoError) -> Status {
    Ec2Error::new(e.code(), e.to_string()).into_status()
}

impl VolumeApi {
    /// Runs a block request on the attachment named by `token`.
    async fn block_io(&self, token: &str, req: IoRequest) -> Result<Option<Vec<u8>>, Status> {
        let export = self.exports.get(token).ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InvalidAttachmentNotFound,
                "No attachment has this token (detached?).",
            )
            .into_status()
        })?;
        let guard = export
            .gate
            .enter()
            .ok_or_else(|| io_status(IoError::Fenced))?;
        let admitted = datapath::admit(&export, &req);
        let data = datapath::execute(&export, &guard, req, admitted)
            .await
            .map_err(io_status)?;
        // Reads here ask for bytes in memory (`to_socket: None`), so this never copies.
        data.map(ReadData::into_vec)
            .transpose()
            .map_err(|e| io_status(IoError::Volume(VolumeError::Io(e))))
    }
}

/// A WriteBlocks stream that failed part way: the status says how many bytes of the stream
/// were written (in its message and in the `x-bytes-written` metadata): those of the messages
/// before the failed one. Nothing after it was written.
fn partial(status: Status, written: u64) -> Status {
    let message = format!(
        "{} ({written} bytes of this stream were written before this failure)",
        status.message()
    );
    let mut out = Status::with_metadata(status.code(), message, status.metadata().clone());
    out.metadata_mut().insert(
        proto::BYTES_WRITTEN_KEY,
        tonic::metadata::MetadataValue::from(written),
    );
    out
}

#[tonic::async_trait]
impl VolumeService for VolumeApi {
    async fn read_blocks(
        &self,
        req: Request<pb::ReadBlocksRequest>,
    ) -> Result<Response<pb::ReadBlocksResponse>, Status> {
        let r = req.into_inner();
        let io = IoRequest::Read {
            offset: r.offset,
            len: u64::from(r.length),
            to_socket: None,
        };
        let data = self
            .block_io(&r.attachment_token, io)
            .await?
            .unwrap_or_default();
        Ok(Response::new(pb::ReadBlocksResponse { data }))
    }

    async fn write_blocks(
        &self,
        req: Request<tonic::Streaming<pb::WriteBlocksRequest>>,
    ) -> Result<Response<pb::WriteBlocksResponse>, Status> {
        let mut stream = req.into_inner();
        // One stream, one attachment: the first message names it; a later message may repeat
        // that token or leave it empty, never name another.
        let mut token: Option<String> = None;
        let mut written = 0u64;
        while let Some(chunk) = stream.message().await.map_err(|s| partial(s, written))? {
            let t = match (&token, chunk.attachment_token) {
                (None, t) if t.is_empty() => {
                    return Err(
                        Ec2Error::missing("attachment_token (in the first message)").into_status()
                    );
                }
                (None, t) => token.insert(t),
                (Some(t), other) if !other.is_empty() && other != *t => {
                    return Err(partial(
                        Ec2Error::invalid_combination(
                            "One WriteBlocks stream writes to one attachment: a later message names another token.",
                        )
                        .into_status(),
                        written,
                    ));
                }
                (Some(t), _) => t,
            };
            let len = chunk.data.len() as u64;
            let io = IoRequest::Write {
                offset: chunk.offset,
                data: bytes::Bytes::from(chunk.data),
                fua: chunk.fua,
            };
            self.block_io(t, io)
                .await
                .map_err(|s| partial(s, written))?;
            written += len;
        }
        Ok(Response::new(pb::WriteBlocksResponse {
            bytes_written: written,
        }))
    }

    async fn flush_blocks(
        &self,
        req: Request<pb::FlushBlocksRequest>,
    ) -> Result<Response<pb::FlushBlocksResponse>, Status> {
        self.block_io(&req.into_inner().attachment_token, IoRequest::Flush)
            .await?;
        Ok(Response::new(pb::FlushBlocksResponse {}))
    }

    async fn trim_blocks(
        &self,
        req: Request<pb::TrimBlocksRequest>,
    ) -> Result<Response<pb::TrimBlocksResponse>, Status> {
        let r = req.into_inner();
        self.block_io(
            &r.attachment_token,
            IoRequest::Trim {
                offset: r.offset,
                len: r.length,
                fua: r.fua,
            },
        )
        .await?;
        Ok(Response::new(pb::TrimBlocksResponse {}))
    }

    async fn write_zero_blocks(
        &self,
        req: Request<pb::WriteZeroBlocksRequest>,
    ) -> Result<Response<pb::WriteZeroBlocksResponse>, Status> {
        let r = req.into_inner();
        let flags = ZeroFlags {
            may_trim: !r.no_hole,
            fast_only: false,
            fua: r.fua,
        };
        self.block_io(
            &r.attachment_token,
            IoRequest::WriteZeroes {
                offset: r.offset,
                len: r.length,
                flags,
            },
        )
        .await?;
        Ok(Response::new(pb::WriteZeroBlocksResponse {}))
    }

    async fn reservation_register(
        &self,
        req: Request<pb::ReservationRegisterRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let req = req.into_inner();
        let id = req.volume_id.clone();
        self.run(move |cp| {
            cp.reservation_register(CALLER, req.into())
                .map(|r| reservation_report(&id, &r))
        })
        .await
        .map(Response::new)
    }

    async fn reservation_acquire(
        &self,
        req: Request<pb::ReservationAcquireRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let req = req.into_inner();
        let id = req.volume_id.clone();
        self.run(move |cp| {
            cp.reservation_acquire(CALLER, req.into())
                .map(|r| reservation_report(&id, &r))
        })
        .await
        .map(Response::new)
    }

    async fn reservation_release(
        &self,
        req: Request<pb::ReservationReleaseRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let req = req.into_inner();
        let id = req.volume_id.clone();
        self.run(move |cp| {
            cp.reservation_release(CALLER, req.into())
                .map(|r| reservation_report(&id, &r))
        })
        .await
        .map(Response::new)
    }

    async fn reservation_report(
        &self,
        req: Request<pb::ReservationReportRequest>,
    ) -> Result<Response<pb::ReservationStatus>, Status> {
        let id = req.into_inner().volume_id;
        self.run(move |cp| {
            cp.reservation_report(CALLER, &id)
                .map(|r| reservation_report(&id, &r))
        })
        .await
        .map(Response::new)
    }

    async fn modify_volume(
        &self,
        req: Request<pb::ModifyVolumeRequest>,
    ) -> Result<Response<pb::VolumeModification>, Status> {
        let req = req.into_inner();
        self.run(move |cp| {
            cp.modify_volume(CALLER, req.into())
                .map(|(id, m)| modification(&id, &m, true))
        })
        .await
        .map(Response::new)
    }

    async fn describe_volumes_modifications(
        &self,
        req: Request<pb::DescribeVolumesModificationsRequest>,
    ) -> Result<Response<pb::DescribeVolumesModificationsResponse>, Status> {
        let req = req.into_inner();
        self.run(move |cp| {
            let (mods, _) = cp.describe_volumes_modifications(
                CALLER,
                &req.volume_ids,
                &convert::all(req.filters),
                None,
                None,
            )?;
            Ok(pb::DescribeVolumesModificationsResponse {
                volumes_modifications: mods
                    .iter()
                    .map(|(id, m)| modification(id, m, false))
                    .collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn get_volume_metrics(
        &self,
        req: Request<pb::GetVolumeMetricsRequest>,
    ) -> Result<Response<pb::GetVolumeMetricsResponse>, Status> {
        let ids = req.into_inner().volume_ids;
        self.run(move |cp| {
            // Without ids: the open (attached) volumes, as the API documents; with ids: those,
            // unattached ones reading zero.
            let all = ids.is_empty();
            let sources = cp.metrics_sources(Some(CALLER), &ids)?;
            Ok(pb::GetVolumeMetricsResponse {
                metrics: sources
                    .iter()
                    .filter(|(_, o)| !all || o.is_some())
                    .map(|(v, o)| crate::metrics::volume_metrics(v, o.as_ref()))
                    .collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn describe_volume_attribute(
        &self,
        req: Request<pb::DescribeVolumeAttributeRequest>,
    ) -> Result<Response<pb::DescribeVolumeAttributeResponse>, Status> {
        use crate::control::volume_io::VolumeAttribute;
        let req = req.into_inner();
        self.run(move |cp| {
            let attribute = VolumeAttribute::parse(&req.attribute)?;
            let on = cp.auto_enable_io(CALLER, &req.volume_id)?;
            Ok(pb::DescribeVolumeAttributeResponse {
                volume_id: req.volume_id,
                auto_enable_io: (attribute == VolumeAttribute::AutoEnableIo).then_some(on),
                product_codes: vec![],
            })
        })
        .await
        .map(Response::new)
    }

    async fn modify_volume_attribute(
        &self,
        req: Request<pb::ModifyVolumeAttributeRequest>,
    ) -> Result<Response<pb::ModifyVolumeAttributeResponse>, Status> {
        let req = req.into_inner();
        self.run(move |cp| cp.set_auto_enable_io(CALLER, &req.volume_id, req.auto_enable_io))
            .await
            .map(|()| Response::new(pb::ModifyVolumeAttributeResponse {}))
    }

    async fn enable_volume_io(
        &self,
        req: Request<pb::EnableVolumeIoRequest>,
    ) -> Result<Response<pb::EnableVolumeIoResponse>, Status> {
        let req = req.into_inner();
        self.run(move |cp| cp.enable_volume_io(CALLER, &req.volume_id))
            .await
            .map(|()| Response::new(pb::EnableVolumeIoResponse {}))
    }

    async fn describe_volume_status(
        &self,
        req: Request<pb::DescribeVolumeStatusRequest>,
    ) -> Result<Response<pb::DescribeVolumeStatusResponse>, Status> {
        let ids = req.into_inner().volume_ids;
        self.run(move |cp| {
            let sources = cp.metrics_sources(Some(CALLER), &ids)?;
            Ok(pb::DescribeVolumeStatusResponse {
                volume_statuses: sources
                    .iter()
                    .map(|(v, o)| volume_status(cp.volume_status_of(v, o.as_ref()), v))
                    .collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let req = req.into_inner();
        self.run(move |cp| cp.create_volume(CALLER, req.into()).map(|v| volume(cp, &v)))
            .await
            .map(Response::new)
    }

    async fn describe_volumes(
        &self,
        req: Request<pb::DescribeVolumesRequest>,
    ) -> Result<Response<pb::DescribeVolumesResponse>, Status> {
        let req = req.into_inner();
        self.run(move |cp| {
            let (vols, next_token) = cp.describe_volumes(CALLER, req.into())?;
            Ok(pb::DescribeVolumesResponse {
                volumes: vols.iter().map(|v| volume(cp, v)).collect(),
                next_token,
            })
        })
        .await
        .map(Response::new)
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::Snapshot>, Status> {
        let req = req.into_inner();
        self.run(move |cp| cp.create_snapshot(CALLER, req.into()))
            .await
            .map(|r| Response::new(snapshot(&SnapshotView::pending(r))))
    }

    async fn describe_snapshots(
        &self,
        req: Request<pb::DescribeSnapshotsRequest>,
    ) -> Result<Response<pb::DescribeSnapshotsResponse>, Status> {
        let req = req.into_inner();
        let (snaps, next_token) = self
            .run(move |cp| cp.describe_snapshots(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::DescribeSnapshotsResponse {
            snapshots: snaps.iter().map(snapshot).collect(),
            next_token,
        }))
    }

    async fn delete_snapshot(
        &self,
        req: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let id = req.into_inner().snapshot_id;
        self.run(move |cp| cp.delete_snapshot(CALLER, &id)).await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    async fn copy_snapshot(
        &self,
        req: Request<pb::CopySnapshotRequest>,
    ) -> Result<Response<pb::CopySnapshotResponse>, Status> {
        let req = req.into_inner();
        let r = self
            .run(move |cp| cp.copy_snapshot(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::CopySnapshotResponse {
            snapshot_id: r.snapshot_id,
        }))
    }

    async fn enable_fast_snapshot_restores(
        &self,
        req: Request<pb::EnableFastSnapshotRestoresRequest>,
    ) -> Result<Response<pb::FastSnapshotRestoresResult>, Status> {
        let req = req.into_inner();
        let r = self
            .run(move |cp| cp.enable_fast_snapshot_restores(CALLER, req.into()))
            .await?;
        Ok(Response::new(fsr_result(r)))
    }

    async fn disable_fast_snapshot_restores(
        &self,
        req: Request<pb::DisableFastSnapshotRestoresRequest>,
    ) -> Result<Response<pb::FastSnapshotRestoresResult>, Status> {
        let req = req.into_inner();
        let r = self
            .run(move |cp| cp.disable_fast_snapshot_restores(CALLER, req.into()))
            .await?;
        Ok(Response::new(fsr_result(r)))
    }

    async fn describe_fast_snapshot_restores(
        &self,
        req: Request<pb::DescribeFastSnapshotRestoresRequest>,
    ) -> Result<Response<pb::DescribeFastSnapshotRestoresResponse>, Status> {
        let req = req.into_inner();
        let (views, next_token) = self
            .run(move |cp| cp.describe_fast_snapshot_restores(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::DescribeFastSnapshotRestoresResponse {
            fast_snapshot_restores: views.iter().map(fsr).collect(),
            next_token,
        }))
    }

    async fn start_snapshot(
        &self,
        req: Request<pb::StartSnapshotRequest>,
    ) -> Result<Response<pb::StartSnapshotResponse>, Status> {
        let req = req.into_inner();
        let (r, parent) = self
            .run(move |cp| cp.start_snapshot(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::StartSnapshotResponse {
            snapshot_id: r.snapshot_id.clone(),
            owner_id: r.owner_id.clone(),
            status: r.state.as_str().to_string(),
            start_time: format_time(r.start_ms),
            volume_size: i64::from(r.volume_size_gib),
            block_size: snapshot::BLOCK_SIZE as i32,
            tags: tags(&r.tags),
            parent_snapshot_id: parent.unwrap_or_default(),
            description: r.description,
        }))
    }

    async fn put_snapshot_block(
        &self,
        req: Request<pb::PutSnapshotBlockRequest>,
    ) -> Result<Response<pb::PutSnapshotBlockResponse>, Status> {
        let req = req.into_inner();
        let checksum = self
            .run(move |cp| cp.put_snapshot_block(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::PutSnapshotBlockResponse {
            checksum,
            checksum_algorithm: "SHA256".into(),
        }))
    }

    async fn complete_snapshot(
        &self,
        req: Request<pb::CompleteSnapshotRequest>,
    ) -> Result<Response<pb::CompleteSnapshotResponse>, Status> {
        let req = req.into_inner();
        let status = self
            .run(move |cp| cp.complete_snapshot(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::CompleteSnapshotResponse { status }))
    }

    async fn list_snapshot_blocks(
        &self,
        req: Request<pb::ListSnapshotBlocksRequest>,
    ) -> Result<Response<pb::ListSnapshotBlocksResponse>, Status> {
        let req = req.into_inner();
        let page = self
            .run(move |cp| cp.list_snapshot_blocks(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::ListSnapshotBlocksResponse {
            blocks: page
                .blocks
                .into_iter()
                .map(|b| pb::SnapshotBlock {
                    block_index: b.index as i32,
                    block_token: b.token,
                })
                .collect(),
            expiry_time: format_time(page.expiry_ms),
            volume_size: page.volume_size_gib as i64,
            block_size: page.block_size as i32,
            next_token: page.next_token,
        }))
    }

    async fn list_changed_blocks(
        &self,
        req: Request<pb::ListChangedBlocksRequest>,
    ) -> Result<Response<pb::ListChangedBlocksResponse>, Status> {
        let req = req.into_inner();
        let page = self
            .run(move |cp| cp.list_changed_blocks(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::ListChangedBlocksResponse {
            changed_blocks: page
                .blocks
                .into_iter()
                .map(|b| pb::ChangedBlock {
                    block_index: b.index as i32,
                    first_block_token: b.first_token,
                    second_block_token: b.second_token,
                })
                .collect(),
            expiry_time: format_time(page.expiry_ms),
            volume_size: page.volume_size_gib as i64,
            block_size: page.block_size as i32,
            next_token: page.next_token,
        }))
    }

    async fn get_snapshot_block(
        &self,
        req: Request<pb::GetSnapshotBlockRequest>,
    ) -> Result<Response<pb::GetSnapshotBlockResponse>, Status> {
        let req = req.into_inner();
        let b = self
            .run(move |cp| cp.get_snapshot_block(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::GetSnapshotBlockResponse {
            data_length: b.data.len() as i32,
            block_data: b.data,
            checksum: b.checksum,
            checksum_algorithm: b.checksum_algorithm.into(),
        }))
    }

    async fn describe_instance_types(
        &self,
        req: Request<pb::DescribeInstanceTypesRequest>,
    ) -> Result<Response<pb::DescribeInstanceTypesResponse>, Status> {
        instance_manager::types::describe_request(&req.into_inner())
            .map(Response::new)
            .map_err(|e| {
                let code =
                    ErrorCode::from_name(e.code()).unwrap_or(ErrorCode::InvalidParameterValue);
                Ec2Error::new(code, e.to_string()).into_status()
            })
    }

    async fn register_image(
        &self,
        req: Request<pb::RegisterImageRequest>,
    ) -> Result<Response<pb::RegisterImageResponse>, Status> {
        let req = req.into_inner();
        let rec = self
            .run(move |cp| cp.register_image(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::RegisterImageResponse {
            image_id: rec.image_id,
        }))
    }

    async fn describe_images(
        &self,
        req: Request<pb::DescribeImagesRequest>,
    ) -> Result<Response<pb::DescribeImagesResponse>, Status> {
        let req = req.into_inner();
        let (list, next_token) = self
            .run(move |cp| cp.describe_images(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::DescribeImagesResponse {
            images: list.iter().map(image).collect(),
            next_token,
        }))
    }

    async fn deregister_image(
        &self,
        req: Request<pb::DeregisterImageRequest>,
    ) -> Result<Response<pb::DeregisterImageResponse>, Status> {
        let id = req.into_inner().image_id;
        self.run(move |cp| cp.deregister_image(CALLER, &id, false))
            .await?;
        Ok(Response::new(pb::DeregisterImageResponse {}))
    }

    async fn create_image(
        &self,
        req: Request<pb::CreateImageRequest>,
    ) -> Result<Response<pb::CreateImageResponse>, Status> {
        let req = req.into_inner();
        let image_id = self
            .run(move |cp| cp.create_image(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::CreateImageResponse { image_id }))
    }

    async fn run_instances(
        &self,
        req: Request<pb::RunInstancesRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let req = req.into_inner();
        let r = self
            .run(move |cp| cp.run_instances(CALLER, req.into()))
            .await?;
        Ok(Response::new(reservation(&r)))
    }

    async fn describe_instances(
        &self,
        req: Request<pb::DescribeInstancesRequest>,
    ) -> Result<Response<pb::DescribeInstancesResponse>, Status> {
        let req = req.into_inner();
        let page = self
            .run(move |cp| cp.describe_instances(CALLER, req.into()))
            .await?;
        Ok(Response::new(pb::DescribeInstancesResponse {
            reservations: page.reservations.iter().map(reservation).collect(),
            next_token: page.next_token,
        }))
    }

    async fn start_instances(
        &self,
        req: Request<pb::InstanceIdsRequest>,
    ) -> Result<Response<pb::InstanceStateChanges>, Status> {
        let ids = req.into_inner().instance_ids;
        let changes = self.run(move |cp| cp.start_instances(CALLER, &ids)).await?;
        Ok(Response::new(state_changes(changes)))
    }

    async fn stop_instances(
        &self,
        req: Request<pb::StopInstancesRequest>,
    ) -> Result<Response<pb::InstanceStateChanges>, Status> {
        let req = req.into_inner();
        let changes = self
            .run(move |cp| cp.stop_instances(CALLER, &req.instance_ids, req.force, req.hibernate))
            .await?;
        Ok(Response::new(state_changes(changes)))
    }

    async fn reboot_instances(
        &self,
        req: Request<pb::InstanceIdsRequest>,
    ) -> Result<Response<pb::RebootInstancesResponse>, Status> {
        let ids = req.into_inner().instance_ids;
        self.run(move |cp| cp.reboot_instances(CALLER, &ids))
            .await?;
        Ok(Response::new(pb::RebootInstancesResponse {}))
    }

    async fn terminate_instances(
        &self,
        req: Request<pb::InstanceIdsRequest>,
    ) -> Result<Response<pb::InstanceStateChanges>, Status> {
        let ids = req.into_inner().instance_ids;
        let changes = self
            .run(move |cp| cp.terminate_instances(CALLER, &ids))
            .await?;
        Ok(Response::new(state_changes(changes)))
    }

    async fn get_console_output(
        &self,
        req: Request<pb::GetConsoleOutputRequest>,
    ) -> Result<Response<pb::GetConsoleOutputResponse>, Status> {
        let id = req.into_inner().instance_id;
        let out = self.run(move |cp| cp.console_output(CALLER, &id)).await?;
        Ok(Response::new(pb::GetConsoleOutputResponse {
            instance_id: out.instance_id,
            output: out.output,
            timestamp: format_time(out.timestamp_ms),
        }))
    }

    async fn get_cost_and_usage(
        &self,
        req: Request<pb::GetCostAndUsageRequest>,
    ) -> Result<Response<pb::GetCostAndUsageResponse>, Status> {
        use billing::report::{CostQuery, Metrics, format_amount, format_bound};
        let r = req.into_inner();
        let q = CostQuery::from_text(&r.start, &r.end, &r.granularity, &r.metrics, &r.group_by)
            .map_err(|e| {
                Ec2Error::new(
                    crate::control::ErrorCode::ValidationException,
                    e.to_string(),
                )
                .into_status()
            })?;
        let granularity = q.granularity;
        let periods = self.run(move |cp| cp.cost_and_usage(CALLER, &q)).await?;
        let metrics = |m: &Metrics| {
            m.iter()
                .map(|(k, a)| {
                    (
                        k.name().to_string(),
                        pb::MetricValue {
                            amount: format_amount(a.amount),
                            unit: a.unit.clone(),
                        },
                    )
                })
                .collect()
        };
        Ok(Response::new(pb::GetCostAndUsageResponse {
            results_by_time: periods
                .iter()
                .map(|p| pb::CostPeriod {
                    start: format_bound(granularity, p.start_ms),
                    end: format_bound(granularity, p.end_ms),
                    total: metrics(&p.total),
                    groups: p
                        .groups
                        .iter()
                        .map(|(keys, m)| pb::CostGroup {
                            keys: keys.clone(),
                            metrics: metrics(m),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn delete_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let id = req.into_inner().volume_id;
        self.run(move |cp| cp.delete_volume(CALLER, &id)).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn attach_volume(
        &self,
        req: Request<pb::AttachVolumeRequest>,
    ) -> Result<Response<pb::VolumeAttachment>, Status> {
        let req = req.into_inner();
        self.run(move |cp| {
            cp.attach_volume(CALLER, req.into())
                .map(|(vid, a)| attachment(cp, &vid, &a))
        })
        .await
        .map(Response::new)
    }

    async fn detach_volume(
        &self,
        req: Request<pb::DetachVolumeRequest>,
    ) -> Result<Response<pb::VolumeAttachment>, Status> {
        let req = req.into_inner();
        self.run(move |cp| {
            cp.detach_volume(CALLER, req.into())
                .map(|(vid, a)| attachment(cp, &vid, &a))
        })
        .await
        .map(Response::new)
    }

    async fn create_tags(
        &self,
        req: Request<pb::CreateTagsRequest>,
    ) -> Result<Response<pb::CreateTagsResponse>, Status> {
        let req = req.into_inner();
        self.run(move |cp| cp.create_tags(CALLER, &req.resources, &convert::all(req.tags)))
            .await?;
        Ok(Response::new(pb::CreateTagsResponse {}))
    }

    async fn delete_tags(
        &self,
        req: Request<pb::DeleteTagsRequest>,
    ) -> Result<Response<pb::DeleteTagsResponse>, Status> {
        let req = req.into_inner();
        self.run(move |cp| cp.delete_tags(CALLER, &req.resources, &convert::all(req.tags)))
            .await?;
        Ok(Response::new(pb::DeleteTagsResponse {}))
    }

    async fn register_host(
        &self,
        req: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        let req = req.into_inner();
        self.run(move |cp| {
            cp.register_host(CALLER, req.into())
                .map(|h| host(cp, &h, &[]))
        })
        .await
        .map(Response::new)
    }

    async fn deregister_host(
        &self,
        req: Request<pb::DeregisterHostRequest>,
    ) -> Result<Response<pb::DeregisterHostResponse>, Status> {
        let id = req.into_inner().instance_id;
        self.run(move |cp| {
            let detached = cp.deregister_host(CALLER, &id)?;
            Ok(pb::DeregisterHostResponse {
                detached: detached
                    .iter()
                    .map(|(vid, a)| attachment(cp, vid, a))
                    .collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn describe_hosts(
        &self,
        req: Request<pb::DescribeHostsRequest>,
    ) -> Result<Response<pb::DescribeHostsResponse>, Status> {
        let ids = req.into_inner().instance_ids;
        self.run(move |cp| {
            let hosts = cp.describe_hosts(CALLER, &ids)?;
            Ok(pb::DescribeHostsResponse {
                hosts: hosts.iter().map(|(h, a)| host(cp, h, a)).collect(),
            })
        })
        .await
        .map(Response::new)
    }
}
