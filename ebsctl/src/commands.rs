//! Runs one subcommand: flags → request, the call, reply → what is printed.

use std::io::{IsTerminal as _, Write};

use proto::ebs::v1 as pb;
use serde::Serialize;

use crate::args;
use crate::cli::{self, Cli, Command, Waiter};
use crate::client::Api;
use crate::cost;
use crate::error::CliError;
use crate::output::{self, OutputFormat};
use crate::shapes;
use crate::top;
use crate::waiter::{self, Describe, Kind};

/// Runs the parsed command line; returns the text to print on stdout, if any.
///
/// Structured arguments are read before the server is dialled, so a typo never waits on the network.
pub async fn run(cli: Cli) -> Result<Option<String>, CliError> {
    let format = cli.global.output;
    let mut api = Api::new(cli.global.endpoint);
    match cli.command {
        Command::CreateVolume(a) => {
            let request = pb::CreateVolumeRequest {
                availability_zone: a.availability_zone,
                size: a.size,
                volume_type: a.volume_type,
                iops: a.iops,
                throughput: a.throughput,
                snapshot_id: a.snapshot_id,
                volume_initialization_rate: a.volume_initialization_rate,
                multi_attach_enabled: cli::tri_state(
                    a.multi_attach_enabled,
                    a.no_multi_attach_enabled,
                ),
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
                client_token: a.client_token,
                encrypted: cli::tri_state(a.encrypted, a.no_encrypted),
            };
            let volume = api.create_volume(request).await?;
            print(format, "CreateVolume", &shapes::Volume::from(volume))
        }
        Command::DescribeVolumes(a) => {
            let paginate_myself = a.max_results.is_none() && a.next_token.is_none();
            let request = pb::DescribeVolumesRequest {
                volume_ids: a.volume_ids,
                filters: args::filters(&a.filters)?,
                max_results: a.max_results,
                next_token: a.next_token,
            };
            let (volumes, next_token) = if paginate_myself {
                (api.describe_all_volumes(request).await?, None)
            } else {
                let page = api.describe_volumes(request).await?;
                (page.volumes, page.next_token.filter(|t| !t.is_empty()))
            };
            let reply = shapes::Volumes {
                volumes: volumes.into_iter().map(shapes::Volume::from).collect(),
                next_token,
            };
            print(format, "DescribeVolumes", &reply)
        }
        Command::DeleteVolume(a) => {
            let request = pb::DeleteVolumeRequest {
                volume_id: a.volume_id,
            };
            api.delete_volume(request).await?;
            Ok(None)
        }
        Command::AttachVolume(a) => {
            let request = pb::AttachVolumeRequest {
                volume_id: a.volume_id,
                instance_id: a.instance_id,
                device: a.device,
            };
            let attachment = api.attach_volume(request).await?;
            print(
                format,
                "AttachVolume",
                &shapes::Attachment::reply(attachment),
            )
        }
        Command::DetachVolume(a) => {
            let request = pb::DetachVolumeRequest {
                volume_id: a.volume_id,
                instance_id: a.instance_id,
                device: a.device,
                force: a.force,
            };
            let attachment = api.detach_volume(request).await?;
            print(
                format,
                "DetachVolume",
                &shapes::Attachment::reply(attachment),
            )
        }
        Command::CreateTags(a) => {
            let request = pb::CreateTagsRequest {
                resources: a.resources,
                tags: args::tags(&a.tags)?,
            };
            api.create_tags(request).await?;
            Ok(None)
        }
        Command::DeleteTags(a) => {
            let request = pb::DeleteTagsRequest {
                resources: a.resources,
                tags: args::delete_tags(&a.tags)?,
            };
            api.delete_tags(request).await?;
            Ok(None)
        }
        Command::RegisterHost(a) => {
            let request = pb::RegisterHostRequest {
                name: a.name,
                availability_zone: a.availability_zone,
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
            };
            let host = api.register_host(request).await?;
            print(format, "RegisterHost", &shapes::Host::from(host))
        }
        Command::DeregisterHost(a) => {
            let request = pb::DeregisterHostRequest {
                instance_id: a.instance_id,
            };
            let reply = api.deregister_host(request).await?;
            let reply = shapes::Detached {
                detached: reply
                    .detached
                    .into_iter()
                    .map(shapes::Attachment::reply)
                    .collect(),
            };
            print(format, "DeregisterHost", &reply)
        }
        Command::DescribeRegisteredHosts(a) => {
            let request = pb::DescribeHostsRequest {
                instance_ids: a.instance_ids,
            };
            let reply = api.describe_hosts(request).await?;
            let reply = shapes::Hosts {
                hosts: reply.hosts.into_iter().map(shapes::Host::from).collect(),
            };
            print(format, "DescribeRegisteredHosts", &reply)
        }
        Command::ModifyVolume(a) => {
            let request = pb::ModifyVolumeRequest {
                volume_id: a.volume_id,
                size: a.size,
                volume_type: a.volume_type,
                iops: a.iops,
                throughput: a.throughput,
                multi_attach_enabled: cli::tri_state(
                    a.multi_attach_enabled,
                    a.no_multi_attach_enabled,
                ),
            };
            let modification = api.modify_volume(request).await?;
            let reply = shapes::ModifiedVolume {
                volume_modification: shapes::VolumeModification::from(modification),
            };
            print(format, "ModifyVolume", &reply)
        }
        Command::DescribeVolumesModifications(a) => {
            let request = pb::DescribeVolumesModificationsRequest {
                volume_ids: a.volume_ids,
                filters: args::filters(&a.filters)?,
            };
            let reply = api.describe_volumes_modifications(request).await?;
            let reply = shapes::VolumesModifications {
                volumes_modifications: reply
                    .volumes_modifications
                    .into_iter()
                    .map(shapes::VolumeModification::from)
                    .collect(),
            };
            print(format, "DescribeVolumesModifications", &reply)
        }
        Command::GetVolumeMetrics(a) => {
            let request = pb::GetVolumeMetricsRequest {
                volume_ids: a.volume_id.into_iter().chain(a.volume_ids).collect(),
            };
            let reply = api.get_volume_metrics(request).await?;
            let reply = shapes::Metrics {
                metrics: reply
                    .metrics
                    .into_iter()
                    .map(shapes::VolumeMetrics::from)
                    .collect(),
            };
            print(format, "GetVolumeMetrics", &reply)
        }
        Command::DescribeVolumeStatus(a) => {
            let request = pb::DescribeVolumeStatusRequest {
                volume_ids: a.volume_ids,
            };
            let reply = api.describe_volume_status(request).await?;
            let reply = shapes::VolumeStatuses {
                volume_statuses: reply
                    .volume_statuses
                    .into_iter()
                    .map(shapes::VolumeStatusItem::from)
                    .collect(),
            };
            print(format, "DescribeVolumeStatus", &reply)
        }
        Command::DescribeVolumeAttribute(a) => {
            let request = pb::DescribeVolumeAttributeRequest {
                volume_id: a.volume_id,
                attribute: a.attribute,
            };
            let reply = api.describe_volume_attribute(request).await?;
            print(
                format,
                "DescribeVolumeAttribute",
                &shapes::VolumeAttribute::from(reply),
            )
        }
        Command::ModifyVolumeAttribute(a) => {
            let request = pb::ModifyVolumeAttributeRequest {
                volume_id: a.volume_id,
                auto_enable_io: a.auto_enable_io,
            };
            api.modify_volume_attribute(request).await?;
            Ok(None)
        }
        Command::EnableVolumeIo(a) => {
            let request = pb::EnableVolumeIoRequest {
                volume_id: a.volume_id,
            };
            api.enable_volume_io(request).await?;
            Ok(None)
        }
        Command::ResvRegister(a) => {
            let request = pb::ReservationRegisterRequest {
                new_key: a.checked_new_key()?,
                volume_id: a.volume_id,
                instance_id: a.instance_id,
                key: a.key,
                action: a.action.as_str().to_owned(),
            };
            let report = api.reservation_register(request).await?;
            print_report(format, "ReservationRegister", report)
        }
        Command::ResvAcquire(a) => {
            let request = pb::ReservationAcquireRequest {
                preempt_key: a.checked_preempt_key()?,
                volume_id: a.volume_id,
                instance_id: a.instance_id,
                key: a.key,
                r#type: pb::ReservationType::from(a.reservation_type).into(),
                action: a.action.as_str().to_owned(),
            };
            let report = api.reservation_acquire(request).await?;
            print_report(format, "ReservationAcquire", report)
        }
        Command::ResvRelease(a) => {
            let request = pb::ReservationReleaseRequest {
                volume_id: a.volume_id,
                instance_id: a.instance_id,
                key: a.key,
                r#type: a
                    .reservation_type
                    .map_or(pb::ReservationType::Unspecified, pb::ReservationType::from)
                    .into(),
                clear: a.clear,
            };
            let report = api.reservation_release(request).await?;
            print_report(format, "ReservationRelease", report)
        }
        Command::ResvReport(a) => {
            let request = pb::ReservationReportRequest {
                volume_id: a.volume_id,
            };
            let report = api.reservation_report(request).await?;
            print_report(format, "ReservationReport", report)
        }
        Command::Top(a) => {
            // Reports are written as they come, not returned at the end.
            top::top(&mut api, a, &mut std::io::stdout()).await?;
            Ok(None)
        }
        Command::CreateSnapshot(a) => {
            let request = pb::CreateSnapshotRequest {
                volume_id: a.volume_id,
                description: a.description,
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
            };
            let snapshot = api.create_snapshot(request).await?;
            print(format, "CreateSnapshot", &shapes::Snapshot::from(snapshot))
        }
        Command::DescribeSnapshots(a) => {
            let paginate_myself = a.max_results.is_none() && a.next_token.is_none();
            let request = pb::DescribeSnapshotsRequest {
                snapshot_ids: a.snapshot_ids,
                owner_ids: a.owner_ids,
                filters: args::filters(&a.filters)?,
                max_results: a.max_results,
                next_token: a.next_token,
            };
            let (snapshots, next_token) = if paginate_myself {
                (api.describe_all_snapshots(request).await?, None)
            } else {
                let page = api.describe_snapshots(request).await?;
                (page.snapshots, page.next_token.filter(|t| !t.is_empty()))
            };
            let reply = shapes::Snapshots {
                snapshots: snapshots.into_iter().map(shapes::Snapshot::from).collect(),
                next_token,
            };
            print(format, "DescribeSnapshots", &reply)
        }
        Command::DeleteSnapshot(a) => {
            let request = pb::DeleteSnapshotRequest {
                snapshot_id: a.snapshot_id,
            };
            api.delete_snapshot(request).await?;
            Ok(None)
        }
        Command::CopySnapshot(a) => {
            let request = pb::CopySnapshotRequest {
                source_region: a.source_region,
                source_snapshot_id: a.source_snapshot_id,
                description: a.description,
                destination_region: a.destination_region,
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
                encrypted: cli::tri_state(a.encrypted, a.no_encrypted),
            };
            let reply = api.copy_snapshot(request).await?;
            let reply = shapes::CopiedSnapshot {
                snapshot_id: reply.snapshot_id,
            };
            print(format, "CopySnapshot", &reply)
        }
        Command::EnableFastSnapshotRestores(a) => {
            let request = pb::EnableFastSnapshotRestoresRequest {
                availability_zones: a.availability_zones,
                source_snapshot_ids: a.source_snapshot_ids,
            };
            let reply = api.enable_fast_snapshot_restores(request).await?;
            let reply = shapes::FastSnapshotRestoresResult::from(reply);
            print(format, "EnableFastSnapshotRestores", &reply)
        }
        Command::DisableFastSnapshotRestores(a) => {
            let request = pb::DisableFastSnapshotRestoresRequest {
                availability_zones: a.availability_zones,
                source_snapshot_ids: a.source_snapshot_ids,
            };
            let reply = api.disable_fast_snapshot_restores(request).await?;
            let reply = shapes::FastSnapshotRestoresResult::from(reply);
            print(format, "DisableFastSnapshotRestores", &reply)
        }
        Command::DescribeFastSnapshotRestores(a) => {
            let paginate_myself = a.max_results.is_none() && a.next_token.is_none();
            let request = pb::DescribeFastSnapshotRestoresRequest {
                filters: args::filters(&a.filters)?,
                max_results: a.max_results,
                next_token: a.next_token,
            };
            let (restores, next_token) = if paginate_myself {
                (
                    api.describe_all_fast_snapshot_restores(request).await?,
                    None,
                )
            } else {
                let page = api.describe_fast_snapshot_restores(request).await?;
                (
                    page.fast_snapshot_restores,
                    page.next_token.filter(|t| !t.is_empty()),
                )
            };
            let reply = shapes::FastSnapshotRestores {
                fast_snapshot_restores: restores
                    .into_iter()
                    .map(shapes::FastSnapshotRestore::from)
                    .collect(),
                next_token,
            };
            print(format, "DescribeFastSnapshotRestores", &reply)
        }
        Command::DescribeInstanceTypes(a) => {
            let paginate_myself = a.max_results.is_none() && a.next_token.is_none();
            let request = pb::DescribeInstanceTypesRequest {
                instance_types: a.instance_types,
                filters: args::filters(&a.filters)?,
                max_results: a.max_results,
                next_token: a.next_token,
            };
            let (types, next_token) = if paginate_myself {
                (api.describe_all_instance_types(request).await?, None)
            } else {
                let page = api.describe_instance_types(request).await?;
                (
                    page.instance_types,
                    page.next_token.filter(|t| !t.is_empty()),
                )
            };
            let reply = shapes::InstanceTypes {
                instance_types: types.into_iter().map(shapes::InstanceType::from).collect(),
                next_token,
            };
            print(format, "DescribeInstanceTypes", &reply)
        }
        Command::RegisterImage(a) => {
            let request = pb::RegisterImageRequest {
                name: a.name,
                description: a.description,
                root_device_name: a.root_device_name,
                block_device_mappings: args::block_device_mappings(&a.block_device_mappings)?,
                architecture: a.architecture,
                virtualization_type: a.virtualization_type,
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
            };
            let reply = api.register_image(request).await?;
            let reply = shapes::RegisteredImage {
                image_id: reply.image_id,
            };
            print(format, "RegisterImage", &reply)
        }
        Command::DescribeImages(a) => {
            let paginate_myself = a.max_results.is_none() && a.next_token.is_none();
            let request = pb::DescribeImagesRequest {
                image_ids: a.image_ids,
                owners: a.owners,
                filters: args::filters(&a.filters)?,
                max_results: a.max_results,
                next_token: a.next_token,
            };
            let (images, next_token) = if paginate_myself {
                (api.describe_all_images(request).await?, None)
            } else {
                let page = api.describe_images(request).await?;
                (page.images, page.next_token.filter(|t| !t.is_empty()))
            };
            let reply = shapes::Images {
                images: images.into_iter().map(shapes::Image::from).collect(),
                next_token,
            };
            print(format, "DescribeImages", &reply)
        }
        Command::DeregisterImage(a) => {
            let request = pb::DeregisterImageRequest {
                image_id: a.image_id,
            };
            api.deregister_image(request).await?;
            Ok(None)
        }
        Command::CreateImage(a) => {
            let request = pb::CreateImageRequest {
                instance_id: a.instance_id,
                name: a.name,
                description: a.description,
                no_reboot: cli::tri_state(a.no_reboot, a.reboot).unwrap_or(false),
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
            };
            let reply = api.create_image(request).await?;
            let reply = shapes::RegisteredImage {
                image_id: reply.image_id,
            };
            print(format, "CreateImage", &reply)
        }
        Command::RunInstances(a) => {
            let (min_count, max_count) = a.counts();
            let request = pb::RunInstancesRequest {
                image_id: a.image_id,
                instance_type: a.instance_type,
                min_count,
                max_count,
                placement: args::placement(a.placement.as_deref())?,
                block_device_mappings: args::block_device_mappings(&a.block_device_mappings)?,
                user_data: a.user_data.as_deref().map(args::user_data).transpose()?,
                workload: a.workload,
                instance_initiated_shutdown_behavior: a.instance_initiated_shutdown_behavior,
                tag_specifications: args::tag_specifications(&a.tag_specifications)?,
                client_token: a.client_token,
                disable_api_termination: cli::tri_state(
                    a.disable_api_termination,
                    a.no_disable_api_termination,
                )
                .unwrap_or(false),
                subnet_id: a.subnet_id,
                security_group_ids: a.security_group_ids,
                security_groups: a.security_groups,
            };
            let reservation = api.run_instances(request).await?;
            print(
                format,
                "RunInstances",
                &shapes::Reservation::from(reservation),
            )
        }
        Command::DescribeInstances(a) => {
            let paginate_myself = a.max_results.is_none() && a.next_token.is_none();
            let request = pb::DescribeInstancesRequest {
                instance_ids: a.instance_ids,
                filters: args::filters(&a.filters)?,
                max_results: a.max_results,
                next_token: a.next_token,
            };
            let (reservations, next_token) = if paginate_myself {
                (api.describe_all_instances(request).await?, None)
            } else {
                let page = api.describe_instances(request).await?;
                (page.reservations, page.next_token.filter(|t| !t.is_empty()))
            };
            let reply = shapes::Reservations {
                reservations: reservations
                    .into_iter()
                    .map(shapes::Reservation::from)
                    .collect(),
                next_token,
            };
            print(format, "DescribeInstances", &reply)
        }
        Command::StartInstances(a) => {
            let request = pb::InstanceIdsRequest {
                instance_ids: a.instance_ids,
            };
            let changes = api.start_instances(request).await?;
            let reply = shapes::StartingInstances {
                starting_instances: shapes::InstanceStateChange::all(changes),
            };
            print(format, "StartInstances", &reply)
        }
        Command::StopInstances(a) => {
            let request = pb::StopInstancesRequest {
                instance_ids: a.instance_ids,
                force: a.force,
                hibernate: a.hibernate,
            };
            let changes = api.stop_instances(request).await?;
            let reply = shapes::StoppingInstances {
                stopping_instances: shapes::InstanceStateChange::all(changes),
            };
            print(format, "StopInstances", &reply)
        }
        Command::RebootInstances(a) => {
            let request = pb::InstanceIdsRequest {
                instance_ids: a.instance_ids,
            };
            api.reboot_instances(request).await?;
            Ok(None)
        }
        Command::TerminateInstances(a) => {
            let request = pb::InstanceIdsRequest {
                instance_ids: a.instance_ids,
            };
            let changes = api.terminate_instances(request).await?;
            let reply = shapes::TerminatingInstances {
                terminating_instances: shapes::InstanceStateChange::all(changes),
            };
            print(format, "TerminateInstances", &reply)
        }
        Command::GetConsoleOutput(a) => {
            // `--latest` asks for what is always sent: the last 64 KiB.
            let request = pb::GetConsoleOutputRequest {
                instance_id: a.instance_id,
            };
            let reply = api.get_console_output(request).await?;
            print(
                format,
                "GetConsoleOutput",
                &shapes::ConsoleOutput::from(reply),
            )
        }
        Command::Cost(a) => {
            use billing::calendar;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let group_by = match a.group_by.as_slice() {
                [] => vec!["SERVICE".to_string()],
                [none] if none.eq_ignore_ascii_case("NONE") => Vec::new(),
                g => g.to_vec(),
            };
            let request = pb::GetCostAndUsageRequest {
                start: a
                    .start
                    .unwrap_or_else(|| calendar::date(calendar::month_start(now))),
                end: a
                    .end
                    .unwrap_or_else(|| calendar::date(now + calendar::DAY_MS)),
                granularity: a.granularity,
                metrics: vec![a.metric.clone()],
                group_by,
            };
            let reply = api.get_cost_and_usage(request).await?;
            let series = cost::Series::of(&reply, &a.metric);
            if let Some(path) = &a.svg {
                let title = format!("{} by period", a.metric);
                std::fs::write(path, cost::svg(&series, &title))
                    .map_err(|e| CliError::Output(format!("writing {}: {e}", path.display())))?;
            }
            if a.chart {
                return Ok(Some(format!(
                    "{}\n{}",
                    cost::table(&series),
                    cost::terminal_chart(&series, 50)
                )));
            }
            print(format, "GetCostAndUsage", &cost::Reply::from(&reply))
        }
        Command::Wait { waiter } => {
            let (kind, describe, poll) = match waiter {
                Waiter::VolumeAvailable(a) => volume_waiter(Kind::VolumeAvailable, a)?,
                Waiter::VolumeInUse(a) => volume_waiter(Kind::VolumeInUse, a)?,
                Waiter::VolumeDeleted(a) => volume_waiter(Kind::VolumeDeleted, a)?,
                Waiter::SnapshotCompleted(a) => {
                    let request = pb::DescribeSnapshotsRequest {
                        snapshot_ids: a.snapshot_ids,
                        owner_ids: a.owner_ids,
                        filters: args::filters(&a.filters)?,
                        max_results: None,
                        next_token: None,
                    };
                    (
                        Kind::SnapshotCompleted,
                        Describe::Snapshots(request),
                        a.poll,
                    )
                }
                Waiter::InstanceRunning(a) => instance_waiter(Kind::InstanceRunning, a)?,
                Waiter::InstanceStopped(a) => instance_waiter(Kind::InstanceStopped, a)?,
                Waiter::InstanceTerminated(a) => instance_waiter(Kind::InstanceTerminated, a)?,
                Waiter::InstanceExists(a) => instance_waiter(Kind::InstanceExists, a)?,
                Waiter::ImageAvailable(a) => {
                    let request = pb::DescribeImagesRequest {
                        image_ids: a.image_ids,
                        owners: a.owners,
                        filters: args::filters(&a.filters)?,
                        max_results: None,
                        next_token: None,
                    };
                    (Kind::ImageAvailable, Describe::Images(request), a.poll)
                }
            };
            // The progress bar is for a person at a terminal, not for a script or a log.
            let mut stderr = std::io::stderr();
            let watched = std::io::stdout().is_terminal() && stderr.is_terminal();
            let progress = watched.then_some(&mut stderr as &mut dyn Write);
            let (delay, max_attempts) = kind.defaults();
            waiter::wait(
                &mut api,
                kind,
                describe,
                poll.delay.unwrap_or(delay),
                poll.max_attempts.unwrap_or(max_attempts),
                progress,
            )
            .await?;
            Ok(None)
        }
    }
}

