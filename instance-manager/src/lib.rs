//! The instance manager: what an instance is and what it may do with its volumes.
//!
//! This crate knows nothing of gRPC transport or NBD; it owns:
//! * [`types`]: the EC2 instance type catalog (families M, T, C, R, X, I, D, H, P, G: vCPUs,
//!   memory, instance store, EBS-optimized limits, GPUs) and the DescribeInstanceTypes query over
//!   it, with its conversion to `ebs.v1` messages.
//! * [`lifecycle`]: the instance state machine: states, allowed actions, workload exits.
//! * [`workload`]: the workload process of an instance: spawn (process group, console log, cgroup
//!   limits, v2 or v1), adopt after a restart, wait, stop.
//! * [`devices`]: telling the workload where its devices are: `devices.json` and `EBS_*`
//!   environment variables.
//!
//! * [`boot`], [`localdisk`], [`init`]: booting an AMI's root filesystem: the boot configuration,
//!   the instance's disks as host block devices, and the init that runs the instance in its own
//!   namespaces.
//! * [`network`]: a booted instance's private network: a bridge per VPC, a namespace and a veth
//!   per instance.

pub mod boot;
pub mod devices;
pub mod elastic;
pub mod firstboot;
pub mod init;
pub mod lifecycle;
pub mod localdisk;
pub mod network;
pub mod types;
pub mod workload;

pub use types::{DescribeError, InstanceType};
