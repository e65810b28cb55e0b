//! The command line: global options, subcommands and flags, mirroring `aws ec2`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use proto::ebs::v1 as pb;

use crate::args::ArgError;
use crate::output::OutputFormat;

/// The endpoint used when neither `--endpoint` nor `EBS_ENDPOINT` is set.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// Command-line client for the EBS emulator's volume server, shaped like `aws ec2`.
#[derive(Debug, Parser)]
#[command(name = "ebsctl", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The server and the credentials to call it with.
    #[command(flatten)]
    pub endpoint: Connection,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
    /// The command's parameters as the AWS CLI takes them: a JSON object of the operation's
    /// input members (`{"VolumeId": "vol-…", "Size": 20}`), or `file://PATH` holding one.
    /// Flags given on the command line win over its members.
    #[arg(long, global = true, value_name = "JSON")]
    pub cli_input_json: Option<String>,
}

/// The server to call and the credentials to call it with.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// URL of the volume server's gRPC endpoint.
    #[arg(id = "endpoint", long = "endpoint", global = true, value_name = "URL", env = "EBS_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub url: String,
    /// File holding the server's bearer token (volume-server --grpc-token-file); a trailing
    /// newline is ignored. Without it the token is read from EBS_TOKEN, if set.
    #[arg(long, global = true, value_name = "PATH", env = "EBS_TOKEN_FILE", value_parser = read_token_file)]
    pub token_file: Option<Token>,
    /// Checks whether you may make the call without making it: the server answers
    /// DryRunOperation (it would have succeeded) or the error that refused you.
    #[arg(long, global = true, overrides_with = "no_dry_run")]
    pub dry_run: bool,
    /// Makes the call (the default).
    #[arg(long, global = true, overrides_with = "dry_run")]
    pub no_dry_run: bool,
}

impl From<String> for Connection {
    /// `url` without a token file (`EBS_TOKEN` still applies), not a dry run.
    fn from(url: String) -> Self {
        Connection {
            url,
            token_file: None,
            dry_run: false,
            no_dry_run: false,
        }
    }
}

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A token as read from a file or the environment: one trailing newline is dropped; the rest
    /// must be printable ASCII without spaces (it travels in an HTTP header).
    pub fn parse(raw: &str) -> Result<Token, String> {
        let token = raw
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(raw);
        if token.is_empty() {
            return Err("the token is empty".to_owned());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".to_owned());
        }
        Ok(Token(token.to_owned()))
    }

    /// The token itself.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

