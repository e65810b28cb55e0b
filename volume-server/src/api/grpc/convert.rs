//! gRPC messages into the control plane's request types ([`crate::control::model`]).

use proto::ebs::v1 as pb;

use crate::control::model;

/// Converts every element of `v`.
pub(super) fn all<A: Into<B>, B>(v: Vec<A>) -> Vec<B> {
    v.into_iter().map(Into::into).collect()
}

impl From<pb::CreateVolumeRequest> for model::CreateVolumeRequest {
    fn from(p: pb::CreateVolumeRequest) -> Self {
        model::CreateVolumeRequest {
            availability_zone: p.availability_zone,
            size: p.size,
            volume_type: p.volume_type,
            iops: p.iops,
            throughput: p.throughput,
            snapshot_id: p.snapshot_id,
            multi_attach_enabled: p.multi_attach_enabled,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
            client_token: p.client_token,
            encrypted: p.encrypted,
            // gRPC has no KmsKeyId: an encrypted volume gets the account's default key.
            kms_key_id: None,
            volume_initialization_rate: p.volume_initialization_rate,
        }
    }
}

impl From<pb::DescribeVolumesRequest> for model::DescribeVolumesRequest {
    fn from(p: pb::DescribeVolumesRequest) -> Self {
        model::DescribeVolumesRequest {
            volume_ids: p.volume_ids,
            filters: p.filters.into_iter().map(Into::into).collect(),
            max_results: p.max_results,
            next_token: p.next_token,
        }
    }
}

impl From<pb::AttachVolumeRequest> for model::AttachVolumeRequest {
    fn from(p: pb::AttachVolumeRequest) -> Self {
        model::AttachVolumeRequest {
            volume_id: p.volume_id,
            instance_id: p.instance_id,
            device: p.device,
        }
    }
}

impl From<pb::DetachVolumeRequest> for model::DetachVolumeRequest {
    fn from(p: pb::DetachVolumeRequest) -> Self {
        model::DetachVolumeRequest {
            volume_id: p.volume_id,
            instance_id: p.instance_id,
            device: p.device,
            force: p.force,
        }
    }
}

impl From<pb::Tag> for model::Tag {
    fn from(p: pb::Tag) -> Self {
        model::Tag {
            key: p.key,
            value: p.value,
        }
    }
}

impl From<pb::DeleteTag> for model::DeleteTag {
    fn from(p: pb::DeleteTag) -> Self {
        model::DeleteTag {
            key: p.key,
            value: p.value,
        }
    }
}

