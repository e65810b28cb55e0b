//! The protocols over the control plane, each a thin encoder of its domain types: gRPC
//! (`ebs.v1.VolumeService`), the AWS wire protocols on the AWS endpoint, and the instance
//! metadata service.

pub mod aws;
pub mod grpc;
pub mod imds;

use std::time::{Duration, UNIX_EPOCH};

/// RFC 3339 UTC with milliseconds (`2026-12-07T04:09:50.821Z`), as EC2 writes timestamps and
/// the AWS CLI prints them.
pub fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