/// `--token-file`: reads and checks the token when the command line is parsed.
fn read_token_file(path: &str) -> Result<Token, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Token::parse(&raw).map_err(|e| format!("{path}: {e}"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a volume; prints it.
    CreateVolume(CreateVolumeArgs),
    /// Lists volumes (all pages unless --max-results or --next-token is given).
    DescribeVolumes(DescribeVolumesArgs),
    /// Deletes an available volume.
    DeleteVolume(DeleteVolumeArgs),
    /// Attaches a volume to an instance or registered host; prints the attachment and its NbdUri.
    AttachVolume(AttachVolumeArgs),
    /// Detaches a volume; when it returns, the attachment is fenced.
    DetachVolume(DetachVolumeArgs),
    /// Adds or overwrites tags on volumes and instances.
    CreateTags(CreateTagsArgs),
    /// Removes tags from volumes and instances.
    DeleteTags(DeleteTagsArgs),
    /// Registers this (or another) host so volumes can be attached to it; prints its instance ID.
    RegisterHost(RegisterHostArgs),
    /// Deregisters a host, detaching its volumes first.
    DeregisterHost(DeregisterHostArgs),
    /// Lists registered hosts with their attachments (named apart from `aws ec2
    /// describe-hosts`, which lists Dedicated Hosts; registered hosts also show in
    /// describe-instances).
    DescribeRegisteredHosts(DescribeRegisteredHostsArgs),
    /// Changes a volume's size (grow only), type, IOPS, throughput or Multi-Attach; prints the modification.
    ModifyVolume(ModifyVolumeArgs),
    /// Lists the latest modification of volumes, with its state and progress.
    DescribeVolumesModifications(DescribeVolumesModificationsArgs),
    /// Prints CloudWatch-style metrics of attached volumes (counters since the volume was opened).
    GetVolumeMetrics(GetVolumeMetricsArgs),
    /// Prints each volume's status checks: `impaired` once its file failed an I/O.
    DescribeVolumeStatus(DescribeVolumeStatusArgs),
    /// Prints a volume attribute: autoEnableIO or productCodes.
    DescribeVolumeAttribute(DescribeVolumeAttributeArgs),
    /// Sets a volume's autoEnableIO: with it, an I/O failure fails only its own request and the
    /// volume goes on taking I/O (writes acknowledged before may be lost).
    ModifyVolumeAttribute(ModifyVolumeAttributeArgs),
    /// Lets a volume stopped by an I/O failure (`impaired`) take I/O again; check its data.
    #[command(name = "enable-volume-io")]
    EnableVolumeIo(EnableVolumeIoArgs),
    /// Live I/O rates of attached volumes, one line per volume every interval, like iostat.
    ///
    /// Columns: reads and writes per second, MiB read and written per second, operations counted
    /// the EBS way per second, mean milliseconds per operation, requests queued now, burst balance
    /// %, and whether demand exceeded the provisioned IOPS / throughput in the last minute (`-`
    /// where not applicable). Plain text whatever --output says.
    Top(TopArgs),
    /// Registers, unregisters or replaces a host's reservation key on a volume; prints the
    /// reservation report.
    ///
    /// NVMe-style reservations (Multi-Attach io2 only), as nvme-cli's resv-register.
    ResvRegister(ResvRegisterArgs),
    /// Acquires, preempts or preempts-and-aborts a volume's reservation; prints the reservation
    /// report.
    ResvAcquire(ResvAcquireArgs),
    /// Releases a volume's reservation, or with --clear removes every registration too; prints the
    /// reservation report.
    ResvRelease(ResvReleaseArgs),
    /// Prints a volume's reservation: generation, type, holder and registered keys.
    ResvReport(ResvReportArgs),
    /// Takes a point-in-time snapshot of a volume; prints it (`pending` at first).
    ///
    /// The volume stays writable; the snapshot holds its data as of the call. Only blocks changed
    /// since the volume's previous snapshot are read. Besides the EC2 fields, the snapshot carries an
    /// `Ebsemu` object with the emulator's own counters, which are not EC2 fields: `BlockCount`
    /// (non-zero blocks the snapshot references) and `BlocksWritten` (blocks it read and stored).
    CreateSnapshot(CreateSnapshotArgs),
    /// Lists snapshots (all pages unless --max-results or --next-token is given).
    ///
    /// Each snapshot has the EC2 fields plus an `Ebsemu` object with the emulator's own counters,
    /// which are not EC2 fields: `BlockCount` (non-zero blocks the snapshot references) and
    /// `BlocksWritten` (blocks it read and stored).
    DescribeSnapshots(DescribeSnapshotsArgs),
    /// Deletes a snapshot; blocks no other snapshot uses are reclaimed in the background.
    DeleteSnapshot(DeleteSnapshotArgs),
    /// Copies a completed snapshot into this region, sending only the blocks its store lacks;
    /// prints the new SnapshotId.
    CopySnapshot(CopySnapshotArgs),
    /// Enables fast snapshot restore of snapshots in availability zones; prints the (snapshot, zone)
    /// pairs that succeeded and, grouped by snapshot, the errors of those that failed.
    ///
    /// A volume created from such a snapshot in such a zone is fully initialized when it becomes
    /// available, while the zone has credits for the snapshot. A pair goes through `enabling` and
    /// `optimizing` to `enabled`. Pairs that fail do not make the command fail.
    EnableFastSnapshotRestores(FastSnapshotRestoresArgs),
    /// Disables fast snapshot restore of snapshots in availability zones; prints the (snapshot, zone)
    /// pairs that succeeded and, grouped by snapshot, the errors of those that failed.
    DisableFastSnapshotRestores(FastSnapshotRestoresArgs),
    /// Lists the (snapshot, zone) pairs with fast snapshot restore and their states (all pages
    /// unless --max-results or --next-token is given).
    DescribeFastSnapshotRestores(DescribeFastSnapshotRestoresArgs),
    /// Lists EC2 instance types: vCPUs, memory, instance store, EBS-optimized limits, GPUs,
    /// network (all pages unless --max-results or --next-token is given).
    DescribeInstanceTypes(DescribeInstanceTypesArgs),
    /// Registers an AMI whose root device (and any other EBS device) is restored from completed
    /// snapshots; prints its ImageId.
    RegisterImage(RegisterImageArgs),
    /// Lists AMIs (all pages unless --max-results or --next-token is given).
    DescribeImages(DescribeImagesArgs),
    /// Deregisters an AMI; its snapshots are kept.
    DeregisterImage(DeregisterImageArgs),
    /// Creates an AMI from an instance: snapshots its EBS volumes (rebooting it first unless
    /// --no-reboot); prints the new ImageId. `wait image-available` waits for its snapshots.
    CreateImage(CreateImageArgs),
    /// Launches instances from an AMI: creates and attaches their volumes, then starts the
    /// workload; prints the reservation.
    ///
    /// Besides the EC2 fields, each instance carries the emulator's own, which are not EC2 fields:
    /// `InstanceStoreDevices`, `WorkloadPid` (while the workload runs), `DevicesFile` (the JSON file
    /// telling the workload where its devices are) and `DeviceUris` (each device's nbd:// URI while
    /// the instance runs).
    RunInstances(RunInstancesArgs),
    /// Lists instances, grouped by reservation (all pages unless --max-results or --next-token is
    /// given).
    DescribeInstances(DescribeInstancesArgs),
    /// Starts stopped instances; prints each one's previous and current state.
    StartInstances(InstanceIdsArgs),
    /// Stops running instances (their EBS volumes are kept, their instance store erased); prints
    /// each one's previous and current state.
    StopInstances(StopInstancesArgs),
    /// Reboots running instances: restarts their workloads.
    RebootInstances(InstanceIdsArgs),
    /// Terminates instances, deleting the volumes marked DeleteOnTermination; prints each one's
    /// previous and current state.
    TerminateInstances(InstanceIdsArgs),
    /// Prints an instance's console output: its workload's standard output and error (the last
    /// 64 KiB), decoded.
    GetConsoleOutput(GetConsoleOutputArgs),
    /// What the caller's usage cost (Cost Explorer's GetCostAndUsage): the reply, or with
    /// `--chart` a table and a stacked bar chart in the terminal; `--svg FILE` also writes the
    /// chart as SVG.
    Cost(CostArgs),
    /// Waits until volumes, snapshots, instances or AMIs reach a state.
    Wait {
        #[command(subcommand)]
        waiter: Waiter,
    },
}

#[derive(Debug, Args)]
pub struct CreateVolumeArgs {
    /// The availability zone, e.g. us-east-1a.
    #[arg(long, value_name = "AZ")]
    pub availability_zone: String,
    /// Size in GiB (required unless --snapshot-id is given).
    #[arg(long, value_name = "GIB")]
    pub size: Option<i32>,
    /// gp2, gp3, io1, io2, st1, sc1 or standard.
    #[arg(long, value_name = "TYPE")]
    pub volume_type: Option<String>,
    /// Provisioned IOPS (gp3, io1, io2).
    #[arg(long)]
    pub iops: Option<i32>,
    /// Throughput in MiB/s (gp3).
    #[arg(long, value_name = "MIBPS")]
    pub throughput: Option<i32>,
    /// Snapshot to restore the volume from. The volume is usable at once; its blocks are
    /// fetched from the snapshot on first read and in the background.
    #[arg(long, value_name = "SNAPSHOT_ID")]
    pub snapshot_id: Option<String>,
    /// MiB/s (100-300) at which a volume restored from --snapshot-id is initialized in the
    /// background (default: the server's rate).
    #[arg(long, value_name = "MIBPS")]
    pub volume_initialization_rate: Option<i32>,
    /// Allow attaching the volume to several instances (io1/io2).
    #[arg(long, overrides_with = "no_multi_attach_enabled")]
    pub multi_attach_enabled: bool,
    /// Attach the volume to one instance at a time (the default).
    #[arg(long, overrides_with = "multi_attach_enabled")]
    pub no_multi_attach_enabled: bool,
    /// Encrypt the volume: not supported yet (the server answers UnsupportedOperation).
    #[arg(long, overrides_with = "no_encrypted")]
    pub encrypted: bool,
    /// Do not encrypt the volume (the default).
    #[arg(long, overrides_with = "encrypted")]
    pub no_encrypted: bool,
    /// Tags, e.g. 'ResourceType=volume,Tags=[{Key=Name,Value=db}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
    /// Idempotency token: a retry with the same token returns the same volume.
    #[arg(long, value_name = "TOKEN")]
    pub client_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct DescribeVolumesArgs {
    #[arg(long, num_args = 1.., value_name = "VOLUME_ID")]
    pub volume_ids: Vec<String>,
    /// Filters, e.g. Name=status,Values=available,in-use or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Page size (5-500): prints one page and its NextToken.
    #[arg(long, value_name = "N")]
    pub max_results: Option<i32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteVolumeArgs {
    #[arg(long)]
    pub volume_id: String,
}

#[derive(Debug, Args)]
pub struct AttachVolumeArgs {
    #[arg(long)]
    pub volume_id: String,
    #[arg(long)]
    pub instance_id: String,
    /// Device name, e.g. /dev/sdf.
    #[arg(long)]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct DetachVolumeArgs {
    #[arg(long)]
    pub volume_id: String,
    /// Required when the volume has several attachments (Multi-Attach).
    #[arg(long)]
    pub instance_id: Option<String>,
    #[arg(long)]
    pub device: Option<String>,
    /// Detach even if the host does not release the volume.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CreateTagsArgs {
    /// Volume or instance IDs.
    #[arg(long, num_args = 1.., required = true, value_name = "ID")]
    pub resources: Vec<String>,
    /// Tags, e.g. Key=Name,Value=db or JSON.
    #[arg(long, num_args = 1.., required = true, value_name = "TAG")]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteTagsArgs {
    /// Volume or instance IDs.
    #[arg(long, num_args = 1.., required = true, value_name = "ID")]
    pub resources: Vec<String>,
    /// Tags to delete (Key=a deletes whatever the value); none deletes every tag.
    #[arg(long, num_args = 1.., value_name = "TAG")]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RegisterHostArgs {
    /// A name for the host.
    #[arg(long)]
    pub name: String,
    /// The availability zone the host is in.
    #[arg(long, value_name = "AZ")]
    pub availability_zone: String,
    /// Tags, e.g. 'ResourceType=instance,Tags=[{Key=Name,Value=web}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeregisterHostArgs {
    #[arg(long)]
    pub instance_id: String,
}

#[derive(Debug, Args)]
pub struct DescribeRegisteredHostsArgs {
    #[arg(long, num_args = 1.., value_name = "INSTANCE_ID")]
    pub instance_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ModifyVolumeArgs {
    #[arg(long)]
    pub volume_id: String,
    /// New size in GiB (it may only grow).
    #[arg(long, value_name = "GIB")]
    pub size: Option<i32>,
    /// New type: gp2, gp3, io1, io2, st1, sc1 or standard.
    #[arg(long, value_name = "TYPE")]
    pub volume_type: Option<String>,
    /// New provisioned IOPS (gp3, io1, io2).
    #[arg(long)]
    pub iops: Option<i32>,
    /// New throughput in MiB/s (gp3).
    #[arg(long, value_name = "MIBPS")]
    pub throughput: Option<i32>,
    /// Allow attaching the volume to several instances (io1/io2).
    #[arg(long, overrides_with = "no_multi_attach_enabled")]
    pub multi_attach_enabled: bool,
    /// Attach the volume to one instance at a time.
    #[arg(long, overrides_with = "multi_attach_enabled")]
    pub no_multi_attach_enabled: bool,
}

#[derive(Debug, Args)]
pub struct DescribeVolumesModificationsArgs {
    #[arg(long, num_args = 1.., value_name = "VOLUME_ID")]
    pub volume_ids: Vec<String>,
    /// Filters (modification-state, volume-id, target-volume-type, original-volume-type), e.g.
    /// Name=modification-state,Values=modifying,optimizing or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetVolumeMetricsArgs {
    /// One volume.
    #[arg(long, value_name = "VOLUME_ID", conflicts_with = "volume_ids")]
    pub volume_id: Option<String>,
    /// Several volumes (neither flag: every attached volume).
    #[arg(long, num_args = 1.., value_name = "VOLUME_ID")]
    pub volume_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DescribeVolumeStatusArgs {
    /// Volumes (none: every volume).
    #[arg(long, num_args = 1.., value_name = "VOLUME_ID")]
    pub volume_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DescribeVolumeAttributeArgs {
    #[arg(long)]
    pub volume_id: String,
    /// autoEnableIO or productCodes.
    #[arg(long, value_parser = ["autoEnableIO", "productCodes"])]
    pub attribute: String,
}

#[derive(Debug, Args)]
pub struct ModifyVolumeAttributeArgs {
    #[arg(long)]
    pub volume_id: String,
    /// Keep the volume taking I/O through failures.
    #[arg(
        long,
        overrides_with = "no_auto_enable_io",
        required_unless_present = "no_auto_enable_io"
    )]
    pub auto_enable_io: bool,
    /// Stop the volume at its first I/O failure (the default).
    #[arg(long, overrides_with = "auto_enable_io")]
    pub no_auto_enable_io: bool,
}

#[derive(Debug, Args)]
pub struct EnableVolumeIoArgs {
    #[arg(long)]
    pub volume_id: String,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between two reports, fractions allowed.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// Reports to print before exiting (default: until interrupted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Only these volumes (default: every attached volume).
    #[arg(long, num_args = 1.., value_name = "VOLUME_ID")]
    pub volume_ids: Vec<String>,
}

/// A reservation type (NVMe numbering), as `--type` spells it and the report prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReservationType {
    /// Only the holder writes; every host reads.
    WriteExclusive,
    /// Only the holder reads or writes.
    ExclusiveAccess,
    /// Registered hosts write; every host reads.
    WriteExclusiveRegistrantsOnly,
    /// Only registered hosts read or write.
    ExclusiveAccessRegistrantsOnly,
    /// As write-exclusive-registrants-only, every registrant holding the reservation.
    WriteExclusiveAllRegistrants,
    /// As exclusive-access-registrants-only, every registrant holding the reservation.
    ExclusiveAccessAllRegistrants,
}

impl From<ReservationType> for pb::ReservationType {
    fn from(t: ReservationType) -> Self {
        match t {
            ReservationType::WriteExclusive => Self::WriteExclusive,
            ReservationType::ExclusiveAccess => Self::ExclusiveAccess,
            ReservationType::WriteExclusiveRegistrantsOnly => Self::WriteExclusiveRegistrantsOnly,
            ReservationType::ExclusiveAccessRegistrantsOnly => Self::ExclusiveAccessRegistrantsOnly,
            ReservationType::WriteExclusiveAllRegistrants => Self::WriteExclusiveAllRegistrants,
            ReservationType::ExclusiveAccessAllRegistrants => Self::ExclusiveAccessAllRegistrants,
        }
    }
}

/// `resv-register --action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegisterAction {
    /// Register `--key` (the host has no key yet).
    Register,
    /// Remove the host's registration `--key`.
    Unregister,
    /// Replace the host's key `--key` with `--new-key`.
    Replace,
}

impl RegisterAction {
    /// The request's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Unregister => "unregister",
            Self::Replace => "replace",
        }
    }
}

/// `resv-acquire --action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcquireAction {
    /// Take the reservation.
    Acquire,
    /// Remove the registrations of `--preempt-key` (and take their reservation).
    Preempt,
    /// As preempt, and drain the preempted hosts' I/O in flight.
    PreemptAbort,
}

impl AcquireAction {
    /// The request's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acquire => "acquire",
            Self::Preempt => "preempt",
            Self::PreemptAbort => "preempt-abort",
        }
    }
}

#[derive(Debug, Args)]
pub struct ResvRegisterArgs {
    #[arg(long)]
    pub volume_id: String,
    /// The attached instance (or registered host) acting.
    #[arg(long)]
    pub instance_id: String,
    /// register: the key to register; unregister, replace: the host's current key. Decimal or 0x hex.
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub key: u64,
    /// What to do with --key.
    #[arg(long, value_enum, default_value_t = RegisterAction::Register)]
    pub action: RegisterAction,
    /// replace (required): the key replacing --key. Decimal or 0x hex.
    #[arg(long, value_name = "KEY", value_parser = parse_key, required_if_eq("action", "replace"))]
    pub new_key: Option<u64>,
}

