//! The EC2 instance type catalog (families M, T, C, R, X, I, D, H, P, G) and the
//! DescribeInstanceTypes query over it.
//!
//! Every figure comes from the Amazon EC2 documentation: the hardware specifications and network
//! performance tables of each instance family, the instance store volume table and the
//! EBS-optimized instance table. Units are EC2's: memory in MiB, instance store in GB (10^9
//! bytes), EBS bandwidth in Mbps (10^6 bit/s), EBS throughput in MB/s (10^6 byte/s, 128 KiB I/O),
//! EBS IOPS at 16 KiB I/O.
//!
//! The catalog is a static slice in family order, sizes smallest first. [`describe`] answers in
//! that order; its paging token is the hex of the last name returned, so a page resumes right
//! after that entry.

use proto::ebs::v1 as pb;

/// One EC2 instance type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    /// e.g. `m5d.large`.
    pub name: &'static str,
    /// Listed by EC2 among the current generation instance types.
    pub current_generation: bool,
    /// Default vCPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Local instance store disks; `None` for EBS-only types.
    pub instance_store: Option<InstanceStore>,
    /// EBS-optimized limits. Every type in the catalog is EBS-optimized by default.
    pub ebs: EbsOptimizedInfo,
    /// Accelerators, for P and G types.
    pub gpus: Option<Gpus>,
    /// EC2's network performance string, e.g. `Up to 10 Gigabit`.
    pub network_performance: &'static str,
    /// T types: CPU credits, baseline and burst.
    pub burstable: bool,
    /// `None` on bare metal types, which run on no hypervisor.
    pub hypervisor: Option<Hypervisor>,
    /// The one architecture the type supports.
    pub architecture: Architecture,
}

/// An instance type's instance store: `count` identical disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceStore {
    /// Number of disks (`ephemeral0`..).
    pub count: u32,
    /// Size of each disk, GB (10^9 bytes).
    pub size_gb: u64,
    /// SSD or HDD.
    pub disk: DiskType,
    /// The disks are NVMe devices (otherwise SATA/SAS behind the hypervisor).
    pub nvme: bool,
}

impl InstanceStore {
    /// All disks together, GB.
    pub fn total_size_gb(&self) -> u64 {
        u64::from(self.count) * self.size_gb
    }

    /// EC2's `NvmeSupport`: `required` or `unsupported`.
    pub fn nvme_support(&self) -> &'static str {
        if self.nvme { "required" } else { "unsupported" }
    }
}

/// An instance store disk's medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// Solid state.
    Ssd,
    /// Spinning disk.
    Hdd,
}

impl DiskType {
    /// `ssd` or `hdd`, as EC2 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskType::Ssd => "ssd",
            DiskType::Hdd => "hdd",
        }
    }
}

/// The dedicated EBS bandwidth of an EBS-optimized instance type.
///
/// A type with a baseline below its maximum can burst to the maximum for 30 minutes once every
/// 24 hours; the others sustain the maximum (baseline equal to maximum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EbsOptimizedInfo {
    /// Mbps.
    pub baseline_bandwidth_mbps: u32,
    /// Mbps.
    pub maximum_bandwidth_mbps: u32,
    /// MB/s (10^6 bytes).
    pub baseline_throughput_mb_per_s: f64,
    /// MB/s (10^6 bytes).
    pub maximum_throughput_mb_per_s: f64,
    /// IOPS at 16 KiB.
    pub baseline_iops: u32,
    /// IOPS at 16 KiB.
    pub maximum_iops: u32,
}

/// The GPUs of an instance type: `count` identical devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gpus {
    /// e.g. `V100`.
    pub name: &'static str,
    /// e.g. `NVIDIA`.
    pub manufacturer: &'static str,
    /// Devices.
    pub count: u32,
    /// Memory of each device, MiB.
    pub memory_mib: u64,
}

/// The hypervisor of a virtualized instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// The Nitro System (NVMe EBS, ENA).
    Nitro,
    /// Xen (EBS without NVMe).
    Xen,
}

impl Hypervisor {
    /// `nitro` or `xen`, as EC2 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Nitro => "nitro",
            Hypervisor::Xen => "xen",
        }
    }
}

/// A processor architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// 64-bit x86.
    X86_64,
}

impl Architecture {
    /// `x86_64`, as EC2 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
        }
    }
}

impl InstanceType {
    /// The EBS cap all of an instance's volumes share: (maximum IOPS, maximum throughput in
    /// bytes/s).
    pub fn ebs_limits(&self) -> (u64, u64) {
        let bytes_per_s = (self.ebs.maximum_throughput_mb_per_s * 1_000_000.0).round() as u64;
        (u64::from(self.ebs.maximum_iops), bytes_per_s)
    }

    /// EC2's `EbsOptimizedSupport`: every type in the catalog is EBS-optimized by default.
    pub fn ebs_optimized_support(&self) -> &'static str {
        "default"
    }

    /// EC2's `EbsInfo.NvmeSupport`: volumes are NVMe devices on Nitro and bare metal, not on Xen.
    pub fn ebs_nvme_support(&self) -> &'static str {
        match self.hypervisor {
            Some(Hypervisor::Xen) => "unsupported",
            Some(Hypervisor::Nitro) | None => "required",
        }
    }

    /// Bare metal: no hypervisor.
    pub fn bare_metal(&self) -> bool {
        self.hypervisor.is_none()
    }

    /// The family: the name before the dot (`m5d` of `m5d.large`).
    pub fn family(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(f, _)| f)
    }

    /// The size: the name after the dot (`large` of `m5d.large`).
    pub fn size(&self) -> &'static str {
        self.name.split_once('.').map_or("", |(_, s)| s)
    }

    /// EC2's `ProcessorInfo` (manufacturer, sustained all-core clock speed in GHz), from each
    /// family's processor in the EC2 instance type specifications: G5 runs AMD EPYC 7R32, the
    /// rest Intel Xeon.
    pub fn processor(&self) -> (&'static str, f64) {
        match self.family() {
            "g5" => ("AMD", 3.3),
            "c5" | "c5d" => ("Intel", 3.4),
            "c6i" | "m6i" | "r6i" | "i4i" | "x2idn" => ("Intel", 3.5),
            "m5" | "m5d" | "r5" | "r5d" | "d3" | "i3en" => ("Intel", 3.1),
            "t3" | "g4dn" => ("Intel", 2.5),
            "d2" => ("Intel", 2.4),
            "p4d" => ("Intel", 3.0),
            // i3, h1, p3, x1e: Xeon E5-2686 v4 / E7-8880 v3 at 2.3 GHz.
            _ => ("Intel", 2.3),
        }
    }

    /// In the AWS Free Tier (us-east-1, accounts created since July 2025): t3.micro and
    /// t3.small among the types here.
    pub fn free_tier_eligible(&self) -> bool {
        matches!(self.name, "t3.micro" | "t3.small")
    }

    /// EC2's `SupportedRootDeviceTypes`: of the types here only D2 also boots instance
    /// store-backed AMIs (the AMI documentation's list of types that do: C1, C3, D2, I2, M1,
    /// M2, M3, R3, X1).
    pub fn supported_root_device_types(&self) -> &'static [&'static str] {
        match self.family() {
            "d2" => &["ebs", "instance-store"],
            _ => &["ebs"],
        }
    }

    /// EC2's `SupportedBootModes`: UEFI came with Nitro.
    pub fn supported_boot_modes(&self) -> &'static [&'static str] {
        match self.hypervisor {
            Some(Hypervisor::Xen) => &["legacy-bios"],
            _ => &["legacy-bios", "uefi"],
        }
    }

    /// EC2's `NetworkInfo.EnaSupport`: required on Nitro and bare metal, supported on the Xen
    /// types here (all have ENA but for d2, which has the Intel 82599 VF only).
    pub fn ena_support(&self) -> &'static str {
        match (self.hypervisor, self.family()) {
            (Some(Hypervisor::Xen), "d2") => "unsupported",
            (Some(Hypervisor::Xen), _) => "supported",
            _ => "required",
        }
    }

    /// EC2's `NetworkInfo.EfaSupported`: the Elastic Fabric Adapter, on the largest sizes of
    /// the families that have it (EFA's list of supported instance types).
    pub fn efa_supported(&self) -> bool {
        match self.family() {
            "p4d" => true,
            "g5" => matches!(
                self.size(),
                "8xlarge" | "12xlarge" | "16xlarge" | "24xlarge" | "48xlarge"
            ),
            "g4dn" => matches!(self.size(), "8xlarge" | "12xlarge" | "16xlarge" | "metal"),
            "i3en" => matches!(self.size(), "24xlarge" | "metal"),
            "c6i" | "m6i" | "r6i" | "i4i" | "x2idn" => matches!(self.size(), "32xlarge" | "metal"),
            _ => false,
        }
    }

    /// EC2's `NetworkInfo.EncryptionInTransitSupported`: traffic between instances of these
    /// families is encrypted by the Nitro hardware (the VPC encryption-in-transit list).
    pub fn encryption_in_transit_supported(&self) -> bool {
        matches!(
            self.family(),
            "c6i" | "m6i" | "r6i" | "i4i" | "x2idn" | "d3" | "g4dn" | "g5" | "i3en" | "p4d"
        )
    }

    /// EC2's `NetworkInfo.EnaSrdSupported` (ENA Express): the 32xlarge sizes of the 6th
    /// generation Intel families here.
    pub fn ena_express_supported(&self) -> bool {
        matches!(self.family(), "c6i" | "m6i" | "r6i" | "i4i" | "x2idn")
            && self.size() == "32xlarge"
    }

    /// EC2's `NetworkInfo` interface limits by size (maximum network interfaces, IPv4
    /// addresses per interface; IPv6 the same), from "IP addresses per network interface per
    /// instance type": T3 by its own table, the rest by size (large 3×10, xlarge and 2xlarge
    /// 4×15, up to 12xlarge 8×30, larger and metal 15×50).
    pub fn network_interfaces(&self) -> (u32, u32) {
        if self.family() == "t3" {
            return match self.size() {
                "nano" | "micro" => (2, 2),
                "small" => (3, 4),
                "medium" => (3, 6),
                "large" => (3, 12),
                _ => (4, 15),
            };
        }
        match self.size() {
            "large" => (3, 10),
            "xlarge" | "2xlarge" => (4, 15),
            "4xlarge" | "8xlarge" | "9xlarge" | "12xlarge" => (8, 30),
            _ => (15, 50),
        }
    }

    /// A current generation, EBS-only, x86_64 Nitro type; the builders below add the rest.
    const fn new(
        name: &'static str,
        vcpus: u32,
        memory_mib: u64,
        network_performance: &'static str,
        ebs: EbsOptimizedInfo,
    ) -> InstanceType {
        InstanceType {
            name,
            current_generation: true,
            vcpus,
            memory_mib,
            instance_store: None,
            ebs,
            gpus: None,
            network_performance,
            burstable: false,
            hypervisor: Some(Hypervisor::Nitro),
            architecture: Architecture::X86_64,
        }
    }

    /// With `count` NVMe SSDs of `size_gb` each.
    const fn nvme_ssd(self, count: u32, size_gb: u64) -> InstanceType {
        self.store(count, size_gb, DiskType::Ssd, true)
    }

    const fn store(self, count: u32, size_gb: u64, disk: DiskType, nvme: bool) -> InstanceType {
        InstanceType {
            instance_store: Some(InstanceStore {
                count,
                size_gb,
                disk,
                nvme,
            }),
            ..self
        }
    }

    const fn xen(self) -> InstanceType {
        InstanceType {
            hypervisor: Some(Hypervisor::Xen),
            ..self
        }
    }

    const fn metal(self) -> InstanceType {
        InstanceType {
            hypervisor: None,
            ..self
        }
    }

    const fn burstable(self) -> InstanceType {
        InstanceType {
            burstable: true,
            ..self
        }
    }

    /// With `count` NVIDIA GPUs `name` of `memory_gib` each.
    const fn nvidia(self, name: &'static str, count: u32, memory_gib: u64) -> InstanceType {
        InstanceType {
            gpus: Some(Gpus {
                name,
                manufacturer: "NVIDIA",
                count,
                memory_mib: memory_gib * 1024,
            }),
            ..self
        }
    }
}

