//! The connection to the volume server: one method per RPC, each failure named after its operation.

use std::time::Duration;

use proto::ebs::v1 as pb;
use proto::ebs::v1::volume_service_client::VolumeServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::args::ArgError;
use crate::cli::{Connection, Token};
use crate::error::CliError;

/// How long to wait for the TCP connection to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to keep dialling an endpoint that refuses connections: a server started in the
/// background a moment ago (`volume-server &` in a script) is still binding its ports.
const STARTING_GRACE: Duration = Duration::from_secs(3);
const REDIAL_EVERY: Duration = Duration::from_millis(100);
/// The environment variable holding the token itself, used when no token file is given.
const TOKEN_ENV: &str = "EBS_TOKEN";

/// Adds `authorization: Bearer <token>` to every call, when a token is known, and marks every
/// call a dry run under `--dry-run`.
#[derive(Clone)]
pub struct Authorization {
    bearer: Option<MetadataValue<Ascii>>,
    dry_run: bool,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("bearer", &self.bearer.as_ref().map(|_| "Bearer …"))
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

impl Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if self.dry_run {
            request
                .metadata_mut()
                .insert(proto::DRY_RUN_KEY, MetadataValue::from_static("true"));
        }
        Ok(request)
    }
}

type Client = VolumeServiceClient<InterceptedService<Channel, Authorization>>;

/// A `VolumeService` client that connects on its first call, so argument errors never need a server.
#[derive(Debug)]
pub struct Api {
    endpoint: String,
    token: Option<Token>,
    dry_run: bool,
    client: Option<Client>,
}

/// Only `http://` endpoints: the gRPC API has no TLS yet, and a URL without a scheme would
/// otherwise fail with a message that does not say why.
fn check_scheme(endpoint: &str) -> Result<(), CliError> {
    let invalid = |reason: String| {
        Err(CliError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        })
    };
    match endpoint.split_once("://") {
        Some(("http", _)) => Ok(()),
        Some(("https", rest)) => invalid(format!(
            "the volume server's gRPC API does not speak TLS; use http://{rest} (over loopback or a network you trust)"
        )),
        Some((scheme, _)) => invalid(format!("the scheme {scheme}:// is not http://")),
        None => invalid(format!("it has no scheme; use http://{endpoint}")),
    }
}