impl ResvRegisterArgs {
    /// The request's `new_key`: `--new-key` with replace, 0 otherwise. Given to another action it is
    /// a usage error rather than silently ignored.
    pub fn checked_new_key(&self) -> Result<u64, ArgError> {
        match (self.action, self.new_key) {
            (RegisterAction::Replace, Some(key)) => Ok(key),
            (RegisterAction::Replace, None) => Err(ArgError {
                flag: "--new-key",
                message: "required with --action replace".to_owned(),
            }),
            (_, None) => Ok(0),
            (action, Some(_)) => Err(ArgError {
                flag: "--new-key",
                message: format!("only valid with --action replace, not {}", action.as_str()),
            }),
        }
    }
}

#[derive(Debug, Args)]
pub struct ResvAcquireArgs {
    #[arg(long)]
    pub volume_id: String,
    /// The attached instance (or registered host) acting.
    #[arg(long)]
    pub instance_id: String,
    /// The acting host's current key. Decimal or 0x hex.
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub key: u64,
    /// The reservation type to hold.
    #[arg(long = "type", value_name = "TYPE", value_enum)]
    pub reservation_type: ReservationType,
    /// How to take the reservation.
    #[arg(long, value_enum, default_value_t = AcquireAction::Acquire)]
    pub action: AcquireAction,
    /// preempt, preempt-abort (required): the key whose registrations are removed. Decimal or 0x hex.
    #[arg(
        long,
        value_name = "KEY",
        value_parser = parse_key,
        required_if_eq_any([("action", "preempt"), ("action", "preempt-abort")])
    )]
    pub preempt_key: Option<u64>,
}

impl ResvAcquireArgs {
    /// The request's `preempt_key`: `--preempt-key` with preempt / preempt-abort, 0 otherwise. Given
    /// to acquire it is a usage error rather than silently ignored.
    pub fn checked_preempt_key(&self) -> Result<u64, ArgError> {
        match (self.action, self.preempt_key) {
            (AcquireAction::Acquire, None) => Ok(0),
            (AcquireAction::Acquire, Some(_)) => Err(ArgError {
                flag: "--preempt-key",
                message: "only valid with --action preempt or preempt-abort, not acquire"
                    .to_owned(),
            }),
            (_, Some(key)) => Ok(key),
            (action, None) => Err(ArgError {
                flag: "--preempt-key",
                message: format!("required with --action {}", action.as_str()),
            }),
        }
    }
}

#[derive(Debug, Args)]
pub struct ResvReleaseArgs {
    #[arg(long)]
    pub volume_id: String,
    /// The attached instance (or registered host) acting.
    #[arg(long)]
    pub instance_id: String,
    /// The acting host's current key. Decimal or 0x hex.
    #[arg(long, value_name = "KEY", value_parser = parse_key)]
    pub key: u64,
    /// The type of the reservation held (optional with --clear, which ignores it).
    #[arg(
        long = "type",
        value_name = "TYPE",
        value_enum,
        required_unless_present = "clear"
    )]
    pub reservation_type: Option<ReservationType>,
    /// Remove every registration and the reservation instead.
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Args)]
pub struct ResvReportArgs {
    #[arg(long)]
    pub volume_id: String,
}

/// A reservation key: a decimal or `0x`-prefixed hexadecimal u64.
fn parse_key(s: &str) -> Result<u64, String> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    // from_str_radix would also take a sign.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "`{s}` is not a key: a decimal or 0x-prefixed hexadecimal number"
        ));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("`{s}` is not a key: over 64 bits"))
}