/// GiB (the documentation's unit, quarters included) to MiB.
const fn gib(gib: f64) -> u64 {
    (gib * 1024.0) as u64
}

/// A type that sustains its maximum EBS performance: baseline equals maximum.
const fn ebs(mbps: u32, mb_per_s: f64, iops: u32) -> EbsOptimizedInfo {
    ebs_burst(mbps, mbps, mb_per_s, mb_per_s, iops, iops)
}

/// A type with an EBS baseline below its maximum.
const fn ebs_burst(
    baseline_mbps: u32,
    maximum_mbps: u32,
    baseline_mb_per_s: f64,
    maximum_mb_per_s: f64,
    baseline_iops: u32,
    maximum_iops: u32,
) -> EbsOptimizedInfo {
    EbsOptimizedInfo {
        baseline_bandwidth_mbps: baseline_mbps,
        maximum_bandwidth_mbps: maximum_mbps,
        baseline_throughput_mb_per_s: baseline_mb_per_s,
        maximum_throughput_mb_per_s: maximum_mb_per_s,
        baseline_iops,
        maximum_iops,
    }
}

const SSD: DiskType = DiskType::Ssd;
const HDD: DiskType = DiskType::Hdd;

// EBS limits shared by several families (the EBS-optimized table gives them per size).
// m5, m5d, r5, r5d.
const M5_L: EbsOptimizedInfo = ebs_burst(650, 4750, 81.25, 593.75, 3600, 18750);
const M5_XL: EbsOptimizedInfo = ebs_burst(1150, 4750, 143.75, 593.75, 6000, 18750);
const M5_2XL: EbsOptimizedInfo = ebs_burst(2300, 4750, 287.5, 593.75, 12000, 18750);
const M5_4XL: EbsOptimizedInfo = ebs(4750, 593.75, 18750);
const M5_8XL: EbsOptimizedInfo = ebs(6800, 850.0, 30000);
const M5_12XL: EbsOptimizedInfo = ebs(9500, 1187.5, 40000);
const M5_16XL: EbsOptimizedInfo = ebs(13600, 1700.0, 60000);
const M5_24XL: EbsOptimizedInfo = ebs(19000, 2375.0, 80000);
// c5, c5d.
const C5_L: EbsOptimizedInfo = ebs_burst(650, 4750, 81.25, 593.75, 4000, 20000);
const C5_XL: EbsOptimizedInfo = ebs_burst(1150, 4750, 143.75, 593.75, 6000, 20000);
const C5_2XL: EbsOptimizedInfo = ebs_burst(2300, 4750, 287.5, 593.75, 10000, 20000);
const C5_4XL: EbsOptimizedInfo = ebs(4750, 593.75, 20000);
const C5_9XL: EbsOptimizedInfo = ebs(9500, 1187.5, 40000);
const C5_18XL: EbsOptimizedInfo = ebs(19000, 2375.0, 80000);
// m6i, c6i, r6i.
const I6_L: EbsOptimizedInfo = ebs_burst(650, 10000, 81.25, 1250.0, 3600, 40000);
const I6_XL: EbsOptimizedInfo = ebs_burst(1250, 10000, 156.25, 1250.0, 6000, 40000);
const I6_2XL: EbsOptimizedInfo = ebs_burst(2500, 10000, 312.5, 1250.0, 12000, 40000);
const I6_4XL: EbsOptimizedInfo = ebs_burst(5000, 10000, 625.0, 1250.0, 20000, 40000);
const I6_8XL: EbsOptimizedInfo = ebs(10000, 1250.0, 40000);
const I6_12XL: EbsOptimizedInfo = ebs(15000, 1875.0, 60000);
const I6_16XL: EbsOptimizedInfo = ebs(20000, 2500.0, 80000);
const I6_24XL: EbsOptimizedInfo = ebs(30000, 3750.0, 120000);
const I6_32XL: EbsOptimizedInfo = ebs(40000, 5000.0, 160000);
// t3.large, t3.xlarge, t3.2xlarge.
const T3_L: EbsOptimizedInfo = ebs_burst(695, 2780, 86.88, 347.5, 4000, 15700);

const UP_TO_5: &str = "Up to 5 Gigabit";
const UP_TO_10: &str = "Up to 10 Gigabit";
const UP_TO_12_5: &str = "Up to 12.5 Gigabit";
const UP_TO_25: &str = "Up to 25 Gigabit";