impl Api {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:50051`, or a [`Connection`] with a token);
    /// nothing is dialled yet.
    pub fn new(endpoint: impl Into<Connection>) -> Self {
        let connection = endpoint.into();
        Self {
            endpoint: connection.url,
            token: connection.token_file,
            dry_run: connection.dry_run,
            client: None,
        }
    }

    /// The `authorization` header: the token file's token, else `EBS_TOKEN`'s, else none.
    fn authorization(&self) -> Result<Authorization, CliError> {
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => match std::env::var(TOKEN_ENV) {
                Ok(raw) if !raw.is_empty() => Some(Token::parse(&raw).map_err(|message| {
                    CliError::Arg(ArgError {
                        flag: TOKEN_ENV,
                        message,
                    })
                })?),
                _ => None,
            },
        };
        let header = token
            .map(|t| {
                format!("Bearer {}", t.secret()).parse().map_err(|_| {
                    CliError::Arg(ArgError {
                        flag: "--token-file",
                        message: "the token cannot travel in a header".to_owned(),
                    })
                })
            })
            .transpose()?;
        Ok(Authorization {
            bearer: header,
            dry_run: self.dry_run,
        })
    }

    async fn client(&mut self) -> Result<&mut Client, CliError> {
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let authorization = self.authorization()?;
                check_scheme(&self.endpoint)?;
                let endpoint = Endpoint::from_shared(self.endpoint.clone())
                    .map_err(|_| CliError::InvalidEndpoint {
                        endpoint: self.endpoint.clone(),
                        reason: "it is not a URL".to_owned(),
                    })?
                    .connect_timeout(CONNECT_TIMEOUT);
                let started = tokio::time::Instant::now();
                let channel = loop {
                    match endpoint.connect().await {
                        Ok(channel) => break channel,
                        Err(_) if started.elapsed() < STARTING_GRACE => {
                            tokio::time::sleep(REDIAL_EVERY).await;
                        }
                        Err(_) => {
                            return Err(CliError::Connect {
                                endpoint: self.endpoint.clone(),
                            });
                        }
                    }
                };
                VolumeServiceClient::with_interceptor(channel, authorization)
            }
        };
        Ok(self.client.insert(client))
    }

    fn reply<T>(
        &self,
        operation: &'static str,
        result: Result<Response<T>, Status>,
    ) -> Result<T, CliError> {
        result
            .map(Response::into_inner)
            .map_err(|status| CliError::from_status(operation, &self.endpoint, &status))
    }

    pub async fn create_volume(
        &mut self,
        request: pb::CreateVolumeRequest,
    ) -> Result<pb::Volume, CliError> {
        let result = self.client().await?.create_volume(request).await;
        self.reply("CreateVolume", result)
    }

    pub async fn describe_volumes(
        &mut self,
        request: pb::DescribeVolumesRequest,
    ) -> Result<pb::DescribeVolumesResponse, CliError> {
        let result = self.client().await?.describe_volumes(request).await;
        self.reply("DescribeVolumes", result)
    }

    pub async fn delete_volume(
        &mut self,
        request: pb::DeleteVolumeRequest,
    ) -> Result<(), CliError> {
        let result = self.client().await?.delete_volume(request).await;
        self.reply("DeleteVolume", result).map(drop)
    }

    pub async fn attach_volume(
        &mut self,
        request: pb::AttachVolumeRequest,
    ) -> Result<pb::VolumeAttachment, CliError> {
        let result = self.client().await?.attach_volume(request).await;
        self.reply("AttachVolume", result)
    }

    pub async fn detach_volume(
        &mut self,
        request: pb::DetachVolumeRequest,
    ) -> Result<pb::VolumeAttachment, CliError> {
        let result = self.client().await?.detach_volume(request).await;
        self.reply("DetachVolume", result)
    }

    pub async fn create_tags(&mut self, request: pb::CreateTagsRequest) -> Result<(), CliError> {
        let result = self.client().await?.create_tags(request).await;
        self.reply("CreateTags", result).map(drop)
    }

    pub async fn delete_tags(&mut self, request: pb::DeleteTagsRequest) -> Result<(), CliError> {
        let result = self.client().await?.delete_tags(request).await;
        self.reply("DeleteTags", result).map(drop)
    }

    pub async fn register_host(
        &mut self,
        request: pb::RegisterHostRequest,
    ) -> Result<pb::Host, CliError> {
        let result = self.client().await?.register_host(request).await;
        self.reply("RegisterHost", result)
    }

    pub async fn deregister_host(
        &mut self,
        request: pb::DeregisterHostRequest,
    ) -> Result<pb::DeregisterHostResponse, CliError> {
        let result = self.client().await?.deregister_host(request).await;
        self.reply("DeregisterHost", result)
    }

    pub async fn describe_hosts(
        &mut self,
        request: pb::DescribeHostsRequest,
    ) -> Result<pb::DescribeHostsResponse, CliError> {
        let result = self.client().await?.describe_hosts(request).await;
        self.reply("DescribeRegisteredHosts", result)
    }

    pub async fn modify_volume(
        &mut self,
        request: pb::ModifyVolumeRequest,
    ) -> Result<pb::VolumeModification, CliError> {
        let result = self.client().await?.modify_volume(request).await;
        self.reply("ModifyVolume", result)
    }

    pub async fn describe_volumes_modifications(
        &mut self,
        request: pb::DescribeVolumesModificationsRequest,
    ) -> Result<pb::DescribeVolumesModificationsResponse, CliError> {
        let result = self
            .client()
            .await?
            .describe_volumes_modifications(request)
            .await;
        self.reply("DescribeVolumesModifications", result)
    }

    pub async fn get_volume_metrics(
        &mut self,
        request: pb::GetVolumeMetricsRequest,
    ) -> Result<pb::GetVolumeMetricsResponse, CliError> {
        let result = self.client().await?.get_volume_metrics(request).await;
        self.reply("GetVolumeMetrics", result)
    }

    pub async fn describe_volume_status(
        &mut self,
        request: pb::DescribeVolumeStatusRequest,
    ) -> Result<pb::DescribeVolumeStatusResponse, CliError> {
        let result = self.client().await?.describe_volume_status(request).await;
        self.reply("DescribeVolumeStatus", result)
    }

    pub async fn describe_volume_attribute(
        &mut self,
        request: pb::DescribeVolumeAttributeRequest,
    ) -> Result<pb::DescribeVolumeAttributeResponse, CliError> {
        let result = self
            .client()
            .await?
            .describe_volume_attribute(request)
            .await;
        self.reply("DescribeVolumeAttribute", result)
    }

    pub async fn modify_volume_attribute(
        &mut self,
        request: pb::ModifyVolumeAttributeRequest,
    ) -> Result<pb::ModifyVolumeAttributeResponse, CliError> {
        let result = self.client().await?.modify_volume_attribute(request).await;
        self.reply("ModifyVolumeAttribute", result)
    }

    pub async fn enable_volume_io(
        &mut self,
        request: pb::EnableVolumeIoRequest,
    ) -> Result<pb::EnableVolumeIoResponse, CliError> {
        let result = self.client().await?.enable_volume_io(request).await;
        self.reply("EnableVolumeIO", result)
    }

    pub async fn reservation_register(
        &mut self,
        request: pb::ReservationRegisterRequest,
    ) -> Result<pb::ReservationStatus, CliError> {
        let result = self.client().await?.reservation_register(request).await;
        self.reply("ReservationRegister", result)
    }

    pub async fn reservation_acquire(
        &mut self,
        request: pb::ReservationAcquireRequest,
    ) -> Result<pb::ReservationStatus, CliError> {
        let result = self.client().await?.reservation_acquire(request).await;
        self.reply("ReservationAcquire", result)
    }

    pub async fn reservation_release(
        &mut self,
        request: pb::ReservationReleaseRequest,
    ) -> Result<pb::ReservationStatus, CliError> {
        let result = self.client().await?.reservation_release(request).await;
        self.reply("ReservationRelease", result)
    }

    pub async fn reservation_report(
        &mut self,
        request: pb::ReservationReportRequest,
    ) -> Result<pb::ReservationStatus, CliError> {
        let result = self.client().await?.reservation_report(request).await;
        self.reply("ReservationReport", result)
    }

    pub async fn create_snapshot(
        &mut self,
        request: pb::CreateSnapshotRequest,
    ) -> Result<pb::Snapshot, CliError> {
        let result = self.client().await?.create_snapshot(request).await;
        self.reply("CreateSnapshot", result)
    }

    pub async fn describe_snapshots(
        &mut self,
        request: pb::DescribeSnapshotsRequest,
    ) -> Result<pb::DescribeSnapshotsResponse, CliError> {
        let result = self.client().await?.describe_snapshots(request).await;
        self.reply("DescribeSnapshots", result)
    }

    pub async fn delete_snapshot(
        &mut self,
        request: pb::DeleteSnapshotRequest,
    ) -> Result<(), CliError> {
        let result = self.client().await?.delete_snapshot(request).await;
        self.reply("DeleteSnapshot", result).map(drop)
    }

    pub async fn copy_snapshot(
        &mut self,
        request: pb::CopySnapshotRequest,
    ) -> Result<pb::CopySnapshotResponse, CliError> {
        let result = self.client().await?.copy_snapshot(request).await;
        self.reply("CopySnapshot", result)
    }

    pub async fn enable_fast_snapshot_restores(
        &mut self,
        request: pb::EnableFastSnapshotRestoresRequest,
    ) -> Result<pb::FastSnapshotRestoresResult, CliError> {
        let result = self
            .client()
            .await?
            .enable_fast_snapshot_restores(request)
            .await;
        self.reply("EnableFastSnapshotRestores", result)
    }

    pub async fn disable_fast_snapshot_restores(
        &mut self,
        request: pb::DisableFastSnapshotRestoresRequest,
    ) -> Result<pb::FastSnapshotRestoresResult, CliError> {
        let result = self
            .client()
            .await?
            .disable_fast_snapshot_restores(request)
            .await;
        self.reply("DisableFastSnapshotRestores", result)
    }

    pub async fn describe_fast_snapshot_restores(
        &mut self,
        request: pb::DescribeFastSnapshotRestoresRequest,
    ) -> Result<pb::DescribeFastSnapshotRestoresResponse, CliError> {
        let result = self
            .client()
            .await?
            .describe_fast_snapshot_restores(request)
            .await;
        self.reply("DescribeFastSnapshotRestores", result)
    }

    pub async fn describe_instance_types(
        &mut self,
        request: pb::DescribeInstanceTypesRequest,
    ) -> Result<pb::DescribeInstanceTypesResponse, CliError> {
        let result = self.client().await?.describe_instance_types(request).await;
        self.reply("DescribeInstanceTypes", result)
    }

    pub async fn register_image(
        &mut self,
        request: pb::RegisterImageRequest,
    ) -> Result<pb::RegisterImageResponse, CliError> {
        let result = self.client().await?.register_image(request).await;
        self.reply("RegisterImage", result)
    }

    pub async fn describe_images(
        &mut self,
        request: pb::DescribeImagesRequest,
    ) -> Result<pb::DescribeImagesResponse, CliError> {
        let result = self.client().await?.describe_images(request).await;
        self.reply("DescribeImages", result)
    }

    pub async fn deregister_image(
        &mut self,
        request: pb::DeregisterImageRequest,
    ) -> Result<(), CliError> {
        let result = self.client().await?.deregister_image(request).await;
        self.reply("DeregisterImage", result).map(drop)
    }

    pub async fn create_image(
        &mut self,
        request: pb::CreateImageRequest,
    ) -> Result<pb::CreateImageResponse, CliError> {
        let result = self.client().await?.create_image(request).await;
        self.reply("CreateImage", result)
    }

    pub async fn run_instances(
        &mut self,
        request: pb::RunInstancesRequest,
    ) -> Result<pb::Reservation, CliError> {
        let result = self.client().await?.run_instances(request).await;
        self.reply("RunInstances", result)
    }

    pub async fn describe_instances(
        &mut self,
        request: pb::DescribeInstancesRequest,
    ) -> Result<pb::DescribeInstancesResponse, CliError> {
        let result = self.client().await?.describe_instances(request).await;
        self.reply("DescribeInstances", result)
    }

    pub async fn start_instances(
        &mut self,
        request: pb::InstanceIdsRequest,
    ) -> Result<pb::InstanceStateChanges, CliError> {
        let result = self.client().await?.start_instances(request).await;
        self.reply("StartInstances", result)
    }

    pub async fn stop_instances(
        &mut self,
        request: pb::StopInstancesRequest,
    ) -> Result<pb::InstanceStateChanges, CliError> {
        let result = self.client().await?.stop_instances(request).await;
        self.reply("StopInstances", result)
    }

    pub async fn reboot_instances(
        &mut self,
        request: pb::InstanceIdsRequest,
    ) -> Result<(), CliError> {
        let result = self.client().await?.reboot_instances(request).await;
        self.reply("RebootInstances", result).map(drop)
    }

    pub async fn terminate_instances(
        &mut self,
        request: pb::InstanceIdsRequest,
    ) -> Result<pb::InstanceStateChanges, CliError> {
        let result = self.client().await?.terminate_instances(request).await;
        self.reply("TerminateInstances", result)
    }

    pub async fn get_console_output(
        &mut self,
        request: pb::GetConsoleOutputRequest,
    ) -> Result<pb::GetConsoleOutputResponse, CliError> {
        let result = self.client().await?.get_console_output(request).await;
        self.reply("GetConsoleOutput", result)
    }

    pub async fn get_cost_and_usage(
        &mut self,
        request: pb::GetCostAndUsageRequest,
    ) -> Result<pb::GetCostAndUsageResponse, CliError> {
        let result = self.client().await?.get_cost_and_usage(request).await;
        self.reply("GetCostAndUsage", result)
    }

    /// Every volume matching `request`, following `NextToken` page after page.
    pub async fn describe_all_volumes(
        &mut self,
        mut request: pb::DescribeVolumesRequest,
    ) -> Result<Vec<pb::Volume>, CliError> {
        let mut volumes = Vec::new();
        loop {
            let page = self.describe_volumes(request.clone()).await?;
            volumes.extend(page.volumes);
            if !next_page(page.next_token, &mut request.next_token) {
                return Ok(volumes);
            }
        }
    }

    /// Every snapshot matching `request`, following `NextToken` page after page.
    pub async fn describe_all_snapshots(
        &mut self,
        mut request: pb::DescribeSnapshotsRequest,
    ) -> Result<Vec<pb::Snapshot>, CliError> {
        let mut snapshots = Vec::new();
        loop {
            let page = self.describe_snapshots(request.clone()).await?;
            snapshots.extend(page.snapshots);
            if !next_page(page.next_token, &mut request.next_token) {
                return Ok(snapshots);
            }
        }
    }

    /// Every fast snapshot restore matching `request`, following `NextToken` page after page.
    pub async fn describe_all_fast_snapshot_restores(
        &mut self,
        mut request: pb::DescribeFastSnapshotRestoresRequest,
    ) -> Result<Vec<pb::FastSnapshotRestore>, CliError> {
        let mut restores = Vec::new();
        loop {
            let page = self
                .describe_fast_snapshot_restores(request.clone())
                .await?;
            restores.extend(page.fast_snapshot_restores);
            if !next_page(page.next_token, &mut request.next_token) {
                return Ok(restores);
            }
        }
    }

    /// Every instance type matching `request`, following `NextToken` page after page.
    pub async fn describe_all_instance_types(
        &mut self,
        mut request: pb::DescribeInstanceTypesRequest,
    ) -> Result<Vec<pb::InstanceTypeInfo>, CliError> {
        let mut types = Vec::new();
        loop {
            let page = self.describe_instance_types(request.clone()).await?;
            types.extend(page.instance_types);
            if !next_page(page.next_token, &mut request.next_token) {
                return Ok(types);
            }
        }
    }

    /// Every image matching `request`, following `NextToken` page after page.
    pub async fn describe_all_images(
        &mut self,
        mut request: pb::DescribeImagesRequest,
    ) -> Result<Vec<pb::Image>, CliError> {
        let mut images = Vec::new();
        loop {
            let page = self.describe_images(request.clone()).await?;
            images.extend(page.images);
            if !next_page(page.next_token, &mut request.next_token) {
                return Ok(images);
            }
        }
    }

    /// Every reservation matching `request`, following `NextToken` page after page.
    pub async fn describe_all_instances(
        &mut self,
        mut request: pb::DescribeInstancesRequest,
    ) -> Result<Vec<pb::Reservation>, CliError> {
        let mut reservations = Vec::new();
        loop {
            let page = self.describe_instances(request.clone()).await?;
            reservations.extend(page.reservations);
            if !next_page(page.next_token, &mut request.next_token) {
                return Ok(reservations);
            }
        }
    }
}

/// Moves a request's `token` on to the page after it; `false` when there is none.
///
/// A server repeating the token it was given would loop forever: that ends the listing too.
fn next_page(next: Option<String>, token: &mut Option<String>) -> bool {
    match next.filter(|t| !t.is_empty()) {
        Some(next) if token.as_ref() != Some(&next) => {
            *token = Some(next);
            true
        }
        _ => false,
    }
}