#[derive(Debug, Args)]
pub struct CreateSnapshotArgs {
    /// The volume to snapshot.
    #[arg(long)]
    pub volume_id: String,
    /// A description of the snapshot.
    #[arg(long)]
    pub description: Option<String>,
    /// Tags, e.g. 'ResourceType=snapshot,Tags=[{Key=Name,Value=nightly}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DescribeSnapshotsArgs {
    #[arg(long, num_args = 1.., value_name = "SNAPSHOT_ID")]
    pub snapshot_ids: Vec<String>,
    /// Owners: `self` or an account ID (every snapshot here is owned by `self`).
    #[arg(long, num_args = 1.., value_name = "OWNER")]
    pub owner_ids: Vec<String>,
    /// Filters (snapshot-id, volume-id, status, description, volume-size, tag:KEY, tag-key), e.g.
    /// Name=status,Values=pending,completed or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Page size (5-1000): prints one page and its NextToken.
    #[arg(long, value_name = "N")]
    pub max_results: Option<i32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteSnapshotArgs {
    #[arg(long)]
    pub snapshot_id: String,
}

#[derive(Debug, Args)]
pub struct CopySnapshotArgs {
    /// The region whose snapshot store holds the source snapshot.
    #[arg(long, value_name = "REGION")]
    pub source_region: String,
    /// The snapshot to copy (it must be completed).
    #[arg(long, value_name = "SNAPSHOT_ID")]
    pub source_snapshot_id: String,
    /// A description of the copy.
    #[arg(long)]
    pub description: Option<String>,
    /// The region of the copy: the server's own region, which is also the default.
    #[arg(long, value_name = "REGION")]
    pub destination_region: Option<String>,
    /// Tags, e.g. 'ResourceType=snapshot,Tags=[{Key=Name,Value=dr}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
    /// Encrypt the copy: not supported yet (the server answers UnsupportedOperation).
    #[arg(long, overrides_with = "no_encrypted")]
    pub encrypted: bool,
    /// Do not ask for encryption (the default).
    #[arg(long, overrides_with = "encrypted")]
    pub no_encrypted: bool,
}

/// `enable-fast-snapshot-restores` and `disable-fast-snapshot-restores`: every snapshot in every
/// zone.
#[derive(Debug, Args)]
pub struct FastSnapshotRestoresArgs {
    /// Availability zones, e.g. us-east-1a.
    #[arg(long, num_args = 1.., required = true, value_name = "AZ")]
    pub availability_zones: Vec<String>,
    /// Snapshots, e.g. snap-0123456789abcdef0.
    #[arg(long, num_args = 1.., required = true, value_name = "SNAPSHOT_ID")]
    pub source_snapshot_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DescribeFastSnapshotRestoresArgs {
    /// Filters (availability-zone, snapshot-id, state, owner-id), e.g.
    /// Name=state,Values=optimizing,enabled or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Page size (1-200): prints one page and its NextToken.
    #[arg(long, value_name = "N")]
    pub max_results: Option<i32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct DescribeInstanceTypesArgs {
    /// Instance types, e.g. m5.large i3.xlarge (not with --max-results).
    #[arg(long, num_args = 1.., value_name = "TYPE")]
    pub instance_types: Vec<String>,
    /// Filters (instance-type, current-generation, vcpu-info.default-vcpus,
    /// memory-info.size-in-mib, instance-storage-supported, instance-storage-info.total-size-in-gb,
    /// ebs-info.ebs-optimized-info.maximum-iops, burstable-performance-supported,
    /// processor-info.supported-architecture), e.g. Name=instance-type,Values=m5.* or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Page size (5-100): prints one page and its NextToken.
    #[arg(long, value_name = "N")]
    pub max_results: Option<i32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegisterImageArgs {
    /// A name for the AMI: 3-128 letters, digits and ()[] ./-'@_, unique among your AMIs.
    #[arg(long)]
    pub name: String,
    /// The root device, e.g. /dev/xvda: one of the mappings, with an Ebs.SnapshotId.
    #[arg(long, value_name = "DEVICE")]
    pub root_device_name: String,
    /// The devices, e.g. 'DeviceName=/dev/xvda,Ebs={SnapshotId=snap-…,VolumeSize=8}'
    /// DeviceName=/dev/sdb,VirtualName=ephemeral0 DeviceName=/dev/sdc,NoDevice= or JSON.
    #[arg(long, num_args = 1.., required = true, value_name = "MAPPING")]
    pub block_device_mappings: Vec<String>,
    /// A description of the AMI.
    #[arg(long)]
    pub description: Option<String>,
    /// x86_64 (the default), arm64 or i386.
    #[arg(long, value_name = "ARCH")]
    pub architecture: Option<String>,
    /// hvm (the default).
    #[arg(long, value_name = "TYPE")]
    pub virtualization_type: Option<String>,
    /// Tags, e.g. 'ResourceType=image,Tags=[{Key=Name,Value=web}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DescribeImagesArgs {
    /// AMIs, e.g. ami-0123456789abcdef0 (not with --max-results).
    #[arg(long, num_args = 1.., value_name = "IMAGE_ID")]
    pub image_ids: Vec<String>,
    /// Owners: `self` or an account ID (every AMI here is owned by `self`).
    #[arg(long, num_args = 1.., value_name = "OWNER")]
    pub owners: Vec<String>,
    /// Filters (image-id, name, state, architecture, root-device-name, root-device-type,
    /// virtualization-type, block-device-mapping.snapshot-id, description, owner-id, tag:KEY,
    /// tag-key), e.g. Name=name,Values=web-* or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Page size (5-1000): prints one page and its NextToken.
    #[arg(long, value_name = "N")]
    pub max_results: Option<i32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeregisterImageArgs {
    #[arg(long)]
    pub image_id: String,
}

#[derive(Debug, Args)]
pub struct CreateImageArgs {
    /// The instance whose EBS volumes make the AMI.
    #[arg(long)]
    pub instance_id: String,
    /// A name for the AMI: 3-128 letters, digits and ()[] ./-'@_, unique among your AMIs.
    #[arg(long)]
    pub name: String,
    /// A description of the AMI.
    #[arg(long)]
    pub description: Option<String>,
    /// Snapshot the volumes while the workload runs (crash-consistent only).
    #[arg(long, overrides_with = "reboot")]
    pub no_reboot: bool,
    /// Stop the workload while the volumes are snapshotted, then restart it (the default).
    #[arg(long, overrides_with = "no_reboot")]
    pub reboot: bool,
    /// Tags, e.g. 'ResourceType=image,Tags=[{Key=Name,Value=web}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
}

/// `run-instances --count`: `N` (exactly N) or `MIN:MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub min: i32,
    pub max: i32,
}

/// `--count N` or `--count MIN:MAX`, positive integers.
fn parse_count(s: &str) -> Result<Count, String> {
    let number = |n: &str| {
        n.trim()
            .parse::<i32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{s}` is not a count: N or MIN:MAX, positive integers"))
    };
    match s.split_once(':') {
        Some((min, max)) => Ok(Count {
            min: number(min)?,
            max: number(max)?,
        }),
        None => number(s).map(|n| Count { min: n, max: n }),
    }
}

#[derive(Debug, Args)]
pub struct RunInstancesArgs {
    /// The AMI to launch, e.g. ami-0123456789abcdef0.
    #[arg(long)]
    pub image_id: String,
    /// e.g. m5.large (the server's default) or m5d.xlarge.
    #[arg(long, value_name = "TYPE")]
    pub instance_type: Option<String>,
    /// How many instances: N, or MIN:MAX to launch as many as possible up to MAX (default 1).
    #[arg(long, value_name = "N|MIN:MAX", value_parser = parse_count, conflicts_with_all = ["min_count", "max_count"])]
    pub count: Option<Count>,
    /// The fewest instances to launch (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub min_count: Option<i32>,
    /// The most instances to launch (default: --min-count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub max_count: Option<i32>,
    /// Where to launch, e.g. AvailabilityZone=us-east-1a or JSON (default: the server's choice).
    #[arg(long, value_name = "PLACEMENT")]
    pub placement: Option<String>,
    /// Devices overlaid on the AMI's by device name, e.g.
    /// 'DeviceName=/dev/sdf,Ebs={VolumeSize=100,VolumeType=gp3}'
    /// DeviceName=/dev/sdb,VirtualName=ephemeral0 DeviceName=/dev/sdc,NoDevice= or JSON.
    #[arg(long, num_args = 1.., value_name = "MAPPING")]
    pub block_device_mappings: Vec<String>,
    /// A script run as the workload when --workload is not given: the text, or file://PATH.
    /// Sent base64-encoded, as the AWS CLI does.
    #[arg(long, value_name = "TEXT|file://PATH")]
    pub user_data: Option<String>,
    /// The workload: a shell command line (`sh -c`), told where its devices are. This server's
    /// extension to RunInstances.
    #[arg(long, value_name = "COMMAND")]
    pub workload: Option<String>,
    /// What happens when the workload exits on its own: stop (the default) or terminate.
    #[arg(long, value_name = "BEHAVIOR", value_parser = ["stop", "terminate"])]
    pub instance_initiated_shutdown_behavior: Option<String>,
    /// Tags, e.g. 'ResourceType=instance,Tags=[{Key=Name,Value=web}]'
    /// 'ResourceType=volume,Tags=[{Key=app,Value=web}]' or JSON.
    #[arg(long, num_args = 1.., value_name = "SPEC")]
    pub tag_specifications: Vec<String>,
    /// Idempotency token: a retry with the same token returns the same reservation.
    #[arg(long, value_name = "TOKEN")]
    pub client_token: Option<String>,
    /// Refuse terminate-instances on the instances.
    #[arg(long, overrides_with = "no_disable_api_termination")]
    pub disable_api_termination: bool,
    /// Allow terminate-instances on the instances (the default).
    #[arg(long, overrides_with = "disable_api_termination")]
    pub no_disable_api_termination: bool,
    /// A default subnet: the instances go to its zone.
    #[arg(long, value_name = "SUBNET_ID")]
    pub subnet_id: Option<String>,
    /// Security groups by id (the default VPC's `default` group is the one there is).
    #[arg(long, num_args = 1.., value_name = "GROUP_ID")]
    pub security_group_ids: Vec<String>,
    /// Security groups by name (`default`).
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub security_groups: Vec<String>,
}

impl RunInstancesArgs {
    /// The request's (`min_count`, `max_count`): --count, else --min-count (default 1) and
    /// --max-count (default: the minimum). Whether MIN <= MAX is the server's to say, as with EC2.
    pub fn counts(&self) -> (i32, i32) {
        match self.count {
            Some(Count { min, max }) => (min, max),
            None => {
                let min = self.min_count.unwrap_or(1);
                (min, self.max_count.unwrap_or(min))
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct DescribeInstancesArgs {
    /// Instances, e.g. i-0123456789abcdef0 (not with --max-results).
    #[arg(long, num_args = 1.., value_name = "INSTANCE_ID")]
    pub instance_ids: Vec<String>,
    /// Filters (instance-id, instance-state-name, instance-state-code, instance-type, image-id,
    /// availability-zone, block-device-mapping.volume-id, reservation-id, tag:KEY, tag-key), e.g.
    /// Name=instance-state-name,Values=running or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Page size (5-1000): prints one page and its NextToken.
    #[arg(long, value_name = "N")]
    pub max_results: Option<i32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

/// `start-instances`, `reboot-instances`, `terminate-instances`.
#[derive(Debug, Args)]
pub struct InstanceIdsArgs {
    /// Instances, e.g. i-0123456789abcdef0.
    #[arg(long, num_args = 1.., required = true, value_name = "INSTANCE_ID")]
    pub instance_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopInstancesArgs {
    /// Instances, e.g. i-0123456789abcdef0.
    #[arg(long, num_args = 1.., required = true, value_name = "INSTANCE_ID")]
    pub instance_ids: Vec<String>,
    /// Kill the workloads at once instead of waiting for them to exit after SIGTERM.
    #[arg(long)]
    pub force: bool,
    /// Hibernate instead of stopping (not supported: the server refuses it).
    #[arg(long)]
    pub hibernate: bool,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// The first day, YYYY-MM-DD (YYYY-MM-DDThh:mm:ssZ with HOURLY). Default: the first of
    /// this month (UTC).
    #[arg(long)]
    pub start: Option<String>,
    /// The day after the last (exclusive). Default: tomorrow (UTC).
    #[arg(long)]
    pub end: Option<String>,
    /// HOURLY, DAILY or MONTHLY.
    #[arg(long, default_value = "DAILY")]
    pub granularity: String,
    /// The metric shown (UnblendedCost, AmortizedCost, UsageQuantity, ...).
    #[arg(long, default_value = "UnblendedCost")]
    pub metric: String,
    /// Up to two groupings: a dimension (SERVICE, USAGE_TYPE, INSTANCE_TYPE, PURCHASE_TYPE,
    /// ...) or TAG:KEY. Default SERVICE; NONE for totals only.
    #[arg(long, num_args = 1..)]
    pub group_by: Vec<String>,
    /// Print a table and a stacked bar chart instead of the reply.
    #[arg(long)]
    pub chart: bool,
    /// Also write the stacked bar chart as an SVG document to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct GetConsoleOutputArgs {
    #[arg(long)]
    pub instance_id: String,
    /// Accepted as the AWS CLI does; the output is always the latest (the last 64 KiB).
    #[arg(long)]
    pub latest: bool,
}

#[derive(Debug, Subcommand)]
pub enum Waiter {
    /// Until every volume is `available`.
    VolumeAvailable(WaitArgs),
    /// Until every volume is `in-use`.
    VolumeInUse(WaitArgs),
    /// Until every volume is gone.
    VolumeDeleted(WaitArgs),
    /// Until every snapshot is `completed`; fails as soon as one is `error`.
    ///
    /// When run in a terminal, a progress bar on stderr is redrawn at every poll.
    SnapshotCompleted(SnapshotWaitArgs),
    /// Until every instance is `running`; fails as soon as one is `shutting-down`, `terminated`
    /// or `stopping`.
    InstanceRunning(InstanceWaitArgs),
    /// Until every instance is `stopped`; fails as soon as one is `pending` or `terminated`.
    InstanceStopped(InstanceWaitArgs),
    /// Until every instance is `terminated` (or gone); fails as soon as one is `pending` or
    /// `stopping`.
    InstanceTerminated(InstanceWaitArgs),
    /// Until at least one instance matches (InvalidInstanceID.NotFound is retried).
    InstanceExists(InstanceWaitArgs),
    /// Until every AMI is `available`; fails as soon as one is `failed`.
    ImageAvailable(ImageWaitArgs),
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(long, num_args = 1.., value_name = "VOLUME_ID")]
    pub volume_ids: Vec<String>,
    /// Filters, e.g. Name=tag:Env,Values=prod or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub poll: PollArgs,
}

/// `wait snapshot-completed`: the snapshots as describe-snapshots selects them.
#[derive(Debug, Args)]
pub struct SnapshotWaitArgs {
    #[arg(long, num_args = 1.., value_name = "SNAPSHOT_ID")]
    pub snapshot_ids: Vec<String>,
    /// Owners: `self` or an account ID.
    #[arg(long, num_args = 1.., value_name = "OWNER")]
    pub owner_ids: Vec<String>,
    /// Filters, e.g. Name=volume-id,Values=vol-… or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub poll: PollArgs,
}

/// The instance waiters: the instances as describe-instances selects them.
#[derive(Debug, Args)]
pub struct InstanceWaitArgs {
    #[arg(long, num_args = 1.., value_name = "INSTANCE_ID")]
    pub instance_ids: Vec<String>,
    /// Filters, e.g. Name=tag:Name,Values=web or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub poll: PollArgs,
}

/// `wait image-available`: the AMIs as describe-images selects them.
#[derive(Debug, Args)]
pub struct ImageWaitArgs {
    #[arg(long, num_args = 1.., value_name = "IMAGE_ID")]
    pub image_ids: Vec<String>,
    /// Owners: `self` or an account ID.
    #[arg(long, num_args = 1.., value_name = "OWNER")]
    pub owners: Vec<String>,
    /// Filters, e.g. Name=name,Values=web-* or JSON.
    #[arg(long, num_args = 1.., value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub poll: PollArgs,
}

/// How often and how long a waiter polls; by default as the AWS CLI's waiter of that name does
/// (15 s between attempts, 40 attempts; `instance-exists` every 5 s).
#[derive(Debug, Args)]
pub struct PollArgs {
    /// Seconds between attempts (default: the AWS CLI's, 15 for most waiters).
    #[arg(long, value_name = "SECONDS", value_parser = parse_delay)]
    pub delay: Option<Duration>,
    /// Attempts before giving up (default: the AWS CLI's, 40).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
}

/// `--delay`: non-negative seconds, fractions allowed.
fn parse_delay(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{s}` is not a valid delay"))
}

/// The longest `--interval` of `top`.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// `top --interval`: positive seconds, fractions allowed, at most a day.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_delay(s)?;
    if interval.is_zero() || interval > MAX_INTERVAL {
        return Err(format!(
            "`{s}` is not an interval between 0 and {} seconds",
            MAX_INTERVAL.as_secs()
        ));
    }
    Ok(interval)
}

/// `--flag` / `--no-flag` → `Some(true)` / `Some(false)`; neither → `None`.
pub fn tri_state(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        match Cli::try_parse_from(std::iter::once("ebsctl").chain(args.iter().copied())) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn command_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_before_or_after_the_subcommand() {
        let before = parse(&[
            "--endpoint",
            "http://h:1",
            "--output",
            "text",
            "delete-volume",
            "--volume-id",
            "vol-1",
        ]);
        let after = parse(&[
            "delete-volume",
            "--volume-id",
            "vol-1",
            "--output",
            "table",
            "--endpoint",
            "http://h:2",
        ]);
        assert_eq!(before.global.endpoint.url, "http://h:1");
        assert_eq!(before.global.output, OutputFormat::Text);
        assert_eq!(after.global.endpoint.url, "http://h:2");
        assert_eq!(after.global.output, OutputFormat::Table);
    }

    #[test]
    fn global_flags_after_a_waiter() {
        let cli = parse(&[
            "wait",
            "volume-available",
            "--volume-ids",
            "vol-1",
            "--output",
            "text",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Text);
        let Command::Wait {
            waiter: Waiter::VolumeAvailable(args),
        } = cli.command
        else {
            panic!("not a wait: {:?}", cli.command);
        };
        assert_eq!(args.volume_ids, ["vol-1"]);
        assert_eq!(args.poll.delay, None, "the waiter's own default");
        assert_eq!(args.poll.max_attempts, None);
    }

    #[test]
    fn defaults() {
        // EBS_ENDPOINT is not set by the test runner.
        if std::env::var_os("EBS_ENDPOINT").is_none() {
            let cli = parse(&["describe-registered-hosts"]);
            assert_eq!(cli.global.endpoint.url, DEFAULT_ENDPOINT);
            assert_eq!(cli.global.output, OutputFormat::Json);
        }
    }

    #[test]
    fn token_file_is_global_and_read_at_parse_time() {
        let dir = std::env::temp_dir().join(format!("ebsctl-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "tok-123\n").unwrap();
        let path = path.to_str().unwrap();
        for args in [
            ["--token-file", path, "describe-registered-hosts"],
            ["describe-registered-hosts", "--token-file", path],
        ] {
            let cli = parse(&args);
            let token = cli.global.endpoint.token_file.expect("token");
            assert_eq!(token.secret(), "tok-123");
            assert_eq!(format!("{token:?}"), "Token(…)");
        }
        let missing = dir.join("missing");
        assert!(
            Cli::try_parse_from([
                "ebsctl",
                "--token-file",
                missing.to_str().unwrap(),
                "describe-registered-hosts"
            ])
            .is_err()
        );
        std::fs::write(dir.join("token"), "two words\n").unwrap();
        assert!(
            Cli::try_parse_from(["ebsctl", "--token-file", path, "describe-registered-hosts"])
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Token::parse("\n").is_err());
        assert_eq!(Token::parse("a\r\n").unwrap().secret(), "a");
    }

    #[test]
    fn list_flags_take_several_values() {
        let cli = parse(&[
            "describe-volumes",
            "--volume-ids",
            "vol-1",
            "vol-2",
            "--filters",
            "Name=status,Values=available,in-use",
            "Name=tag:Env,Values=prod",
            "--output",
            "json",
        ]);
        let Command::DescribeVolumes(args) = cli.command else {
            panic!("not describe-volumes: {:?}", cli.command);
        };
        assert_eq!(args.volume_ids, ["vol-1", "vol-2"]);
        assert_eq!(
            args.filters,
            [
                "Name=status,Values=available,in-use",
                "Name=tag:Env,Values=prod"
            ]
        );
        assert_eq!(args.max_results, None);
    }

    #[test]
    fn create_tags_takes_resources_and_tags() {
        let cli = parse(&[
            "create-tags",
            "--resources",
            "vol-1",
            "i-1",
            "--tags",
            "Key=a,Value=b",
            "Key=c,Value=d",
        ]);
        let Command::CreateTags(args) = cli.command else {
            panic!("not create-tags: {:?}", cli.command);
        };
        assert_eq!(args.resources, ["vol-1", "i-1"]);
        assert_eq!(args.tags, ["Key=a,Value=b", "Key=c,Value=d"]);
        assert!(Cli::try_parse_from(["ebsctl", "create-tags", "--resources", "vol-1"]).is_err());
    }

    #[test]
    fn boolean_pairs_last_one_wins() {
        let cli = parse(&[
            "create-volume",
            "--availability-zone",
            "us-east-1a",
            "--size",
            "8",
            "--multi-attach-enabled",
            "--no-encrypted",
            "--encrypted",
        ]);
        let Command::CreateVolume(args) = cli.command else {
            panic!("not create-volume: {:?}", cli.command);
        };
        assert_eq!(
            tri_state(args.multi_attach_enabled, args.no_multi_attach_enabled),
            Some(true)
        );
        assert_eq!(tri_state(args.encrypted, args.no_encrypted), Some(true));
        assert_eq!(args.size, Some(8));
        assert_eq!(tri_state(false, false), None);
        assert_eq!(tri_state(false, true), Some(false));
    }

    #[test]
    fn wait_delay_accepts_fractions() {
        let cli = parse(&[
            "wait",
            "volume-deleted",
            "--volume-ids",
            "vol-1",
            "--delay",
            "0.25",
            "--max-attempts",
            "3",
        ]);
        let Command::Wait {
            waiter: Waiter::VolumeDeleted(args),
        } = cli.command
        else {
            panic!("not a wait: {:?}", cli.command);
        };
        assert_eq!(args.poll.delay, Some(Duration::from_millis(250)));
        assert_eq!(args.poll.max_attempts, Some(3));
        assert!(
            Cli::try_parse_from(["ebsctl", "wait", "volume-deleted", "--delay", "-1"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["ebsctl", "wait", "volume-deleted", "--max-attempts", "0"])
                .is_err()
        );
    }

    #[test]
    fn modify_volume_flags() {
        let cli = parse(&[
            "modify-volume",
            "--volume-id",
            "vol-1",
            "--size",
            "16",
            "--volume-type",
            "io2",
            "--iops",
            "4000",
            "--throughput",
            "250",
            "--multi-attach-enabled",
            "--no-multi-attach-enabled",
        ]);
        let Command::ModifyVolume(args) = cli.command else {
            panic!("not modify-volume: {:?}", cli.command);
        };
        assert_eq!(args.volume_id, "vol-1");
        assert_eq!(args.size, Some(16));
        assert_eq!(args.volume_type.as_deref(), Some("io2"));
        assert_eq!(args.iops, Some(4000));
        assert_eq!(args.throughput, Some(250));
        assert_eq!(
            tri_state(args.multi_attach_enabled, args.no_multi_attach_enabled),
            Some(false)
        );

        let cli = parse(&["modify-volume", "--volume-id", "vol-1", "--size", "9"]);
        let Command::ModifyVolume(args) = cli.command else {
            panic!("not modify-volume: {:?}", cli.command);
        };
        assert_eq!(
            tri_state(args.multi_attach_enabled, args.no_multi_attach_enabled),
            None
        );
        assert_eq!(args.volume_type, None);
        assert!(Cli::try_parse_from(["ebsctl", "modify-volume", "--size", "9"]).is_err());
    }

    #[test]
    fn describe_volumes_modifications_flags() {
        let cli = parse(&[
            "describe-volumes-modifications",
            "--volume-ids",
            "vol-1",
            "vol-2",
            "--filters",
            "Name=modification-state,Values=modifying,optimizing",
        ]);
        let Command::DescribeVolumesModifications(args) = cli.command else {
            panic!("not describe-volumes-modifications: {:?}", cli.command);
        };
        assert_eq!(args.volume_ids, ["vol-1", "vol-2"]);
        assert_eq!(
            args.filters,
            ["Name=modification-state,Values=modifying,optimizing"]
        );
    }

    #[test]
    fn get_volume_metrics_takes_one_id_or_several() {
        let cli = parse(&["get-volume-metrics", "--volume-id", "vol-1"]);
        let Command::GetVolumeMetrics(args) = cli.command else {
            panic!("not get-volume-metrics: {:?}", cli.command);
        };
        assert_eq!(args.volume_id.as_deref(), Some("vol-1"));
        assert!(args.volume_ids.is_empty());

        let cli = parse(&["get-volume-metrics", "--volume-ids", "vol-1", "vol-2"]);
        let Command::GetVolumeMetrics(args) = cli.command else {
            panic!("not get-volume-metrics: {:?}", cli.command);
        };
        assert_eq!(args.volume_id, None);
        assert_eq!(args.volume_ids, ["vol-1", "vol-2"]);

        let cli = parse(&["get-volume-metrics"]);
        let Command::GetVolumeMetrics(args) = cli.command else {
            panic!("not get-volume-metrics: {:?}", cli.command);
        };
        assert_eq!((args.volume_id, args.volume_ids.len()), (None, 0));

        assert!(
            Cli::try_parse_from([
                "ebsctl",
                "get-volume-metrics",
                "--volume-id",
                "vol-1",
                "--volume-ids",
                "vol-2"
            ])
            .is_err()
        );
    }

    #[test]
    fn top_defaults_and_flags() {
        let cli = parse(&["top"]);
        let Command::Top(args) = cli.command else {
            panic!("not top: {:?}", cli.command);
        };
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(args.count, None);
        assert!(args.volume_ids.is_empty());

        let cli = parse(&[
            "top",
            "--interval",
            "0.5",
            "--count",
            "3",
            "--volume-ids",
            "vol-1",
            "vol-2",
        ]);
        let Command::Top(args) = cli.command else {
            panic!("not top: {:?}", cli.command);
        };
        assert_eq!(args.interval, Duration::from_millis(500));
        assert_eq!(args.count, Some(3));
        assert_eq!(args.volume_ids, ["vol-1", "vol-2"]);

        for bad in [
            ["--interval", "0"],
            ["--interval", "-1"],
            ["--interval", "x"],
            ["--interval", "86401"],
            ["--count", "0"],
        ] {
            assert!(
                Cli::try_parse_from(["ebsctl", "top", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_output_format_is_a_usage_error() {
        assert!(
            Cli::try_parse_from(["ebsctl", "describe-registered-hosts", "--output", "yaml"])
                .is_err()
        );
    }

    fn fails(args: &[&str]) -> bool {
        Cli::try_parse_from(std::iter::once("ebsctl").chain(args.iter().copied())).is_err()
    }

    const RESV: [&str; 5] = ["--volume-id", "vol-1", "--instance-id", "i-1", "--key"];

    fn resv<'a>(command: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        std::iter::once(command)
            .chain(RESV)
            .chain(rest.iter().copied())
            .collect()
    }

    fn register(rest: &[&str]) -> ResvRegisterArgs {
        match parse(&resv("resv-register", rest)).command {
            Command::ResvRegister(args) => args,
            other => panic!("not resv-register: {other:?}"),
        }
    }

    fn acquire(rest: &[&str]) -> ResvAcquireArgs {
        match parse(&resv("resv-acquire", rest)).command {
            Command::ResvAcquire(args) => args,
            other => panic!("not resv-acquire: {other:?}"),
        }
    }

    #[test]
    fn keys_are_decimal_or_hex_u64() {
        for (raw, key) in [
            ("0", 0),
            ("42", 42),
            ("0x2a", 42),
            ("0X2A", 42),
            ("0xdeadBEEF", 0xdead_beef),
            ("18446744073709551615", u64::MAX),
            ("0xffffffffffffffff", u64::MAX),
            ("0x0000000000000000001", 1),
        ] {
            assert_eq!(parse_key(raw), Ok(key), "{raw}");
            assert_eq!(register(&[raw]).key, key, "{raw}");
        }
        for bad in [
            "",
            "0x",
            "-1",
            "+1",
            "0x+1",
            "1.0",
            "ff",
            "0xg",
            "1_000",
            " 1",
            "18446744073709551616",
            "0x10000000000000000",
        ] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
            assert!(fails(&resv("resv-register", &[bad])), "{bad:?}");
        }
    }

    #[test]
    fn resv_register_actions() {
        let args = register(&["0x10"]);
        assert_eq!(
            (args.volume_id.as_str(), args.instance_id.as_str()),
            ("vol-1", "i-1")
        );
        assert_eq!((args.key, args.action), (16, RegisterAction::Register));
        assert_eq!(args.checked_new_key(), Ok(0));

        let args = register(&["1", "--action", "unregister"]);
        assert_eq!(args.action, RegisterAction::Unregister);
        assert_eq!(args.action.as_str(), "unregister");

        let args = register(&["1", "--action", "replace", "--new-key", "0xff"]);
        assert_eq!(args.action.as_str(), "replace");
        assert_eq!(args.checked_new_key(), Ok(255));

        // --new-key: required by replace, refused by the others.
        assert!(fails(&resv("resv-register", &["1", "--action", "replace"])));
        for action in ["register", "unregister"] {
            let args = register(&["1", "--action", action, "--new-key", "2"]);
            let err = args.checked_new_key().err();
            assert_eq!(err.as_ref().map(|e| e.flag), Some("--new-key"), "{action}");
        }
        let err = register(&["1", "--new-key", "2"]).checked_new_key().err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "Error parsing parameter '--new-key': only valid with --action replace, not register"
            )
        );

        assert!(fails(&resv("resv-register", &["1", "--action", "preempt"])));
        // --key, --instance-id and --volume-id are required.
        assert!(fails(&[
            "resv-register",
            "--volume-id",
            "v",
            "--instance-id",
            "i"
        ]));
        assert!(fails(&["resv-register", "--volume-id", "v", "--key", "1"]));
        assert!(fails(&[
            "resv-register",
            "--instance-id",
            "i",
            "--key",
            "1"
        ]));
    }

    #[test]
    fn resv_acquire_types_and_actions() {
        for (name, want) in [
            ("write-exclusive", pb::ReservationType::WriteExclusive),
            ("exclusive-access", pb::ReservationType::ExclusiveAccess),
            (
                "write-exclusive-registrants-only",
                pb::ReservationType::WriteExclusiveRegistrantsOnly,
            ),
            (
                "exclusive-access-registrants-only",
                pb::ReservationType::ExclusiveAccessRegistrantsOnly,
            ),
            (
                "write-exclusive-all-registrants",
                pb::ReservationType::WriteExclusiveAllRegistrants,
            ),
            (
                "exclusive-access-all-registrants",
                pb::ReservationType::ExclusiveAccessAllRegistrants,
            ),
        ] {
            let args = acquire(&["7", "--type", name]);
            assert_eq!(pb::ReservationType::from(args.reservation_type), want);
            assert_eq!(args.action, AcquireAction::Acquire);
            assert_eq!(args.checked_preempt_key(), Ok(0));
            // The report prints a type the way --type spells it.
            assert_eq!(crate::shapes::reservation_type_name(want), Some(name));
        }
        for bad in ["1", "unspecified", "WRITE_EXCLUSIVE", "write-exclusive-all"] {
            assert!(fails(&resv("resv-acquire", &["7", "--type", bad])), "{bad}");
        }
        assert!(fails(&resv("resv-acquire", &["7"])), "--type is required");

        for action in ["preempt", "preempt-abort"] {
            let args = acquire(&[
                "7",
                "--type",
                "exclusive-access",
                "--action",
                action,
                "--preempt-key",
                "0x8",
            ]);
            assert_eq!(args.action.as_str(), action);
            assert_eq!(args.checked_preempt_key(), Ok(8));
            assert!(
                fails(&resv(
                    "resv-acquire",
                    &["7", "--type", "exclusive-access", "--action", action]
                )),
                "{action} without --preempt-key"
            );
        }
        let args = acquire(&["7", "--type", "write-exclusive", "--preempt-key", "8"]);
        let err = args.checked_preempt_key().err();
        assert_eq!(err.map(|e| e.flag), Some("--preempt-key"));
        assert!(fails(&resv(
            "resv-acquire",
            &["7", "--type", "write-exclusive", "--action", "replace"]
        )));
    }

    #[test]
    fn resv_release_and_report_flags() {
        let cli = parse(&resv("resv-release", &["0x1", "--type", "write-exclusive"]));
        let Command::ResvRelease(args) = cli.command else {
            panic!("not resv-release: {:?}", cli.command);
        };
        assert_eq!(args.key, 1);
        assert_eq!(args.reservation_type, Some(ReservationType::WriteExclusive));
        assert!(!args.clear);

        let cli = parse(&resv(
            "resv-release",
            &["1", "--type", "exclusive-access", "--clear"],
        ));
        let Command::ResvRelease(args) = cli.command else {
            panic!("not resv-release: {:?}", cli.command);
        };
        assert!(args.clear);
        assert!(fails(&resv("resv-release", &["1"])), "--type is required");

        // --clear ignores the type: it may be left out.
        let cli = parse(&resv("resv-release", &["1", "--clear"]));
        let Command::ResvRelease(args) = cli.command else {
            panic!("not resv-release: {:?}", cli.command);
        };
        assert_eq!((args.reservation_type, args.clear), (None, true));
        assert!(fails(&[
            "resv-release",
            "--volume-id",
            "vol-1",
            "--instance-id",
            "i-1",
            "--type",
            "write-exclusive"
        ]));

        let cli = parse(&["resv-report", "--volume-id", "vol-1"]);
        let Command::ResvReport(args) = cli.command else {
            panic!("not resv-report: {:?}", cli.command);
        };
        assert_eq!(args.volume_id, "vol-1");
        assert!(fails(&["resv-report"]));
    }

    #[test]
    fn create_snapshot_flags() {
        let cli = parse(&[
            "create-snapshot",
            "--volume-id",
            "vol-1",
            "--description",
            "nightly",
            "--tag-specifications",
            "ResourceType=snapshot,Tags=[{Key=Name,Value=n}]",
        ]);
        let Command::CreateSnapshot(args) = cli.command else {
            panic!("not create-snapshot: {:?}", cli.command);
        };
        assert_eq!(args.volume_id, "vol-1");
        assert_eq!(args.description.as_deref(), Some("nightly"));
        assert_eq!(
            args.tag_specifications,
            ["ResourceType=snapshot,Tags=[{Key=Name,Value=n}]"]
        );
        assert!(fails(&["create-snapshot", "--description", "d"]));
    }

    #[test]
    fn describe_snapshots_flags() {
        let cli = parse(&[
            "describe-snapshots",
            "--snapshot-ids",
            "snap-1",
            "snap-2",
            "--owner-ids",
            "self",
            "--filters",
            "Name=status,Values=pending",
            "Name=volume-id,Values=vol-1",
            "--max-results",
            "5",
            "--next-token",
            "t",
        ]);
        let Command::DescribeSnapshots(args) = cli.command else {
            panic!("not describe-snapshots: {:?}", cli.command);
        };
        assert_eq!(args.snapshot_ids, ["snap-1", "snap-2"]);
        assert_eq!(args.owner_ids, ["self"]);
        assert_eq!(
            args.filters,
            ["Name=status,Values=pending", "Name=volume-id,Values=vol-1"]
        );
        assert_eq!(args.max_results, Some(5));
        assert_eq!(args.next_token.as_deref(), Some("t"));
        assert!(fails(&["describe-snapshots", "--max-results", "x"]));
    }

    #[test]
    fn delete_and_copy_snapshot_flags() {
        let cli = parse(&["delete-snapshot", "--snapshot-id", "snap-1"]);
        let Command::DeleteSnapshot(args) = cli.command else {
            panic!("not delete-snapshot: {:?}", cli.command);
        };
        assert_eq!(args.snapshot_id, "snap-1");
        assert!(fails(&["delete-snapshot"]));

        let cli = parse(&[
            "copy-snapshot",
            "--source-region",
            "us-west-2",
            "--source-snapshot-id",
            "snap-1",
            "--destination-region",
            "us-east-1",
            "--description",
            "dr",
            "--encrypted",
        ]);
        let Command::CopySnapshot(args) = cli.command else {
            panic!("not copy-snapshot: {:?}", cli.command);
        };
        assert_eq!(
            (
                args.source_region.as_str(),
                args.source_snapshot_id.as_str()
            ),
            ("us-west-2", "snap-1")
        );
        assert_eq!(args.destination_region.as_deref(), Some("us-east-1"));
        assert_eq!(args.description.as_deref(), Some("dr"));
        assert_eq!(tri_state(args.encrypted, args.no_encrypted), Some(true));
        assert!(args.tag_specifications.is_empty());
        // Both the source region and the source snapshot are required, as in the AWS CLI.
        assert!(fails(&["copy-snapshot", "--source-snapshot-id", "snap-1"]));
        assert!(fails(&["copy-snapshot", "--source-region", "us-west-2"]));
    }

    #[test]
    fn describe_instance_types_flags() {
        let cli = parse(&[
            "describe-instance-types",
            "--instance-types",
            "m5.large",
            "i3.large",
            "--filters",
            "Name=instance-type,Values=m5*",
            "Name=vcpu-info.default-vcpus,Values=2",
            "--max-results",
            "5",
            "--next-token",
            "t",
        ]);
        let Command::DescribeInstanceTypes(args) = cli.command else {
            panic!("not describe-instance-types: {:?}", cli.command);
        };
        assert_eq!(args.instance_types, ["m5.large", "i3.large"]);
        assert_eq!(
            args.filters,
            [
                "Name=instance-type,Values=m5*",
                "Name=vcpu-info.default-vcpus,Values=2"
            ]
        );
        assert_eq!(args.max_results, Some(5));
        assert_eq!(args.next_token.as_deref(), Some("t"));

        let cli = parse(&["describe-instance-types"]);
        let Command::DescribeInstanceTypes(args) = cli.command else {
            panic!("not describe-instance-types: {:?}", cli.command);
        };
        assert!(args.instance_types.is_empty() && args.filters.is_empty());
        assert_eq!((args.max_results, args.next_token), (None, None));
        assert!(fails(&["describe-instance-types", "--max-results", "x"]));
        assert!(fails(&["describe-instance-types", "--instance-types"]));
    }

    #[test]
    fn register_image_flags() {
        let cli = parse(&[
            "register-image",
            "--name",
            "web-1",
            "--root-device-name",
            "/dev/xvda",
            "--block-device-mappings",
            "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1,VolumeSize=8}",
            r#"{"DeviceName":"/dev/sdb","VirtualName":"ephemeral0"}"#,
            "--description",
            "web server",
            "--architecture",
            "arm64",
            "--virtualization-type",
            "hvm",
            "--tag-specifications",
            "ResourceType=image,Tags=[{Key=Name,Value=web}]",
        ]);
        let Command::RegisterImage(args) = cli.command else {
            panic!("not register-image: {:?}", cli.command);
        };
        assert_eq!(args.name, "web-1");
        assert_eq!(args.root_device_name, "/dev/xvda");
        assert_eq!(
            args.block_device_mappings,
            [
                "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1,VolumeSize=8}",
                r#"{"DeviceName":"/dev/sdb","VirtualName":"ephemeral0"}"#
            ]
        );
        assert_eq!(args.description.as_deref(), Some("web server"));
        assert_eq!(args.architecture.as_deref(), Some("arm64"));
        assert_eq!(args.virtualization_type.as_deref(), Some("hvm"));
        assert_eq!(
            args.tag_specifications,
            ["ResourceType=image,Tags=[{Key=Name,Value=web}]"]
        );

        let minimal = [
            "register-image",
            "--name",
            "web-1",
            "--root-device-name",
            "/dev/xvda",
            "--block-device-mappings",
            "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1}",
        ];
        let Command::RegisterImage(args) = parse(&minimal).command else {
            panic!("not register-image");
        };
        assert_eq!(
            (
                args.description,
                args.architecture,
                args.virtualization_type
            ),
            (None, None, None)
        );
        assert!(args.tag_specifications.is_empty());
        // --name, --root-device-name and at least one mapping are required.
        for (flag, value) in [(1, 2), (3, 4), (5, 6)] {
            let without: Vec<&str> = minimal
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != flag && *i != value)
                .map(|(_, a)| *a)
                .collect();
            assert!(fails(&without), "{without:?}");
        }
        assert!(fails(&[
            "register-image",
            "--name",
            "n",
            "--root-device-name",
            "/dev/xvda",
            "--block-device-mappings"
        ]));
    }

    #[test]
    fn describe_and_deregister_image_flags() {
        let cli = parse(&[
            "describe-images",
            "--image-ids",
            "ami-1",
            "ami-2",
            "--owners",
            "self",
            "000000000000",
            "--filters",
            "Name=name,Values=web-*",
            "Name=architecture,Values=arm64",
            "--max-results",
            "5",
            "--next-token",
            "t",
        ]);
        let Command::DescribeImages(args) = cli.command else {
            panic!("not describe-images: {:?}", cli.command);
        };
        assert_eq!(args.image_ids, ["ami-1", "ami-2"]);
        assert_eq!(args.owners, ["self", "000000000000"]);
        assert_eq!(
            args.filters,
            ["Name=name,Values=web-*", "Name=architecture,Values=arm64"]
        );
        assert_eq!(args.max_results, Some(5));
        assert_eq!(args.next_token.as_deref(), Some("t"));

        let Command::DescribeImages(args) = parse(&["describe-images"]).command else {
            panic!("not describe-images");
        };
        assert!(args.image_ids.is_empty() && args.owners.is_empty() && args.filters.is_empty());
        assert_eq!((args.max_results, args.next_token), (None, None));
        assert!(fails(&["describe-images", "--max-results", "x"]));
        assert!(fails(&["describe-images", "--image-ids"]));

        let cli = parse(&["deregister-image", "--image-id", "ami-1"]);
        let Command::DeregisterImage(args) = cli.command else {
            panic!("not deregister-image: {:?}", cli.command);
        };
        assert_eq!(args.image_id, "ami-1");
        assert!(fails(&["deregister-image"]));
    }

    #[test]
    fn create_volume_from_a_snapshot_needs_no_size() {
        let cli = parse(&[
            "create-volume",
            "--availability-zone",
            "us-east-1a",
            "--snapshot-id",
            "snap-1",
            "--volume-initialization-rate",
            "200",
        ]);
        let Command::CreateVolume(args) = cli.command else {
            panic!("not create-volume: {:?}", cli.command);
        };
        assert_eq!(args.size, None);
        assert_eq!(args.snapshot_id.as_deref(), Some("snap-1"));
        assert_eq!(args.volume_initialization_rate, Some(200));
    }

    #[test]
    fn wait_snapshot_completed_flags() {
        let cli = parse(&[
            "wait",
            "snapshot-completed",
            "--snapshot-ids",
            "snap-1",
            "snap-2",
            "--filters",
            "Name=volume-id,Values=vol-1",
            "--delay",
            "0.5",
        ]);
        let Command::Wait {
            waiter: Waiter::SnapshotCompleted(args),
        } = cli.command
        else {
            panic!("not wait snapshot-completed: {:?}", cli.command);
        };
        assert_eq!(args.snapshot_ids, ["snap-1", "snap-2"]);
        assert_eq!(args.filters, ["Name=volume-id,Values=vol-1"]);
        assert!(args.owner_ids.is_empty());
        assert_eq!(args.poll.delay, Some(Duration::from_millis(500)));
        assert_eq!(args.poll.max_attempts, None);
        assert!(fails(&["wait", "snapshot-completed", "--volume-ids", "v"]));
    }

    #[test]
    fn fast_snapshot_restores_flags() {
        for command in [
            "enable-fast-snapshot-restores",
            "disable-fast-snapshot-restores",
        ] {
            let cli = parse(&[
                command,
                "--availability-zones",
                "us-east-1a",
                "us-east-1b",
                "--source-snapshot-ids",
                "snap-1",
                "snap-2",
            ]);
            let args = match cli.command {
                Command::EnableFastSnapshotRestores(args)
                    if command == "enable-fast-snapshot-restores" =>
                {
                    args
                }
                Command::DisableFastSnapshotRestores(args)
                    if command == "disable-fast-snapshot-restores" =>
                {
                    args
                }
                other => panic!("not {command}: {other:?}"),
            };
            assert_eq!(args.availability_zones, ["us-east-1a", "us-east-1b"]);
            assert_eq!(args.source_snapshot_ids, ["snap-1", "snap-2"]);
            // Both lists are required, as in the AWS CLI.
            assert!(fails(&[command, "--availability-zones", "us-east-1a"]));
            assert!(fails(&[command, "--source-snapshot-ids", "snap-1"]));
            assert!(fails(&[
                command,
                "--availability-zones",
                "--source-snapshot-ids",
                "snap-1"
            ]));
        }

        let cli = parse(&[
            "describe-fast-snapshot-restores",
            "--filters",
            "Name=state,Values=enabled",
            "Name=snapshot-id,Values=snap-1",
            "--max-results",
            "10",
            "--next-token",
            "t",
        ]);
        let Command::DescribeFastSnapshotRestores(args) = cli.command else {
            panic!("not describe-fast-snapshot-restores: {:?}", cli.command);
        };
        assert_eq!(
            args.filters,
            [
                "Name=state,Values=enabled",
                "Name=snapshot-id,Values=snap-1"
            ]
        );
        assert_eq!(args.max_results, Some(10));
        assert_eq!(args.next_token.as_deref(), Some("t"));

        let cli = parse(&["describe-fast-snapshot-restores"]);
        let Command::DescribeFastSnapshotRestores(args) = cli.command else {
            panic!("not describe-fast-snapshot-restores: {:?}", cli.command);
        };
        assert!(args.filters.is_empty());
        assert_eq!((args.max_results, args.next_token), (None, None));
        assert!(fails(&[
            "describe-fast-snapshot-restores",
            "--max-results",
            "x"
        ]));
    }

    #[test]
    fn create_image_flags() {
        let cli = parse(&[
            "create-image",
            "--instance-id",
            "i-1",
            "--name",
            "web-1",
            "--description",
            "web server",
            "--no-reboot",
            "--tag-specifications",
            "ResourceType=image,Tags=[{Key=Name,Value=web}]",
            "ResourceType=snapshot,Tags=[{Key=Name,Value=web}]",
        ]);
        let Command::CreateImage(args) = cli.command else {
            panic!("not create-image: {:?}", cli.command);
        };
        assert_eq!(
            (args.instance_id.as_str(), args.name.as_str()),
            ("i-1", "web-1")
        );
        assert_eq!(args.description.as_deref(), Some("web server"));
        assert_eq!(tri_state(args.no_reboot, args.reboot), Some(true));
        assert_eq!(args.tag_specifications.len(), 2);

        // --reboot and --no-reboot: the last one wins; neither is a reboot.
        let base = ["create-image", "--instance-id", "i-1", "--name", "web-1"];
        let with =
            |extra: &[&'static str]| -> Vec<&str> { base.iter().chain(extra).copied().collect() };
        let Command::CreateImage(args) = parse(&with(&["--no-reboot", "--reboot"])).command else {
            panic!("not create-image");
        };
        assert_eq!(tri_state(args.no_reboot, args.reboot), Some(false));
        let Command::CreateImage(args) = parse(&base).command else {
            panic!("not create-image");
        };
        assert_eq!(tri_state(args.no_reboot, args.reboot), None);
        assert!(args.description.is_none() && args.tag_specifications.is_empty());
        assert!(fails(&["create-image", "--instance-id", "i-1"]));
        assert!(fails(&["create-image", "--name", "web-1"]));
    }

    #[test]
    fn run_instances_flags() {
        let cli = parse(&[
            "run-instances",
            "--image-id",
            "ami-1",
            "--instance-type",
            "m5d.large",
            "--count",
            "2:3",
            "--placement",
            "AvailabilityZone=us-east-1b",
            "--block-device-mappings",
            "DeviceName=/dev/sdf,Ebs={VolumeSize=100}",
            "DeviceName=/dev/sdc,NoDevice=",
            "--user-data",
            "file:///tmp/boot.sh",
            "--workload",
            "fio --name=t",
            "--instance-initiated-shutdown-behavior",
            "terminate",
            "--tag-specifications",
            "ResourceType=instance,Tags=[{Key=Name,Value=web}]",
            "--client-token",
            "tok",
            "--disable-api-termination",
        ]);
        let Command::RunInstances(args) = cli.command else {
            panic!("not run-instances: {:?}", cli.command);
        };
        assert_eq!(args.image_id, "ami-1");
        assert_eq!(args.instance_type.as_deref(), Some("m5d.large"));
        assert_eq!(args.count, Some(Count { min: 2, max: 3 }));
        assert_eq!(args.counts(), (2, 3));
        assert_eq!(
            args.placement.as_deref(),
            Some("AvailabilityZone=us-east-1b")
        );
        assert_eq!(
            args.block_device_mappings,
            [
                "DeviceName=/dev/sdf,Ebs={VolumeSize=100}",
                "DeviceName=/dev/sdc,NoDevice="
            ]
        );
        assert_eq!(args.user_data.as_deref(), Some("file:///tmp/boot.sh"));
        assert_eq!(args.workload.as_deref(), Some("fio --name=t"));
        assert_eq!(
            args.instance_initiated_shutdown_behavior.as_deref(),
            Some("terminate")
        );
        assert_eq!(
            args.tag_specifications,
            ["ResourceType=instance,Tags=[{Key=Name,Value=web}]"]
        );
        assert_eq!(args.client_token.as_deref(), Some("tok"));
        assert_eq!(
            tri_state(
                args.disable_api_termination,
                args.no_disable_api_termination
            ),
            Some(true)
        );

        // Only --image-id is required; one instance by default.
        let Command::RunInstances(args) = parse(&["run-instances", "--image-id", "ami-1"]).command
        else {
            panic!("not run-instances");
        };
        assert_eq!(args.counts(), (1, 1));
        assert_eq!(
            (args.count, args.min_count, args.max_count),
            (None, None, None)
        );
        assert!(args.instance_type.is_none() && args.placement.is_none());
        assert!(args.user_data.is_none() && args.workload.is_none());
        assert!(args.block_device_mappings.is_empty() && args.tag_specifications.is_empty());
        assert_eq!(
            tri_state(
                args.disable_api_termination,
                args.no_disable_api_termination
            ),
            None
        );
        assert!(fails(&["run-instances", "--count", "1"]));
    }

    #[test]
    fn run_instances_counts() {
        let counts = |extra: &[&str]| -> (i32, i32) {
            let argv: Vec<&str> = ["run-instances", "--image-id", "ami-1"]
                .iter()
                .chain(extra)
                .copied()
                .collect();
            let Command::RunInstances(args) = parse(&argv).command else {
                panic!("not run-instances");
            };
            args.counts()
        };
        assert_eq!(counts(&["--count", "3"]), (3, 3));
        assert_eq!(counts(&["--count", "1:4"]), (1, 4));
        assert_eq!(counts(&["--min-count", "2"]), (2, 2));
        assert_eq!(counts(&["--max-count", "5"]), (1, 5));
        assert_eq!(counts(&["--min-count", "2", "--max-count", "5"]), (2, 5));
        // MIN > MAX is the server's to refuse, as EC2's.
        assert_eq!(counts(&["--count", "4:2"]), (4, 2));

        for bad in ["0", "-1", "x", "1:", ":2", "1:2:3", "1:0", ""] {
            assert!(
                fails(&["run-instances", "--image-id", "ami-1", "--count", bad]),
                "--count {bad:?}"
            );
        }
        assert!(fails(&[
            "run-instances",
            "--image-id",
            "ami-1",
            "--count",
            "2",
            "--min-count",
            "2"
        ]));
        assert!(fails(&[
            "run-instances",
            "--image-id",
            "ami-1",
            "--max-count",
            "0"
        ]));
        assert!(fails(&[
            "run-instances",
            "--image-id",
            "ami-1",
            "--instance-initiated-shutdown-behavior",
            "hibernate"
        ]));
    }

    #[test]
    fn describe_instances_flags() {
        let cli = parse(&[
            "describe-instances",
            "--instance-ids",
            "i-1",
            "i-2",
            "--filters",
            "Name=instance-state-name,Values=running,stopped",
            "Name=tag:Name,Values=web",
            "--max-results",
            "5",
            "--next-token",
            "t",
        ]);
        let Command::DescribeInstances(args) = cli.command else {
            panic!("not describe-instances: {:?}", cli.command);
        };
        assert_eq!(args.instance_ids, ["i-1", "i-2"]);
        assert_eq!(
            args.filters,
            [
                "Name=instance-state-name,Values=running,stopped",
                "Name=tag:Name,Values=web"
            ]
        );
        assert_eq!(args.max_results, Some(5));
        assert_eq!(args.next_token.as_deref(), Some("t"));

        let Command::DescribeInstances(args) = parse(&["describe-instances"]).command else {
            panic!("not describe-instances");
        };
        assert!(args.instance_ids.is_empty() && args.filters.is_empty());
        assert_eq!((args.max_results, args.next_token), (None, None));
        assert!(fails(&["describe-instances", "--max-results", "x"]));
        assert!(fails(&["describe-instances", "--instance-ids"]));
    }

    #[test]
    fn instance_lifecycle_flags() {
        for command in ["start-instances", "reboot-instances", "terminate-instances"] {
            let cli = parse(&[command, "--instance-ids", "i-1", "i-2"]);
            let args = match cli.command {
                Command::StartInstances(args) if command == "start-instances" => args,
                Command::RebootInstances(args) if command == "reboot-instances" => args,
                Command::TerminateInstances(args) if command == "terminate-instances" => args,
                other => panic!("not {command}: {other:?}"),
            };
            assert_eq!(args.instance_ids, ["i-1", "i-2"]);
            assert!(fails(&[command]), "{command} needs --instance-ids");
            assert!(fails(&[command, "--instance-ids"]));
            assert!(fails(&[command, "--instance-ids", "i-1", "--force"]));
        }

        let cli = parse(&[
            "stop-instances",
            "--instance-ids",
            "i-1",
            "--force",
            "--hibernate",
        ]);
        let Command::StopInstances(args) = cli.command else {
            panic!("not stop-instances: {:?}", cli.command);
        };
        assert_eq!(args.instance_ids, ["i-1"]);
        assert!(args.force && args.hibernate);
        let Command::StopInstances(args) =
            parse(&["stop-instances", "--instance-ids", "i-1", "i-2"]).command
        else {
            panic!("not stop-instances");
        };
        assert_eq!(args.instance_ids, ["i-1", "i-2"]);
        assert!(!args.force && !args.hibernate);
        assert!(fails(&["stop-instances", "--force"]));
    }

    #[test]
    fn get_console_output_flags() {
        let cli = parse(&["get-console-output", "--instance-id", "i-1", "--latest"]);
        let Command::GetConsoleOutput(args) = cli.command else {
            panic!("not get-console-output: {:?}", cli.command);
        };
        assert_eq!(args.instance_id, "i-1");
        assert!(args.latest);
        let Command::GetConsoleOutput(args) =
            parse(&["get-console-output", "--instance-id", "i-1"]).command
        else {
            panic!("not get-console-output");
        };
        assert!(!args.latest);
        assert!(fails(&["get-console-output"]));
        assert!(fails(&["get-console-output", "--instance-ids", "i-1"]));
    }

    #[test]
    fn instance_and_image_waiter_flags() {
        for waiter in [
            "instance-running",
            "instance-stopped",
            "instance-terminated",
            "instance-exists",
        ] {
            let cli = parse(&[
                "wait",
                waiter,
                "--instance-ids",
                "i-1",
                "i-2",
                "--filters",
                "Name=tag:Name,Values=web",
                "--delay",
                "0.25",
                "--max-attempts",
                "8",
                "--output",
                "text",
            ]);
            let Command::Wait { waiter: parsed } = cli.command else {
                panic!("not a wait: {:?}", cli.command);
            };
            let args = match parsed {
                Waiter::InstanceRunning(args) if waiter == "instance-running" => args,
                Waiter::InstanceStopped(args) if waiter == "instance-stopped" => args,
                Waiter::InstanceTerminated(args) if waiter == "instance-terminated" => args,
                Waiter::InstanceExists(args) if waiter == "instance-exists" => args,
                other => panic!("not wait {waiter}: {other:?}"),
            };
            assert_eq!(args.instance_ids, ["i-1", "i-2"]);
            assert_eq!(args.filters, ["Name=tag:Name,Values=web"]);
            assert_eq!(args.poll.delay, Some(Duration::from_millis(250)));
            assert_eq!(args.poll.max_attempts, Some(8));
            assert_eq!(cli.global.output, OutputFormat::Text);

            // The same defaults as every waiter.
            let Command::Wait { waiter: parsed } = parse(&["wait", waiter]).command else {
                panic!("not a wait");
            };
            let (Waiter::InstanceRunning(args)
            | Waiter::InstanceStopped(args)
            | Waiter::InstanceTerminated(args)
            | Waiter::InstanceExists(args)) = parsed
            else {
                panic!("not an instance waiter: {parsed:?}");
            };
            assert_eq!(args.poll.delay, None, "the waiter's own default");
            assert_eq!(args.poll.max_attempts, None);
            assert!(fails(&["wait", waiter, "--volume-ids", "vol-1"]));
        }

        let cli = parse(&[
            "wait",
            "image-available",
            "--image-ids",
            "ami-1",
            "ami-2",
            "--owners",
            "self",
            "--filters",
            "Name=name,Values=web-*",
            "--delay",
            "0.5",
        ]);
        let Command::Wait {
            waiter: Waiter::ImageAvailable(args),
        } = cli.command
        else {
            panic!("not wait image-available: {:?}", cli.command);
        };
        assert_eq!(args.image_ids, ["ami-1", "ami-2"]);
        assert_eq!(args.owners, ["self"]);
        assert_eq!(args.filters, ["Name=name,Values=web-*"]);
        assert_eq!(args.poll.delay, Some(Duration::from_millis(500)));
        assert!(fails(&["wait", "image-available", "--instance-ids", "i-1"]));
    }
}
