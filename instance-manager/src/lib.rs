//! The instance manager: what an instance is and what it may do with its volumes.
//!
//! This crate knows nothing of gRPC transport or NBD; it owns:
//! * [`types`]: the EC2 instance type catalog (families M, T, C, R, X, I, D, H, P, G: vCPUs,
//!   memory, instance store, EBS-optimized limits, GPUs) and the DescribeInstanceTypes query over
//!   it, with its conversion to `ebs.v1` messages.
//!
//! AMIs registered from snapshots and the instance lifecycle (run, stop, start, terminate, with the
//! workload process told where its devices are) come next.

pub mod types;

pub use types::{DescribeError, InstanceType};
