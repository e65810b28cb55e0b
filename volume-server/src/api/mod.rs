//! The protocols over the control plane, each a thin encoder of its domain types: gRPC
//! (`ebs.v1.VolumeService`) and the AWS wire protocols on the AWS endpoint.

pub mod aws;
pub mod grpc;