/// The catalog, family by family, sizes smallest first: 155 types.
///
/// Sources, all in the Amazon EC2 User Guide unless noted: the hardware specification and network
/// performance tables of the general purpose, compute, memory, storage optimized and accelerated
/// computing instance pages (vCPUs, memory, network performance); the list of instances built on
/// the Nitro System (hypervisor; the others here are Xen); the instance store volume table; the
/// EBS-optimized instance tables (baseline and maximum bandwidth, throughput and IOPS; the
/// throughputs of bursting sizes are the documentation's two-decimal figures); the family
/// descriptions (GPU models: V100, A100, A10G; T4 as the EC2 G4 page names it); the AWS Batch
/// GPU table (GPU count and memory per instance type); a DescribeInstanceTypes reply for
/// p3.16xlarge (`V100`, 16384 MiB, `xen`, `25 Gigabit`).
///
/// Left out: nothing among the sizes of the generations covered (m5, m5d, m6i, t3, c5, c5d, c6i,
/// r5, r5d, r6i, x1e, x2idn, i3, i3en, i4i, d2, d3, h1, p3, p4d, g4dn, g5) lacked a verified
/// figure. Not covered: other generations and variants (AMD `a`, Graviton `g`, `n`, `b`, `z`,
/// `e`: x2iedn, x2iezn, d3en, p3dn, p4de, g4ad, g5g, ...), so arm64 types are absent; p4d has
/// only its 24xlarge (an older EBS table's `p4d.2xlarge` row appears in no other table). Where
/// two versions of the documentation differ, the later one is used: t3 throughputs are 1/8 of
/// their bandwidth (earlier: 5.43 and 260.57 MB/s for t3.nano).
static CATALOG: &[InstanceType] = &[
    // ---------------------------------------------------------------------------------- M
    InstanceType::new("m5.large", 2, gib(8.0), UP_TO_10, M5_L),
    InstanceType::new("m5.xlarge", 4, gib(16.0), UP_TO_10, M5_XL),
    InstanceType::new("m5.2xlarge", 8, gib(32.0), UP_TO_10, M5_2XL),
    InstanceType::new("m5.4xlarge", 16, gib(64.0), UP_TO_10, M5_4XL),
    InstanceType::new("m5.8xlarge", 32, gib(128.0), "10 Gigabit", M5_8XL),
    InstanceType::new("m5.12xlarge", 48, gib(192.0), "12 Gigabit", M5_12XL),
    InstanceType::new("m5.16xlarge", 64, gib(256.0), "20 Gigabit", M5_16XL),
    InstanceType::new("m5.24xlarge", 96, gib(384.0), "25 Gigabit", M5_24XL),
    InstanceType::new("m5.metal", 96, gib(384.0), "25 Gigabit", M5_24XL).metal(),
    InstanceType::new("m5d.large", 2, gib(8.0), UP_TO_10, M5_L).nvme_ssd(1, 75),
    InstanceType::new("m5d.xlarge", 4, gib(16.0), UP_TO_10, M5_XL).nvme_ssd(1, 150),
    InstanceType::new("m5d.2xlarge", 8, gib(32.0), UP_TO_10, M5_2XL).nvme_ssd(1, 300),
    InstanceType::new("m5d.4xlarge", 16, gib(64.0), UP_TO_10, M5_4XL).nvme_ssd(2, 300),
    InstanceType::new("m5d.8xlarge", 32, gib(128.0), "10 Gigabit", M5_8XL).nvme_ssd(2, 600),
    InstanceType::new("m5d.12xlarge", 48, gib(192.0), "12 Gigabit", M5_12XL).nvme_ssd(2, 900),
    InstanceType::new("m5d.16xlarge", 64, gib(256.0), "20 Gigabit", M5_16XL).nvme_ssd(4, 600),
    InstanceType::new("m5d.24xlarge", 96, gib(384.0), "25 Gigabit", M5_24XL).nvme_ssd(4, 900),
    InstanceType::new("m5d.metal", 96, gib(384.0), "25 Gigabit", M5_24XL)
        .nvme_ssd(4, 900)
        .metal(),
    InstanceType::new("m6i.large", 2, gib(8.0), UP_TO_12_5, I6_L),
    InstanceType::new("m6i.xlarge", 4, gib(16.0), UP_TO_12_5, I6_XL),
    InstanceType::new("m6i.2xlarge", 8, gib(32.0), UP_TO_12_5, I6_2XL),
    InstanceType::new("m6i.4xlarge", 16, gib(64.0), UP_TO_12_5, I6_4XL),
    InstanceType::new("m6i.8xlarge", 32, gib(128.0), "12.5 Gigabit", I6_8XL),
    InstanceType::new("m6i.12xlarge", 48, gib(192.0), "18.75 Gigabit", I6_12XL),
    InstanceType::new("m6i.16xlarge", 64, gib(256.0), "25 Gigabit", I6_16XL),
    InstanceType::new("m6i.24xlarge", 96, gib(384.0), "37.5 Gigabit", I6_24XL),
    InstanceType::new("m6i.32xlarge", 128, gib(512.0), "50 Gigabit", I6_32XL),
    InstanceType::new("m6i.metal", 128, gib(512.0), "50 Gigabit", I6_32XL).metal(),
    // ---------------------------------------------------------------------------------- T
    InstanceType::new(
        "t3.nano",
        2,
        gib(0.5),
        UP_TO_5,
        ebs_burst(43, 2085, 5.38, 260.62, 250, 11800),
    )
    .burstable(),
    InstanceType::new(
        "t3.micro",
        2,
        gib(1.0),
        UP_TO_5,
        ebs_burst(87, 2085, 10.88, 260.62, 500, 11800),
    )
    .burstable(),
    InstanceType::new(
        "t3.small",
        2,
        gib(2.0),
        UP_TO_5,
        ebs_burst(174, 2085, 21.75, 260.62, 1000, 11800),
    )
    .burstable(),
    InstanceType::new(
        "t3.medium",
        2,
        gib(4.0),
        UP_TO_5,
        ebs_burst(347, 2085, 43.38, 260.62, 2000, 11800),
    )
    .burstable(),
    InstanceType::new("t3.large", 2, gib(8.0), UP_TO_5, T3_L).burstable(),
    InstanceType::new("t3.xlarge", 4, gib(16.0), UP_TO_5, T3_L).burstable(),
    InstanceType::new("t3.2xlarge", 8, gib(32.0), UP_TO_5, T3_L).burstable(),
    // ---------------------------------------------------------------------------------- C
    InstanceType::new("c5.large", 2, gib(4.0), UP_TO_10, C5_L),
    InstanceType::new("c5.xlarge", 4, gib(8.0), UP_TO_10, C5_XL),
    InstanceType::new("c5.2xlarge", 8, gib(16.0), UP_TO_10, C5_2XL),
    InstanceType::new("c5.4xlarge", 16, gib(32.0), UP_TO_10, C5_4XL),
    InstanceType::new("c5.9xlarge", 36, gib(72.0), "12 Gigabit", C5_9XL),
    InstanceType::new("c5.12xlarge", 48, gib(96.0), "12 Gigabit", C5_9XL),
    InstanceType::new("c5.18xlarge", 72, gib(144.0), "25 Gigabit", C5_18XL),
    InstanceType::new("c5.24xlarge", 96, gib(192.0), "25 Gigabit", C5_18XL),
    InstanceType::new("c5.metal", 96, gib(192.0), "25 Gigabit", C5_18XL).metal(),
    InstanceType::new("c5d.large", 2, gib(4.0), UP_TO_10, C5_L).nvme_ssd(1, 50),
    InstanceType::new("c5d.xlarge", 4, gib(8.0), UP_TO_10, C5_XL).nvme_ssd(1, 100),
    InstanceType::new("c5d.2xlarge", 8, gib(16.0), UP_TO_10, C5_2XL).nvme_ssd(1, 200),
    InstanceType::new("c5d.4xlarge", 16, gib(32.0), UP_TO_10, C5_4XL).nvme_ssd(1, 400),
    InstanceType::new("c5d.9xlarge", 36, gib(72.0), "12 Gigabit", C5_9XL).nvme_ssd(1, 900),
    InstanceType::new("c5d.12xlarge", 48, gib(96.0), "12 Gigabit", C5_9XL).nvme_ssd(2, 900),
    InstanceType::new("c5d.18xlarge", 72, gib(144.0), "25 Gigabit", C5_18XL).nvme_ssd(2, 900),
    InstanceType::new("c5d.24xlarge", 96, gib(192.0), "25 Gigabit", C5_18XL).nvme_ssd(4, 900),
    InstanceType::new("c5d.metal", 96, gib(192.0), "25 Gigabit", C5_18XL)
        .nvme_ssd(4, 900)
        .metal(),
    InstanceType::new("c6i.large", 2, gib(4.0), UP_TO_12_5, I6_L),
    InstanceType::new("c6i.xlarge", 4, gib(8.0), UP_TO_12_5, I6_XL),
    InstanceType::new("c6i.2xlarge", 8, gib(16.0), UP_TO_12_5, I6_2XL),
    InstanceType::new("c6i.4xlarge", 16, gib(32.0), UP_TO_12_5, I6_4XL),
    InstanceType::new("c6i.8xlarge", 32, gib(64.0), "12.5 Gigabit", I6_8XL),
    InstanceType::new("c6i.12xlarge", 48, gib(96.0), "18.75 Gigabit", I6_12XL),
    InstanceType::new("c6i.16xlarge", 64, gib(128.0), "25 Gigabit", I6_16XL),
    InstanceType::new("c6i.24xlarge", 96, gib(192.0), "37.5 Gigabit", I6_24XL),
    InstanceType::new("c6i.32xlarge", 128, gib(256.0), "50 Gigabit", I6_32XL),
    InstanceType::new("c6i.metal", 128, gib(256.0), "50 Gigabit", I6_32XL).metal(),
    // ---------------------------------------------------------------------------------- R
    InstanceType::new("r5.large", 2, gib(16.0), UP_TO_10, M5_L),
    InstanceType::new("r5.xlarge", 4, gib(32.0), UP_TO_10, M5_XL),
    InstanceType::new("r5.2xlarge", 8, gib(64.0), UP_TO_10, M5_2XL),
    InstanceType::new("r5.4xlarge", 16, gib(128.0), UP_TO_10, M5_4XL),
    InstanceType::new("r5.8xlarge", 32, gib(256.0), "10 Gigabit", M5_8XL),
    InstanceType::new("r5.12xlarge", 48, gib(384.0), "12 Gigabit", M5_12XL),
    InstanceType::new("r5.16xlarge", 64, gib(512.0), "20 Gigabit", M5_16XL),
    InstanceType::new("r5.24xlarge", 96, gib(768.0), "25 Gigabit", M5_24XL),
    InstanceType::new("r5.metal", 96, gib(768.0), "25 Gigabit", M5_24XL).metal(),
    InstanceType::new("r5d.large", 2, gib(16.0), UP_TO_10, M5_L).nvme_ssd(1, 75),
    InstanceType::new("r5d.xlarge", 4, gib(32.0), UP_TO_10, M5_XL).nvme_ssd(1, 150),
    InstanceType::new("r5d.2xlarge", 8, gib(64.0), UP_TO_10, M5_2XL).nvme_ssd(1, 300),
    InstanceType::new("r5d.4xlarge", 16, gib(128.0), UP_TO_10, M5_4XL).nvme_ssd(2, 300),
    InstanceType::new("r5d.8xlarge", 32, gib(256.0), "10 Gigabit", M5_8XL).nvme_ssd(2, 600),
    InstanceType::new("r5d.12xlarge", 48, gib(384.0), "12 Gigabit", M5_12XL).nvme_ssd(2, 900),
    InstanceType::new("r5d.16xlarge", 64, gib(512.0), "20 Gigabit", M5_16XL).nvme_ssd(4, 600),
    InstanceType::new("r5d.24xlarge", 96, gib(768.0), "25 Gigabit", M5_24XL).nvme_ssd(4, 900),
    InstanceType::new("r5d.metal", 96, gib(768.0), "25 Gigabit", M5_24XL)
        .nvme_ssd(4, 900)
        .metal(),
    InstanceType::new("r6i.large", 2, gib(16.0), UP_TO_12_5, I6_L),
    InstanceType::new("r6i.xlarge", 4, gib(32.0), UP_TO_12_5, I6_XL),
    InstanceType::new("r6i.2xlarge", 8, gib(64.0), UP_TO_12_5, I6_2XL),
    InstanceType::new("r6i.4xlarge", 16, gib(128.0), UP_TO_12_5, I6_4XL),
    InstanceType::new("r6i.8xlarge", 32, gib(256.0), "12.5 Gigabit", I6_8XL),
    InstanceType::new("r6i.12xlarge", 48, gib(384.0), "18.75 Gigabit", I6_12XL),
    InstanceType::new("r6i.16xlarge", 64, gib(512.0), "25 Gigabit", I6_16XL),
    InstanceType::new("r6i.24xlarge", 96, gib(768.0), "37.5 Gigabit", I6_24XL),
    InstanceType::new("r6i.32xlarge", 128, gib(1024.0), "50 Gigabit", I6_32XL),
    InstanceType::new("r6i.metal", 128, gib(1024.0), "50 Gigabit", I6_32XL).metal(),
    // ---------------------------------------------------------------------------------- X
    InstanceType::new("x1e.xlarge", 4, gib(122.0), UP_TO_10, ebs(500, 62.5, 3700))
        .store(1, 120, SSD, false)
        .xen(),
    InstanceType::new(
        "x1e.2xlarge",
        8,
        gib(244.0),
        UP_TO_10,
        ebs(1000, 125.0, 7400),
    )
    .store(1, 240, SSD, false)
    .xen(),
    InstanceType::new(
        "x1e.4xlarge",
        16,
        gib(488.0),
        UP_TO_10,
        ebs(1750, 218.75, 10000),
    )
    .store(1, 480, SSD, false)
    .xen(),
    InstanceType::new(
        "x1e.8xlarge",
        32,
        gib(976.0),
        UP_TO_10,
        ebs(3500, 437.5, 20000),
    )
    .store(1, 960, SSD, false)
    .xen(),
    InstanceType::new(
        "x1e.16xlarge",
        64,
        gib(1952.0),
        "10 Gigabit",
        ebs(7000, 875.0, 40000),
    )
    .store(1, 1920, SSD, false)
    .xen(),
    InstanceType::new(
        "x1e.32xlarge",
        128,
        gib(3904.0),
        "25 Gigabit",
        ebs(14000, 1750.0, 80000),
    )
    .store(2, 1920, SSD, false)
    .xen(),
    InstanceType::new(
        "x2idn.16xlarge",
        64,
        gib(1024.0),
        "50 Gigabit",
        ebs(40000, 5000.0, 173333),
    )
    .nvme_ssd(1, 1900),
    InstanceType::new(
        "x2idn.24xlarge",
        96,
        gib(1536.0),
        "75 Gigabit",
        ebs(60000, 7500.0, 260000),
    )
    .nvme_ssd(2, 1425),
    InstanceType::new(
        "x2idn.32xlarge",
        128,
        gib(2048.0),
        "100 Gigabit",
        ebs(80000, 10000.0, 260000),
    )
    .nvme_ssd(2, 1900),
    InstanceType::new(
        "x2idn.metal",
        128,
        gib(2048.0),
        "100 Gigabit",
        ebs(80000, 10000.0, 260000),
    )
    .nvme_ssd(2, 1900)
    .metal(),
    // ---------------------------------------------------------------------------------- I
    InstanceType::new("i3.large", 2, gib(15.25), UP_TO_10, ebs(425, 53.125, 3000))
        .nvme_ssd(1, 475)
        .xen(),
    InstanceType::new("i3.xlarge", 4, gib(30.5), UP_TO_10, ebs(850, 106.25, 6000))
        .nvme_ssd(1, 950)
        .xen(),
    InstanceType::new(
        "i3.2xlarge",
        8,
        gib(61.0),
        UP_TO_10,
        ebs(1700, 212.5, 12000),
    )
    .nvme_ssd(1, 1900)
    .xen(),
    InstanceType::new(
        "i3.4xlarge",
        16,
        gib(122.0),
        UP_TO_10,
        ebs(3500, 437.5, 16000),
    )
    .nvme_ssd(2, 1900)
    .xen(),
    InstanceType::new(
        "i3.8xlarge",
        32,
        gib(244.0),
        "10 Gigabit",
        ebs(7000, 875.0, 32500),
    )
    .nvme_ssd(4, 1900)
    .xen(),
    InstanceType::new(
        "i3.16xlarge",
        64,
        gib(488.0),
        "25 Gigabit",
        ebs(14000, 1750.0, 65000),
    )
    .nvme_ssd(8, 1900)
    .xen(),
    InstanceType::new(
        "i3.metal",
        72,
        gib(512.0),
        "25 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(8, 1900)
    .metal(),
    InstanceType::new(
        "i3en.large",
        2,
        gib(16.0),
        UP_TO_25,
        ebs_burst(576, 4750, 72.10, 593.75, 3000, 20000),
    )
    .nvme_ssd(1, 1250),
    InstanceType::new(
        "i3en.xlarge",
        4,
        gib(32.0),
        UP_TO_25,
        ebs_burst(1153, 4750, 144.20, 593.75, 6000, 20000),
    )
    .nvme_ssd(1, 2500),
    InstanceType::new(
        "i3en.2xlarge",
        8,
        gib(64.0),
        UP_TO_25,
        ebs_burst(2307, 4750, 288.39, 593.75, 12000, 20000),
    )
    .nvme_ssd(2, 2500),
    InstanceType::new(
        "i3en.3xlarge",
        12,
        gib(96.0),
        UP_TO_25,
        ebs_burst(3800, 4750, 475.0, 593.75, 15000, 20000),
    )
    .nvme_ssd(1, 7500),
    InstanceType::new(
        "i3en.6xlarge",
        24,
        gib(192.0),
        "25 Gigabit",
        ebs(4750, 593.75, 20000),
    )
    .nvme_ssd(2, 7500),
    InstanceType::new(
        "i3en.12xlarge",
        48,
        gib(384.0),
        "50 Gigabit",
        ebs(9500, 1187.5, 40000),
    )
    .nvme_ssd(4, 7500),
    InstanceType::new(
        "i3en.24xlarge",
        96,
        gib(768.0),
        "100 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(8, 7500),
    InstanceType::new(
        "i3en.metal",
        96,
        gib(768.0),
        "100 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(8, 7500)
    .metal(),
    InstanceType::new(
        "i4i.large",
        2,
        gib(16.0),
        UP_TO_10,
        ebs_burst(625, 10000, 78.12, 1250.0, 2500, 40000),
    )
    .nvme_ssd(1, 468),
    InstanceType::new(
        "i4i.xlarge",
        4,
        gib(32.0),
        UP_TO_10,
        ebs_burst(1250, 10000, 156.25, 1250.0, 5000, 40000),
    )
    .nvme_ssd(1, 937),
    InstanceType::new(
        "i4i.2xlarge",
        8,
        gib(64.0),
        "Up to 12 Gigabit",
        ebs_burst(2500, 10000, 312.5, 1250.0, 10000, 40000),
    )
    .nvme_ssd(1, 1875),
    InstanceType::new(
        "i4i.4xlarge",
        16,
        gib(128.0),
        UP_TO_25,
        ebs_burst(5000, 10000, 625.0, 1250.0, 20000, 40000),
    )
    .nvme_ssd(1, 3750),
    InstanceType::new(
        "i4i.8xlarge",
        32,
        gib(256.0),
        "18.75 Gigabit",
        ebs(10000, 1250.0, 40000),
    )
    .nvme_ssd(2, 3750),
    InstanceType::new(
        "i4i.16xlarge",
        64,
        gib(512.0),
        "37.5 Gigabit",
        ebs(20000, 2500.0, 80000),
    )
    .nvme_ssd(4, 3750),
    InstanceType::new(
        "i4i.32xlarge",
        128,
        gib(1024.0),
        "75 Gigabit",
        ebs(40000, 5000.0, 160000),
    )
    .nvme_ssd(8, 3750),
    InstanceType::new(
        "i4i.metal",
        128,
        gib(1024.0),
        "75 Gigabit",
        ebs(40000, 5000.0, 160000),
    )
    .nvme_ssd(8, 3750)
    .metal(),
    // ---------------------------------------------------------------------------------- D
    InstanceType::new("d2.xlarge", 4, gib(30.5), "Moderate", ebs(750, 93.75, 6000))
        .store(3, 2048, HDD, false)
        .xen(),
    InstanceType::new("d2.2xlarge", 8, gib(61.0), "High", ebs(1000, 125.0, 8000))
        .store(6, 2048, HDD, false)
        .xen(),
    InstanceType::new(
        "d2.4xlarge",
        16,
        gib(122.0),
        "High",
        ebs(2000, 250.0, 16000),
    )
    .store(12, 2048, HDD, false)
    .xen(),
    InstanceType::new(
        "d2.8xlarge",
        36,
        gib(244.0),
        "10 Gigabit",
        ebs(4000, 500.0, 32000),
    )
    .store(24, 2048, HDD, false)
    .xen(),
    InstanceType::new(
        "d3.xlarge",
        4,
        gib(32.0),
        "Up to 15 Gigabit",
        ebs_burst(850, 2800, 106.25, 350.0, 5000, 15000),
    )
    .store(3, 1980, HDD, true),
    InstanceType::new(
        "d3.2xlarge",
        8,
        gib(64.0),
        "Up to 15 Gigabit",
        ebs_burst(1700, 2800, 212.5, 350.0, 10000, 15000),
    )
    .store(6, 1980, HDD, true),
    InstanceType::new(
        "d3.4xlarge",
        16,
        gib(128.0),
        "Up to 15 Gigabit",
        ebs(2800, 350.0, 15000),
    )
    .store(12, 1980, HDD, true),
    InstanceType::new(
        "d3.8xlarge",
        32,
        gib(256.0),
        "25 Gigabit",
        ebs(5000, 625.0, 30000),
    )
    .store(24, 1980, HDD, true),
    // ---------------------------------------------------------------------------------- H
    InstanceType::new(
        "h1.2xlarge",
        8,
        gib(32.0),
        UP_TO_10,
        ebs(1750, 218.75, 12000),
    )
    .store(1, 2000, HDD, false)
    .xen(),
    InstanceType::new(
        "h1.4xlarge",
        16,
        gib(64.0),
        UP_TO_10,
        ebs(3500, 437.5, 20000),
    )
    .store(2, 2000, HDD, false)
    .xen(),
    InstanceType::new(
        "h1.8xlarge",
        32,
        gib(128.0),
        "10 Gigabit",
        ebs(7000, 875.0, 40000),
    )
    .store(4, 2000, HDD, false)
    .xen(),
    InstanceType::new(
        "h1.16xlarge",
        64,
        gib(256.0),
        "25 Gigabit",
        ebs(14000, 1750.0, 80000),
    )
    .store(8, 2000, HDD, false)
    .xen(),
    // ---------------------------------------------------------------------------------- P
    InstanceType::new(
        "p3.2xlarge",
        8,
        gib(61.0),
        UP_TO_10,
        ebs(1750, 218.75, 10000),
    )
    .nvidia("V100", 1, 16)
    .xen(),
    InstanceType::new(
        "p3.8xlarge",
        32,
        gib(244.0),
        "10 Gigabit",
        ebs(7000, 875.0, 40000),
    )
    .nvidia("V100", 4, 16)
    .xen(),
    InstanceType::new(
        "p3.16xlarge",
        64,
        gib(488.0),
        "25 Gigabit",
        ebs(14000, 1750.0, 80000),
    )
    .nvidia("V100", 8, 16)
    .xen(),
    InstanceType::new(
        "p4d.24xlarge",
        96,
        gib(1152.0),
        "4x 100 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(8, 1000)
    .nvidia("A100", 8, 40),
    // ---------------------------------------------------------------------------------- G
    InstanceType::new(
        "g4dn.xlarge",
        4,
        gib(16.0),
        UP_TO_25,
        ebs_burst(950, 3500, 118.75, 437.5, 3000, 20000),
    )
    .nvme_ssd(1, 125)
    .nvidia("T4", 1, 16),
    InstanceType::new(
        "g4dn.2xlarge",
        8,
        gib(32.0),
        UP_TO_25,
        ebs_burst(1150, 3500, 143.75, 437.5, 6000, 20000),
    )
    .nvme_ssd(1, 225)
    .nvidia("T4", 1, 16),
    InstanceType::new(
        "g4dn.4xlarge",
        16,
        gib(64.0),
        UP_TO_25,
        ebs(4750, 593.75, 20000),
    )
    .nvme_ssd(1, 225)
    .nvidia("T4", 1, 16),
    InstanceType::new(
        "g4dn.8xlarge",
        32,
        gib(128.0),
        "50 Gigabit",
        ebs(9500, 1187.5, 40000),
    )
    .nvme_ssd(1, 900)
    .nvidia("T4", 1, 16),
    InstanceType::new(
        "g4dn.12xlarge",
        48,
        gib(192.0),
        "50 Gigabit",
        ebs(9500, 1187.5, 40000),
    )
    .nvme_ssd(1, 900)
    .nvidia("T4", 4, 16),
    InstanceType::new(
        "g4dn.16xlarge",
        64,
        gib(256.0),
        "50 Gigabit",
        ebs(9500, 1187.5, 40000),
    )
    .nvme_ssd(1, 900)
    .nvidia("T4", 1, 16),
    InstanceType::new(
        "g4dn.metal",
        96,
        gib(384.0),
        "100 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(2, 900)
    .nvidia("T4", 8, 16)
    .metal(),
    InstanceType::new(
        "g5.xlarge",
        4,
        gib(16.0),
        UP_TO_10,
        ebs_burst(700, 3500, 87.5, 437.5, 3000, 15000),
    )
    .nvme_ssd(1, 250)
    .nvidia("A10G", 1, 24),
    InstanceType::new(
        "g5.2xlarge",
        8,
        gib(32.0),
        UP_TO_10,
        ebs_burst(850, 3500, 106.25, 437.5, 3500, 15000),
    )
    .nvme_ssd(1, 450)
    .nvidia("A10G", 1, 24),
    InstanceType::new(
        "g5.4xlarge",
        16,
        gib(64.0),
        UP_TO_25,
        ebs(4750, 593.75, 20000),
    )
    .nvme_ssd(1, 600)
    .nvidia("A10G", 1, 24),
    InstanceType::new(
        "g5.8xlarge",
        32,
        gib(128.0),
        "25 Gigabit",
        ebs(16000, 2000.0, 65000),
    )
    .nvme_ssd(1, 900)
    .nvidia("A10G", 1, 24),
    InstanceType::new(
        "g5.12xlarge",
        48,
        gib(192.0),
        "40 Gigabit",
        ebs(16000, 2000.0, 65000),
    )
    .nvme_ssd(1, 3800)
    .nvidia("A10G", 4, 24),
    InstanceType::new(
        "g5.16xlarge",
        64,
        gib(256.0),
        "25 Gigabit",
        ebs(16000, 2000.0, 65000),
    )
    .nvme_ssd(1, 1900)
    .nvidia("A10G", 1, 24),
    InstanceType::new(
        "g5.24xlarge",
        96,
        gib(384.0),
        "50 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(1, 3800)
    .nvidia("A10G", 4, 24),
    InstanceType::new(
        "g5.48xlarge",
        192,
        gib(768.0),
        "100 Gigabit",
        ebs(19000, 2375.0, 80000),
    )
    .nvme_ssd(2, 3800)
    .nvidia("A10G", 8, 24),
];

/// Every instance type, in catalog order.
pub fn catalog() -> &'static [InstanceType] {
    CATALOG
}

/// The instance type named `name` (exact, case-sensitive as in EC2).
pub fn lookup(name: &str) -> Option<&'static InstanceType> {
    CATALOG.iter().find(|t| t.name == name)
}

/// The smallest and largest page DescribeInstanceTypes accepts.
pub const MAX_RESULTS_RANGE: std::ops::RangeInclusive<i32> = 5..=100;

/// Why a DescribeInstanceTypes request is refused; [`DescribeError::code`] is the EC2 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescribeError {
    /// Names that are not instance types (`InvalidInstanceType`).
    #[error("The following supplied instance types do not exist: [{}]", .0.join(", "))]
    UnknownInstanceTypes(Vec<String>),
    /// A filter this query does not know (`InvalidParameterValue`).
    #[error("The filter '{0}' is invalid")]
    UnknownFilter(String),
    /// A filter without values (`InvalidParameterValue`).
    #[error("The filter '{0}' must have at least one value")]
    EmptyFilter(String),
    /// `MaxResults` outside 5..=100 (`InvalidParameterValue`).
    #[error(
        "Value ( {0} ) for parameter maxResults is invalid. Expecting a value between 5 and 100."
    )]
    MaxResultsOutOfRange(i32),
    /// Both `InstanceTypes` and `MaxResults` (`InvalidParameterCombination`).
    #[error("The parameter instanceTypes cannot be used with the parameter maxResults")]
    InstanceTypesWithMaxResults,
    /// A `NextToken` this query did not hand out (`InvalidPaginationToken`).
    #[error("The pagination token '{0}' is invalid")]
    InvalidNextToken(String),
}

impl DescribeError {
    /// The EC2 error code, e.g. `InvalidInstanceType`.
    pub fn code(&self) -> &'static str {
        match self {
            DescribeError::UnknownInstanceTypes(_) => "InvalidInstanceType",
            DescribeError::UnknownFilter(_)
            | DescribeError::EmptyFilter(_)
            | DescribeError::MaxResultsOutOfRange(_) => "InvalidParameterValue",
            DescribeError::InstanceTypesWithMaxResults => "InvalidParameterCombination",
            DescribeError::InvalidNextToken(_) => "InvalidPaginationToken",
        }
    }
}