/// A volume waiter's describe call, from its flags.
fn volume_waiter(
    kind: Kind,
    a: cli::WaitArgs,
) -> Result<(Kind, Describe, cli::PollArgs), CliError> {
    let request = pb::DescribeVolumesRequest {
        volume_ids: a.volume_ids,
        filters: args::filters(&a.filters)?,
        max_results: None,
        next_token: None,
    };
    Ok((kind, Describe::Volumes(request), a.poll))
}

/// An instance waiter's describe call, from its flags.
fn instance_waiter(
    kind: Kind,
    a: cli::InstanceWaitArgs,
) -> Result<(Kind, Describe, cli::PollArgs), CliError> {
    let request = pb::DescribeInstancesRequest {
        instance_ids: a.instance_ids,
        filters: args::filters(&a.filters)?,
        max_results: None,
        next_token: None,
    };
    Ok((kind, Describe::Instances(request), a.poll))
}

fn print(
    format: OutputFormat,
    operation: &str,
    reply: &impl Serialize,
) -> Result<Option<String>, CliError> {
    output::render(reply, format, operation)
        .map(Some)
        .map_err(|e| CliError::Output(e.to_string()))
}

/// Every `resv-*` command prints the volume's reservation report.
fn print_report(
    format: OutputFormat,
    operation: &str,
    report: pb::ReservationStatus,
) -> Result<Option<String>, CliError> {
    print(format, operation, &shapes::ReservationReport::from(report))
}

#[cfg(test)]
mod tests;