impl From<pb::RegisterHostRequest> for model::RegisterHostRequest {
    fn from(p: pb::RegisterHostRequest) -> Self {
        model::RegisterHostRequest {
            name: p.name,
            availability_zone: p.availability_zone,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::ModifyVolumeRequest> for model::ModifyVolumeRequest {
    fn from(p: pb::ModifyVolumeRequest) -> Self {
        model::ModifyVolumeRequest {
            volume_id: p.volume_id,
            size: p.size,
            volume_type: p.volume_type,
            iops: p.iops,
            throughput: p.throughput,
            multi_attach_enabled: p.multi_attach_enabled,
        }
    }
}

impl From<pb::CreateSnapshotRequest> for model::CreateSnapshotRequest {
    fn from(p: pb::CreateSnapshotRequest) -> Self {
        model::CreateSnapshotRequest {
            volume_id: p.volume_id,
            description: p.description,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::DescribeSnapshotsRequest> for model::DescribeSnapshotsRequest {
    fn from(p: pb::DescribeSnapshotsRequest) -> Self {
        model::DescribeSnapshotsRequest {
            snapshot_ids: p.snapshot_ids,
            owner_ids: p.owner_ids,
            filters: p.filters.into_iter().map(Into::into).collect(),
            max_results: p.max_results,
            next_token: p.next_token,
        }
    }
}

impl From<pb::CopySnapshotRequest> for model::CopySnapshotRequest {
    fn from(p: pb::CopySnapshotRequest) -> Self {
        model::CopySnapshotRequest {
            source_region: p.source_region,
            source_snapshot_id: p.source_snapshot_id,
            description: p.description,
            destination_region: p.destination_region,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
            encrypted: p.encrypted,
            kms_key_id: None,
        }
    }
}

impl From<pb::StartSnapshotRequest> for model::StartSnapshotRequest {
    fn from(p: pb::StartSnapshotRequest) -> Self {
        model::StartSnapshotRequest {
            volume_size: p.volume_size,
            parent_snapshot_id: p.parent_snapshot_id,
            tags: p.tags.into_iter().map(Into::into).collect(),
            description: p.description,
            client_token: p.client_token,
            encrypted: p.encrypted,
            timeout: p.timeout,
        }
    }
}

impl From<pb::RunInstancesRequest> for model::RunInstancesRequest {
    fn from(p: pb::RunInstancesRequest) -> Self {
        model::RunInstancesRequest {
            image_id: p.image_id,
            instance_type: p.instance_type,
            min_count: p.min_count,
            max_count: p.max_count,
            placement: p.placement.map(Into::into),
            block_device_mappings: p
                .block_device_mappings
                .into_iter()
                .map(Into::into)
                .collect(),
            user_data: p.user_data,
            workload: p.workload,
            instance_initiated_shutdown_behavior: p.instance_initiated_shutdown_behavior,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
            client_token: p.client_token,
            disable_api_termination: p.disable_api_termination,
            subnet_id: p.subnet_id,
            security_group_ids: p.security_group_ids,
            security_groups: p.security_groups,
            key_name: None,
            metadata_options: None,
        }
    }
}

impl From<pb::ReservationRegisterRequest> for model::ReservationRegisterRequest {
    fn from(p: pb::ReservationRegisterRequest) -> Self {
        model::ReservationRegisterRequest {
            volume_id: p.volume_id,
            instance_id: p.instance_id,
            key: p.key,
            action: p.action,
            new_key: p.new_key,
        }
    }
}

impl From<pb::ReservationAcquireRequest> for model::ReservationAcquireRequest {
    fn from(p: pb::ReservationAcquireRequest) -> Self {
        model::ReservationAcquireRequest {
            volume_id: p.volume_id,
            instance_id: p.instance_id,
            key: p.key,
            r#type: p.r#type,
            action: p.action,
            preempt_key: p.preempt_key,
        }
    }
}

impl From<pb::ReservationReleaseRequest> for model::ReservationReleaseRequest {
    fn from(p: pb::ReservationReleaseRequest) -> Self {
        model::ReservationReleaseRequest {
            volume_id: p.volume_id,
            instance_id: p.instance_id,
            key: p.key,
            r#type: p.r#type,
            clear: p.clear,
        }
    }
}

impl From<pb::RegisterImageRequest> for model::RegisterImageRequest {
    fn from(p: pb::RegisterImageRequest) -> Self {
        model::RegisterImageRequest {
            name: p.name,
            description: p.description,
            root_device_name: p.root_device_name,
            block_device_mappings: p
                .block_device_mappings
                .into_iter()
                .map(Into::into)
                .collect(),
            architecture: p.architecture,
            virtualization_type: p.virtualization_type,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::PutSnapshotBlockRequest> for model::PutSnapshotBlockRequest {
    fn from(p: pb::PutSnapshotBlockRequest) -> Self {
        model::PutSnapshotBlockRequest {
            snapshot_id: p.snapshot_id,
            block_index: p.block_index,
            block_data: p.block_data,
            data_length: p.data_length,
            checksum: p.checksum,
            checksum_algorithm: p.checksum_algorithm,
            progress: p.progress,
        }
    }
}

impl From<pb::ListSnapshotBlocksRequest> for model::ListSnapshotBlocksRequest {
    fn from(p: pb::ListSnapshotBlocksRequest) -> Self {
        model::ListSnapshotBlocksRequest {
            snapshot_id: p.snapshot_id,
            max_results: p.max_results,
            next_token: p.next_token,
            starting_block_index: p.starting_block_index,
        }
    }
}

impl From<pb::ListChangedBlocksRequest> for model::ListChangedBlocksRequest {
    fn from(p: pb::ListChangedBlocksRequest) -> Self {
        model::ListChangedBlocksRequest {
            first_snapshot_id: p.first_snapshot_id,
            second_snapshot_id: p.second_snapshot_id,
            max_results: p.max_results,
            next_token: p.next_token,
            starting_block_index: p.starting_block_index,
        }
    }
}

impl From<pb::GetSnapshotBlockRequest> for model::GetSnapshotBlockRequest {
    fn from(p: pb::GetSnapshotBlockRequest) -> Self {
        model::GetSnapshotBlockRequest {
            snapshot_id: p.snapshot_id,
            block_index: p.block_index,
            block_token: p.block_token,
        }
    }
}

impl From<pb::CompleteSnapshotRequest> for model::CompleteSnapshotRequest {
    fn from(p: pb::CompleteSnapshotRequest) -> Self {
        model::CompleteSnapshotRequest {
            snapshot_id: p.snapshot_id,
            changed_blocks_count: p.changed_blocks_count,
            checksum: p.checksum,
            checksum_algorithm: p.checksum_algorithm,
            checksum_aggregation_method: p.checksum_aggregation_method,
        }
    }
}

impl From<pb::EnableFastSnapshotRestoresRequest> for model::EnableFastSnapshotRestoresRequest {
    fn from(p: pb::EnableFastSnapshotRestoresRequest) -> Self {
        model::EnableFastSnapshotRestoresRequest {
            availability_zones: p.availability_zones,
            source_snapshot_ids: p.source_snapshot_ids,
        }
    }
}

impl From<pb::DisableFastSnapshotRestoresRequest> for model::DisableFastSnapshotRestoresRequest {
    fn from(p: pb::DisableFastSnapshotRestoresRequest) -> Self {
        model::DisableFastSnapshotRestoresRequest {
            availability_zones: p.availability_zones,
            source_snapshot_ids: p.source_snapshot_ids,
        }
    }
}

impl From<pb::DescribeFastSnapshotRestoresRequest> for model::DescribeFastSnapshotRestoresRequest {
    fn from(p: pb::DescribeFastSnapshotRestoresRequest) -> Self {
        model::DescribeFastSnapshotRestoresRequest {
            filters: p.filters.into_iter().map(Into::into).collect(),
            max_results: p.max_results,
            next_token: p.next_token,
        }
    }
}

impl From<pb::DescribeInstancesRequest> for model::DescribeInstancesRequest {
    fn from(p: pb::DescribeInstancesRequest) -> Self {
        model::DescribeInstancesRequest {
            instance_ids: p.instance_ids,
            filters: p.filters.into_iter().map(Into::into).collect(),
            max_results: p.max_results,
            next_token: p.next_token,
        }
    }
}

impl From<pb::DescribeImagesRequest> for model::DescribeImagesRequest {
    fn from(p: pb::DescribeImagesRequest) -> Self {
        model::DescribeImagesRequest {
            image_ids: p.image_ids,
            owners: p.owners,
            filters: p.filters.into_iter().map(Into::into).collect(),
            max_results: p.max_results,
            next_token: p.next_token,
        }
    }
}

impl From<pb::CreateImageRequest> for model::CreateImageRequest {
    fn from(p: pb::CreateImageRequest) -> Self {
        model::CreateImageRequest {
            instance_id: p.instance_id,
            name: p.name,
            description: p.description,
            no_reboot: p.no_reboot,
            tag_specifications: p.tag_specifications.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::TagSpecification> for model::TagSpecification {
    fn from(p: pb::TagSpecification) -> Self {
        model::TagSpecification {
            resource_type: p.resource_type,
            tags: p.tags.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::Filter> for model::Filter {
    fn from(p: pb::Filter) -> Self {
        model::Filter {
            name: p.name,
            values: p.values,
        }
    }
}

impl From<pb::Placement> for model::Placement {
    fn from(p: pb::Placement) -> Self {
        model::Placement {
            availability_zone: p.availability_zone,
        }
    }
}

impl From<pb::BlockDeviceMapping> for model::BlockDeviceMapping {
    fn from(p: pb::BlockDeviceMapping) -> Self {
        model::BlockDeviceMapping {
            device_name: p.device_name,
            ebs: p.ebs.map(Into::into),
            virtual_name: p.virtual_name,
            no_device: p.no_device,
        }
    }
}

impl From<pb::EbsBlockDevice> for model::EbsBlockDevice {
    fn from(p: pb::EbsBlockDevice) -> Self {
        model::EbsBlockDevice {
            snapshot_id: p.snapshot_id,
            volume_size: p.volume_size,
            volume_type: p.volume_type,
            iops: p.iops,
            throughput: p.throughput,
            delete_on_termination: p.delete_on_termination,
            encrypted: p.encrypted,
            kms_key_id: None,
        }
    }
}
