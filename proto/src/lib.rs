//! Protobuf definitions and generated gRPC code.
//!
//! * [`ebs::v1`]: the volume control plane (volumes, attachments, tags, hosts).
//!
//! [`FILE_DESCRIPTOR_SET`] feeds gRPC server reflection.

/// Generated code lints are not ours to fix.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod ebs {
    /// `ebs.v1`: the volume service.
    pub mod v1 {
        tonic::include_proto!("ebs.v1");
    }
}

/// The encoded `FileDescriptorSet` of every `.proto` in this crate, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// gRPC metadata key carrying the EC2 error code (`VolumeInUse`, `InvalidVolume.NotFound`, …) of a failed call.
pub const EC2_ERROR_CODE_KEY: &str = "x-ec2-error-code";

/// The gRPC metadata key that makes a call a dry run (EC2's `DryRun`): with `true`, the server
/// answers `DryRunOperation` to a caller it would let make the call, and makes none.
pub const DRY_RUN_KEY: &str = "x-ec2-dry-run";

/// gRPC metadata key on a failed `WriteBlocks` stream: how many bytes of the stream were
/// written before the failure (the messages before the failed one).
pub const BYTES_WRITTEN_KEY: &str = "x-bytes-written";