/// A DescribeInstanceTypes filter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterKey {
    InstanceType,
    CurrentGeneration,
    DefaultVcpus,
    MemoryMib,
    InstanceStorageSupported,
    InstanceStorageTotalGb,
    EbsMaximumIops,
    Burstable,
    Architecture,
}

impl FilterKey {
    fn parse(name: &str) -> Option<FilterKey> {
        Some(match name {
            "instance-type" => FilterKey::InstanceType,
            "current-generation" => FilterKey::CurrentGeneration,
            "vcpu-info.default-vcpus" => FilterKey::DefaultVcpus,
            "memory-info.size-in-mib" => FilterKey::MemoryMib,
            "instance-storage-supported" => FilterKey::InstanceStorageSupported,
            "instance-storage-info.total-size-in-gb" => FilterKey::InstanceStorageTotalGb,
            "ebs-info.ebs-optimized-info.maximum-iops" => FilterKey::EbsMaximumIops,
            "burstable-performance-supported" => FilterKey::Burstable,
            "processor-info.supported-architecture" => FilterKey::Architecture,
            _ => return None,
        })
    }

    /// The attribute as the filter's values are written; `None` when the type has none (no
    /// instance store: no total size).
    fn value(self, t: &InstanceType) -> Option<String> {
        Some(match self {
            FilterKey::InstanceType => t.name.to_owned(),
            FilterKey::CurrentGeneration => t.current_generation.to_string(),
            FilterKey::DefaultVcpus => t.vcpus.to_string(),
            FilterKey::MemoryMib => t.memory_mib.to_string(),
            FilterKey::InstanceStorageSupported => t.instance_store.is_some().to_string(),
            FilterKey::InstanceStorageTotalGb => t.instance_store?.total_size_gb().to_string(),
            FilterKey::EbsMaximumIops => t.ebs.maximum_iops.to_string(),
            FilterKey::Burstable => t.burstable.to_string(),
            FilterKey::Architecture => t.architecture.as_str().to_owned(),
        })
    }
}

/// DescribeInstanceTypes over the catalog, with EC2's semantics.
///
/// * `names`: only these types; any unknown name fails the whole call. Not with `max_results`.
/// * `filters`: `(name, values)`; a type matches when every filter has a value matching its
///   attribute. Values may use the wildcards `*` and `?` (`\` escapes them).
/// * `max_results`: page size, 5..=100; the reply carries a token when more types follow.
///   Without it the reply holds every match from `next_token` on.
/// * `next_token`: a token from a previous reply (the hex of its last type's name).
///
/// # Errors
///
/// [`DescribeError`], whose [`code`](DescribeError::code) is EC2's.
pub fn describe(
    names: &[String],
    filters: &[(String, Vec<String>)],
    max_results: Option<i32>,
    next_token: Option<&str>,
) -> Result<(Vec<&'static InstanceType>, Option<String>), DescribeError> {
    if !names.is_empty() && max_results.is_some() {
        return Err(DescribeError::InstanceTypesWithMaxResults);
    }
    let page_size = match max_results {
        Some(n) if !MAX_RESULTS_RANGE.contains(&n) => {
            return Err(DescribeError::MaxResultsOutOfRange(n));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let filters = filters
        .iter()
        .map(|(name, values)| {
            let key =
                FilterKey::parse(name).ok_or_else(|| DescribeError::UnknownFilter(name.clone()))?;
            if values.is_empty() {
                return Err(DescribeError::EmptyFilter(name.clone()));
            }
            Ok((key, values))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => {
            let last = decode_token(token)
                .and_then(|name| CATALOG.iter().position(|t| t.name == name))
                .ok_or_else(|| DescribeError::InvalidNextToken(token.to_owned()))?;
            last + 1
        }
    };
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| lookup(n).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(DescribeError::UnknownInstanceTypes(unknown));
    }

    let mut matching = CATALOG[start.min(CATALOG.len())..]
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
        .filter(|t| {
            filters.iter().all(|(key, values)| {
                key.value(t)
                    .is_some_and(|v| values.iter().any(|pattern| wildcard_match(pattern, &v)))
            })
        });
    let page: Vec<&'static InstanceType> = matching.by_ref().take(page_size).collect();
    let next = match (page.last(), matching.next()) {
        (Some(last), Some(_)) => Some(encode_token(last.name)),
        _ => None,
    };
    Ok((page, next))
}

/// DescribeInstanceTypes on its protobuf messages: what the gRPC handler answers.
///
/// # Errors
///
/// As [`describe`].
pub fn describe_request(
    request: &pb::DescribeInstanceTypesRequest,
) -> Result<pb::DescribeInstanceTypesResponse, DescribeError> {
    let filters: Vec<(String, Vec<String>)> = request
        .filters
        .iter()
        .map(|f| (f.name.clone(), f.values.clone()))
        .collect();
    let (types, next_token) = describe(
        &request.instance_types,
        &filters,
        request.max_results,
        request.next_token.as_deref(),
    )?;
    Ok(pb::DescribeInstanceTypesResponse {
        instance_types: types.into_iter().map(pb::InstanceTypeInfo::from).collect(),
        next_token,
    })
}

/// The paging token after `name`: its bytes in lowercase hex.
fn encode_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The name a token from [`encode_token`] holds; `None` if it is not one.
fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Whether `text` matches `pattern`, where `*` is any run of characters, `?` any one character
/// and `\` makes the next character literal.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Star,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => Token::Star,
            '?' => Token::One,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy with one backtrack point: the last `*` seen and where its run ended.
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Star) => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                p += 1;
                t += 1;
            }
            Some(Token::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, run_end)) => {
                    p = star + 1;
                    t = run_end + 1;
                    backtrack = Some((star, run_end + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Star)
}

impl From<&InstanceType> for pb::InstanceTypeInfo {
    fn from(t: &InstanceType) -> Self {
        let ebs = &t.ebs;
        pb::InstanceTypeInfo {
            instance_type: t.name.to_owned(),
            current_generation: t.current_generation,
            default_vcpus: i32::try_from(t.vcpus).unwrap_or(i32::MAX),
            memory_size_in_mib: i64::try_from(t.memory_mib).unwrap_or(i64::MAX),
            instance_storage_supported: t.instance_store.is_some(),
            instance_storage_info: t.instance_store.map(|s| pb::InstanceStorageInfo {
                total_size_in_gb: i64::try_from(s.total_size_gb()).unwrap_or(i64::MAX),
                disks: vec![pb::DiskInfo {
                    size_in_gb: i64::try_from(s.size_gb).unwrap_or(i64::MAX),
                    count: i32::try_from(s.count).unwrap_or(i32::MAX),
                    r#type: s.disk.as_str().to_owned(),
                }],
                nvme_support: s.nvme_support().to_owned(),
            }),
            ebs_info: Some(pb::EbsInfo {
                ebs_optimized_support: t.ebs_optimized_support().to_owned(),
                ebs_optimized_info: Some(pb::EbsOptimizedInfo {
                    baseline_bandwidth_in_mbps: to_i32(ebs.baseline_bandwidth_mbps),
                    baseline_throughput_in_mb_ps: ebs.baseline_throughput_mb_per_s,
                    baseline_iops: to_i32(ebs.baseline_iops),
                    maximum_bandwidth_in_mbps: to_i32(ebs.maximum_bandwidth_mbps),
                    maximum_throughput_in_mb_ps: ebs.maximum_throughput_mb_per_s,
                    maximum_iops: to_i32(ebs.maximum_iops),
                }),
                nvme_support: t.ebs_nvme_support().to_owned(),
            }),
            supported_architectures: vec![t.architecture.as_str().to_owned()],
            gpus: t
                .gpus
                .iter()
                .map(|g| pb::GpuDeviceInfo {
                    name: g.name.to_owned(),
                    manufacturer: g.manufacturer.to_owned(),
                    count: to_i32(g.count),
                    memory_size_in_mib: i64::try_from(g.memory_mib).unwrap_or(i64::MAX),
                })
                .collect(),
            network_performance: t.network_performance.to_owned(),
            burstable_performance_supported: t.burstable,
            hypervisor: t
                .hypervisor
                .map(Hypervisor::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(types: &[&InstanceType]) -> Vec<&'static str> {
        types.iter().map(|t| t.name).collect()
    }

    fn filter(name: &str, values: &[&str]) -> (String, Vec<String>) {
        (
            name.to_owned(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        )
    }

    fn get(name: &str) -> &'static InstanceType {
        match lookup(name) {
            Some(t) => t,
            None => panic!("{name} not in the catalog"),
        }
    }

    /// Every match of `filters`, in one call.
    fn all(filters: &[(String, Vec<String>)]) -> Vec<&'static str> {
        match describe(&[], filters, None, None) {
            Ok((types, None)) => names_of(&types),
            other => panic!("{other:?}"),
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, DescribeError>) -> &'static str {
        match r {
            Err(e) => e.code(),
            Ok(v) => panic!("expected an error, got {v:?}"),
        }
    }

    #[test]
    fn catalog_covers_every_family_with_unique_consistent_entries() {
        assert_eq!(catalog().len(), 155);
        let mut seen = std::collections::HashSet::new();
        for t in catalog() {
            assert!(seen.insert(t.name), "{} twice", t.name);
            let (family, size) = t.name.split_once('.').unwrap_or(("", ""));
            assert!(!family.is_empty() && !size.is_empty(), "{}", t.name);
            assert!(t.vcpus > 0 && t.memory_mib > 0, "{}", t.name);
            let e = &t.ebs;
            assert!(
                e.baseline_bandwidth_mbps <= e.maximum_bandwidth_mbps,
                "{}",
                t.name
            );
            assert!(e.baseline_iops <= e.maximum_iops, "{}", t.name);
            assert!(
                e.baseline_throughput_mb_per_s <= e.maximum_throughput_mb_per_s,
                "{}",
                t.name
            );
            assert_eq!(t.burstable, family == "t3", "{}", t.name);
            assert_eq!(
                t.gpus.is_some(),
                family.starts_with('p') || family.starts_with('g'),
                "{}",
                t.name
            );
            assert_eq!(t.bare_metal(), size == "metal", "{}", t.name);
            assert_eq!(t.architecture, Architecture::X86_64);
            assert!(t.current_generation, "{}", t.name);
        }
        for family in ['m', 't', 'c', 'r', 'x', 'i', 'd', 'h', 'p', 'g'] {
            assert!(
                catalog().iter().any(|t| t.name.starts_with(family)),
                "no {family} type"
            );
        }
    }

    #[test]
    fn lookup_by_name() {
        let m5 = get("m5.large");
        assert_eq!((m5.vcpus, m5.memory_mib), (2, 8192));
        assert_eq!(m5.network_performance, "Up to 10 Gigabit");
        assert_eq!(m5.instance_store, None);
        assert_eq!(m5.hypervisor, Some(Hypervisor::Nitro));
        assert_eq!(m5.ebs, ebs_burst(650, 4750, 81.25, 593.75, 3600, 18750));
        assert_eq!(get("t3.nano").memory_mib, 512);
        assert!(get("t3.nano").burstable);
        assert_eq!(get("i3.large").memory_mib, 15616);
        assert_eq!(get("x1e.32xlarge").memory_mib, 3904 * 1024);
        assert_eq!(get("m6i.metal").hypervisor, None);
        assert!(lookup("m5.huge").is_none());
        assert!(lookup("M5.LARGE").is_none(), "names are case-sensitive");
    }

    #[test]
    fn instance_store_of_m5d_large_and_i3_large() {
        let store = get("m5d.large").instance_store;
        assert_eq!(
            store,
            Some(InstanceStore {
                count: 1,
                size_gb: 75,
                disk: DiskType::Ssd,
                nvme: true
            })
        );
        assert_eq!(store.map(|s| s.total_size_gb()), Some(75));

        let i3 = get("i3.large");
        assert_eq!(
            i3.instance_store,
            Some(InstanceStore {
                count: 1,
                size_gb: 475,
                disk: DiskType::Ssd,
                nvme: true
            })
        );
        assert_eq!(i3.hypervisor, Some(Hypervisor::Xen));
        assert_eq!(i3.ebs_nvme_support(), "unsupported");

        let d2 = get("d2.xlarge").instance_store;
        assert_eq!(
            d2.map(|s| (s.total_size_gb(), s.disk, s.nvme_support())),
            Some((6144, DiskType::Hdd, "unsupported"))
        );
        let m5d = get("m5d.24xlarge").instance_store;
        assert_eq!(
            m5d.map(|s| (s.count, s.size_gb, s.total_size_gb())),
            Some((4, 900, 3600))
        );
    }

    #[test]
    fn ebs_limits_are_the_maximum_iops_and_bytes_per_second() {
        assert_eq!(get("m5.large").ebs_limits(), (18750, 593_750_000));
        assert_eq!(get("i3.large").ebs_limits(), (3000, 53_125_000));
        assert_eq!(get("t3.nano").ebs_limits(), (11800, 260_620_000));
        assert_eq!(get("m6i.32xlarge").ebs_limits(), (160_000, 5_000_000_000));
    }

    #[test]
    fn gpus_of_p_and_g_types() {
        let p3 = get("p3.16xlarge").gpus;
        assert_eq!(
            p3,
            Some(Gpus {
                name: "V100",
                manufacturer: "NVIDIA",
                count: 8,
                memory_mib: 16384
            })
        );
        assert_eq!(
            get("p4d.24xlarge")
                .gpus
                .map(|g| (g.name, g.count, g.memory_mib)),
            Some(("A100", 8, 40960))
        );
        assert_eq!(
            get("g5.48xlarge").gpus.map(|g| (g.name, g.count)),
            Some(("A10G", 8))
        );
        assert_eq!(get("g4dn.12xlarge").gpus.map(|g| g.count), Some(4));
    }

    #[test]
    fn describe_everything_in_one_reply() {
        let (types, next) = match describe(&[], &[], None, None) {
            Ok(reply) => reply,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(types.len(), catalog().len());
        assert_eq!(next, None);
    }

    #[test]
    fn describe_by_name_in_catalog_order() {
        let names = [
            "i3.large".to_owned(),
            "m5d.large".to_owned(),
            "m5d.large".to_owned(),
        ];
        let (types, next) = match describe(&names, &[], None, None) {
            Ok(reply) => reply,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(names_of(&types), ["m5d.large", "i3.large"]);
        assert_eq!(next, None);

        let err = describe(
            &["m5.large".into(), "m5.huge".into(), "z9.nano".into()],
            &[],
            None,
            None,
        );
        assert_eq!(
            err.as_ref().map_err(ToString::to_string).err().as_deref(),
            Some("The following supplied instance types do not exist: [m5.huge, z9.nano]")
        );
        assert_eq!(code(err), "InvalidInstanceType");
    }

    #[test]
    fn instance_type_filter_takes_wildcards() {
        assert_eq!(all(&[filter("instance-type", &["m5d.*"])]).len(), 9);
        let gen3 = all(&[filter("instance-type", &["?3.*"])]);
        assert_eq!(gen3.len(), 7 + 7 + 4 + 3, "t3, i3, d3, p3: {gen3:?}");
        assert!(gen3.iter().all(|n| n.len() > 3 && &n[1..3] == "3."));
        assert_eq!(all(&[filter("instance-type", &["*.metal"])]).len(), 14);
        assert_eq!(
            all(&[filter("instance-type", &["m5.large", "c5.large", "nope"])]),
            ["m5.large", "c5.large"]
        );
        assert!(all(&[filter("instance-type", &["m5"])]).is_empty());
    }

    #[test]
    fn attribute_filters() {
        assert_eq!(all(&[filter("current-generation", &["true"])]).len(), 155);
        assert!(all(&[filter("current-generation", &["false"])]).is_empty());
        let two = all(&[filter("vcpu-info.default-vcpus", &["2"])]);
        assert!(
            two.contains(&"t3.nano") && two.contains(&"i3en.large"),
            "{two:?}"
        );
        assert!(two.iter().all(|n| get(n).vcpus == 2));
        assert_eq!(
            all(&[
                filter("memory-info.size-in-mib", &["8192"]),
                filter("instance-type", &["m*"])
            ]),
            ["m5.large", "m5d.large", "m6i.large"]
        );
        let stored = all(&[filter("instance-storage-supported", &["true"])]);
        assert!(stored.iter().all(|n| get(n).instance_store.is_some()));
        assert_eq!(
            stored.len() + all(&[filter("instance-storage-supported", &["false"])]).len(),
            155
        );
        assert_eq!(
            all(&[filter(
                "instance-storage-info.total-size-in-gb",
                &["75", "475"]
            )]),
            ["m5d.large", "r5d.large", "i3.large"]
        );
        let iops = all(&[filter(
            "ebs-info.ebs-optimized-info.maximum-iops",
            &["18750"],
        )]);
        assert_eq!(iops.len(), 4 * 4, "{iops:?}");
        assert_eq!(
            all(&[filter("burstable-performance-supported", &["true"])]).len(),
            7
        );
        assert_eq!(
            all(&[filter("processor-info.supported-architecture", &["x86_64"])]).len(),
            155
        );
        assert!(all(&[filter("processor-info.supported-architecture", &["arm64"])]).is_empty());
    }

    #[test]
    fn bad_filters_are_invalid_parameter_values() {
        let unknown = describe(&[], &[filter("vcpus", &["2"])], None, None);
        assert_eq!(
            unknown
                .as_ref()
                .map_err(ToString::to_string)
                .err()
                .as_deref(),
            Some("The filter 'vcpus' is invalid")
        );
        assert_eq!(code(unknown), "InvalidParameterValue");
        assert_eq!(
            code(describe(&[], &[filter("instance-type", &[])], None, None)),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn pages_follow_one_another() {
        let mut token: Option<String> = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (page, next) = match describe(&[], &[], Some(7), token.as_deref()) {
                Ok(reply) => reply,
                Err(e) => panic!("{e}"),
            };
            assert!(page.len() <= 7);
            pages += 1;
            if let (Some(last), Some(next)) = (page.last(), next.as_ref()) {
                assert_eq!(decode_token(next).as_deref(), Some(last.name));
            }
            seen.extend(names_of(&page));
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 155_usize.div_ceil(7));
        assert_eq!(seen, names_of(&catalog().iter().collect::<Vec<_>>()));

        // Filters page too; the last page has no token.
        let t3 = [filter("instance-type", &["t3.*"])];
        let (first, next) = match describe(&[], &t3, Some(5), None) {
            Ok(reply) => reply,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            names_of(&first),
            ["t3.nano", "t3.micro", "t3.small", "t3.medium", "t3.large"]
        );
        assert_eq!(next.as_deref(), Some("74332e6c61726765"), "hex of t3.large");
        let (rest, next) = match describe(&[], &t3, Some(5), Some("74332e6c61726765")) {
            Ok(reply) => reply,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(names_of(&rest), ["t3.xlarge", "t3.2xlarge"]);
        assert_eq!(next, None);
        // A page that ends exactly with the last match has no token either.
        let (exact, next) = match describe(
            &[],
            &[filter("instance-type", &["t3.*", "h1.*"])],
            Some(11),
            None,
        ) {
            Ok(reply) => reply,
            Err(e) => panic!("{e}"),
        };
        assert_eq!((exact.len(), next), (11, None));
    }

    #[test]
    fn paging_parameters_are_checked() {
        for bad in [0, 4, 101, -1] {
            assert_eq!(
                code(describe(&[], &[], Some(bad), None)),
                "InvalidParameterValue",
                "{bad}"
            );
        }
        for good in [5, 100] {
            assert!(describe(&[], &[], Some(good), None).is_ok(), "{good}");
        }
        let both = describe(&["m5.large".into()], &[], Some(5), None);
        assert_eq!(code(both), "InvalidParameterCombination");
        for token in ["zz", "abc", "6d352e68756765", "ff"] {
            assert_eq!(
                code(describe(&[], &[], Some(5), Some(token))),
                "InvalidPaginationToken",
                "{token}"
            );
        }
        // An empty token is no token.
        assert!(
            matches!(describe(&[], &[], Some(5), Some("")), Ok((page, Some(_))) if page.len() == 5)
        );
    }

    #[test]
    fn wildcards() {
        for (pattern, text, want) in [
            ("*", "", true),
            ("*", "m5.large", true),
            ("m5.*", "m5.large", true),
            ("m5.*", "m5d.large", false),
            ("m5*.large", "m5d.large", true),
            ("?5.large", "m5.large", true),
            ("?5.large", "m55.large", false),
            ("*large", "m5.2xlarge", true),
            ("*a*e", "m5.large", true),
            ("*xlarge*", "m5.large", false),
            ("m5.large", "m5.large", true),
            ("m5.larg", "m5.large", false),
            ("\\*", "*", true),
            ("\\*", "m", false),
            ("a\\?", "a?", true),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(
                wildcard_match(pattern, text),
                want,
                "{pattern:?} on {text:?}"
            );
        }
    }

    #[test]
    fn protobuf_info_of_m5d_large() {
        let info = pb::InstanceTypeInfo::from(get("m5d.large"));
        assert_eq!(info.instance_type, "m5d.large");
        assert!(info.current_generation);
        assert_eq!((info.default_vcpus, info.memory_size_in_mib), (2, 8192));
        assert!(info.instance_storage_supported);
        assert_eq!(
            info.instance_storage_info,
            Some(pb::InstanceStorageInfo {
                total_size_in_gb: 75,
                disks: vec![pb::DiskInfo {
                    size_in_gb: 75,
                    count: 1,
                    r#type: "ssd".into()
                }],
                nvme_support: "required".into(),
            })
        );
        assert_eq!(
            info.ebs_info,
            Some(pb::EbsInfo {
                ebs_optimized_support: "default".into(),
                ebs_optimized_info: Some(pb::EbsOptimizedInfo {
                    baseline_bandwidth_in_mbps: 650,
                    baseline_throughput_in_mb_ps: 81.25,
                    baseline_iops: 3600,
                    maximum_bandwidth_in_mbps: 4750,
                    maximum_throughput_in_mb_ps: 593.75,
                    maximum_iops: 18750,
                }),
                nvme_support: "required".into(),
            })
        );
        assert_eq!(info.supported_architectures, ["x86_64"]);
        assert!(info.gpus.is_empty());
        assert_eq!(info.network_performance, "Up to 10 Gigabit");
        assert!(!info.burstable_performance_supported);
        assert_eq!(info.hypervisor, "nitro");
    }

    #[test]
    fn protobuf_info_of_gpu_xen_and_metal_types() {
        let p3 = pb::InstanceTypeInfo::from(get("p3.2xlarge"));
        assert_eq!(
            p3.gpus,
            [pb::GpuDeviceInfo {
                name: "V100".into(),
                manufacturer: "NVIDIA".into(),
                count: 1,
                memory_size_in_mib: 16384
            }]
        );
        assert_eq!(p3.hypervisor, "xen");
        assert!(p3.instance_storage_info.is_none());
        assert_eq!(
            p3.ebs_info.map(|e| e.nvme_support).as_deref(),
            Some("unsupported")
        );

        let metal = pb::InstanceTypeInfo::from(get("m5.metal"));
        assert_eq!(metal.hypervisor, "");
        assert_eq!(
            metal.ebs_info.map(|e| e.nvme_support).as_deref(),
            Some("required")
        );
        assert!(pb::InstanceTypeInfo::from(get("t3.micro")).burstable_performance_supported);
    }

    #[test]
    fn describe_request_on_protobuf_messages() {
        let request = pb::DescribeInstanceTypesRequest {
            instance_types: vec![],
            filters: vec![pb::Filter {
                name: "instance-type".into(),
                values: vec!["g5.*".into()],
            }],
            max_results: Some(5),
            next_token: None,
        };
        let reply = match describe_request(&request) {
            Ok(reply) => reply,
            Err(e) => panic!("{e}"),
        };
        let names: Vec<&str> = reply
            .instance_types
            .iter()
            .map(|t| t.instance_type.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "g5.xlarge",
                "g5.2xlarge",
                "g5.4xlarge",
                "g5.8xlarge",
                "g5.12xlarge"
            ]
        );
        assert_eq!(
            reply
                .next_token
                .as_deref()
                .and_then(decode_token)
                .as_deref(),
            Some("g5.12xlarge")
        );

        let unknown = pb::DescribeInstanceTypesRequest {
            instance_types: vec!["m5.huge".into()],
            ..request
        };
        assert_eq!(
            code(describe_request(&unknown)),
            "InvalidParameterCombination"
        );
    }
}
