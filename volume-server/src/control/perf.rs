//! The EBS performance model: the throttle limits of each volume type (`EBS-REFERENCE.md` §1.1,
//! §1.2), turned into [`storage_engine::Limits`].

use std::time::Duration;

use storage_engine::{BucketConfig, Limits};

use crate::catalog::{VolumeRecord, VolumeType};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// SSD types count one operation per 256 KiB; HDD types per 1 MiB.
const SSD_UNIT: u64 = 256 * KIB;
const HDD_UNIT: u64 = MIB;
/// Tokens a provisioned bucket holds: enough to absorb timer granularity (1 ms) and scheduling
/// jitter at QD1, small enough that a 10 s window sees the provisioned rate within 0.1 %.
const SMOOTHING: Duration = Duration::from_millis(10);
/// gp2 I/O credit balance: initial and maximum.
pub const GP2_CREDITS: u64 = 5_400_000;
/// gp2 burst IOPS (volumes under 1 TiB).
pub const GP2_BURST_IOPS: u64 = 3_000;

fn smooth(rate: u64) -> Option<BucketConfig> {
    Some(BucketConfig::smooth(rate, SMOOTHING))
}

/// gp2's throughput cap by size.
fn gp2_throughput_mib(size_gib: u64) -> u64 {
    if size_gib <= 170 { 128 } else { 250 }
}

/// The EBS cap an instance type puts on all its volumes together: its maximum IOPS and
/// throughput (the burst ceiling of the "up to" types; their 30-minute daily burst budget is not
/// modelled).
pub fn instance_limits(ty: &instance_manager::InstanceType) -> Limits {
    let (iops, bytes_per_s) = ty.ebs_limits();
    Limits {
        ops: smooth(iops),
        bytes: smooth(bytes_per_s),
        ..Limits::UNLIMITED
    }
}

/// `limits` with every bucket's rate, capacity and starting level multiplied by `factor`
/// (`--throttle-scale`): the same shape (burst lengths, credit lifetimes, the EBS I/O
/// accounting), faster. Rates stay at least 1 per second.
pub fn scaled(limits: Limits, factor: f64) -> Limits {
    if factor == 1.0 {
        return limits;
    }
    let mul = |n: u64| ((n as f64 * factor).round() as u64).max(1);
    let bucket = |b: Option<BucketConfig>| {
        b.map(|b| BucketConfig {
            rate: mul(b.rate),
            capacity: mul(b.capacity),
            initial: mul(b.initial),
        })
    };
    Limits {
        ops: bucket(limits.ops),
        bytes: bucket(limits.bytes),
        op_credits: bucket(limits.op_credits),
        byte_credits: bucket(limits.byte_credits),
        io_unit: limits.io_unit,
        hdd_tokens: limits.hdd_tokens,
    }
}

/// The throttle limits of a volume.
pub fn limits(v: &VolumeRecord) -> Limits {
    let size_gib = u64::from(v.size_gib);
    let iops = u64::from(v.iops.unwrap_or(0));
    match v.volume_type {
        VolumeType::Gp3 => Limits {
            ops: smooth(iops),
            bytes: smooth(u64::from(v.throughput.unwrap_or(125)) * MIB),
            io_unit: SSD_UNIT,
            ..Limits::UNLIMITED
        },
        VolumeType::Io1 => {
            // Up to 32,000 IOPS: 256 KiB per IOPS, at most 500 MiB/s; above: 16 KiB per IOPS,
            // at most 1,000 MiB/s.
            let bytes = if iops <= 32_000 {
                (iops * 256 * KIB).min(500 * MIB)
            } else {
                (iops * 16 * KIB).min(1_000 * MIB)
            };
            Limits {
                ops: smooth(iops),
                bytes: smooth(bytes),
                io_unit: SSD_UNIT,
                ..Limits::UNLIMITED
            }
        }
        VolumeType::Io2 => {
            // 0.256 MiB/s per IOPS, at most 4,000 MiB/s.
            let bytes = (iops * 256 * MIB / 1000).min(4_000 * MIB);
            Limits {
                ops: smooth(iops),
                bytes: smooth(bytes),
                io_unit: SSD_UNIT,
                ..Limits::UNLIMITED
            }
        }
        VolumeType::Gp2 => {
            let baseline = (3 * size_gib).clamp(100, 16_000);
            let bytes = smooth(gp2_throughput_mib(size_gib) * MIB);
            if baseline >= GP2_BURST_IOPS {
                // At 1 TiB and above the baseline is the burst: credits are never spent.
                Limits {
                    ops: smooth(baseline),
                    bytes,
                    io_unit: SSD_UNIT,
                    ..Limits::UNLIMITED
                }
            } else {
                Limits {
                    ops: smooth(GP2_BURST_IOPS),
                    op_credits: Some(BucketConfig {
                        rate: baseline,
                        capacity: GP2_CREDITS,
                        initial: GP2_CREDITS,
                    }),
                    bytes,
                    io_unit: SSD_UNIT,
                    ..Limits::UNLIMITED
                }
            }
        }
        VolumeType::St1 | VolumeType::Sc1 => {
            // Per TiB of size: st1 baseline 40, burst 250 MiB/s (max 500 / 500), 500 IOPS;
            // sc1 baseline 12, burst 80 MiB/s (max 192 / 250), 250 IOPS. The credit bucket
            // holds one full-volume scan (1 TiB per TiB).
            let (base_per_tib, burst_per_tib, base_max, burst_max, max_iops) = match v.volume_type {
                VolumeType::St1 => (40, 250, 500, 500, 500),
                _ => (12, 80, 192, 250, 250),
            };
            let per_tib = |mib: u64, max: u64| (mib * MIB * size_gib / 1024).min(max * MIB).max(1);
            let capacity = size_gib * GIB;
            Limits {
                ops: smooth(max_iops),
                bytes: smooth(per_tib(burst_per_tib, burst_max)),
                byte_credits: Some(BucketConfig {
                    rate: per_tib(base_per_tib, base_max),
                    capacity,
                    initial: capacity,
                }),
                io_unit: HDD_UNIT,
                hdd_tokens: true,
                ..Limits::UNLIMITED
            }
        }
        VolumeType::Standard => Limits {
            // Magnetic: about 100 IOPS on average with bursts to a few hundred; 40-90 MiB/s.
            ops: smooth(300),
            op_credits: Some(BucketConfig {
                rate: 100,
                capacity: 360_000,
                initial: 360_000,
            }),
            bytes: smooth(90 * MIB),
            io_unit: HDD_UNIT,
            ..Limits::UNLIMITED
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(t: VolumeType, size: u32, iops: Option<u32>, tp: Option<u32>) -> VolumeRecord {
        VolumeRecord::for_test("vol-1", t, size, iops, tp)
    }

    #[test]
    fn limits_per_type() {
        let gp3 = limits(&vol(VolumeType::Gp3, 100, Some(3000), Some(125)));
        assert_eq!(gp3.ops.unwrap().rate, 3000);
        assert_eq!(gp3.bytes.unwrap().rate, 125 * MIB);
        assert_eq!(gp3.io_unit, SSD_UNIT);

        let gp2 = limits(&vol(VolumeType::Gp2, 100, Some(300), None));
        assert_eq!(gp2.ops.unwrap().rate, 3000);
        assert_eq!(
            gp2.op_credits.unwrap(),
            BucketConfig {
                rate: 300,
                capacity: 5_400_000,
                initial: 5_400_000
            }
        );
        assert_eq!(gp2.bytes.unwrap().rate, 128 * MIB);
        let big_gp2 = limits(&vol(VolumeType::Gp2, 2000, Some(6000), None));
        assert_eq!(
            (big_gp2.ops.unwrap().rate, big_gp2.op_credits),
            (6000, None)
        );

        let io1 = limits(&vol(VolumeType::Io1, 1000, Some(50_000), None));
        assert_eq!(io1.bytes.unwrap().rate, 50_000 * 16 * KIB);
        let io2 = limits(&vol(VolumeType::Io2, 1000, Some(256_000), None));
        assert_eq!(io2.bytes.unwrap().rate, 4_000 * MIB);

        let st1 = limits(&vol(VolumeType::St1, 2048, None, None));
        assert_eq!(st1.io_unit, HDD_UNIT);
        assert!(st1.hdd_tokens);
        assert_eq!(st1.ops.unwrap().rate, 500);
        assert_eq!(st1.bytes.unwrap().rate, 500 * MIB, "burst 250/TiB, max 500");
        assert_eq!(st1.byte_credits.unwrap().rate, 80 * MIB, "baseline 40/TiB");
        let sc1 = limits(&vol(VolumeType::Sc1, 1024, None, None));
        assert_eq!(
            (sc1.ops.unwrap().rate, sc1.bytes.unwrap().rate),
            (250, 80 * MIB)
        );
        assert_eq!(sc1.byte_credits.unwrap().rate, 12 * MIB);
    }

    #[test]
    fn scaling_keeps_the_shape() {
        let gp2 = limits(&vol(VolumeType::Gp2, 100, Some(300), None));
        assert_eq!(scaled(gp2, 1.0), gp2);
        let fast = scaled(gp2, 100.0);
        assert_eq!(fast.ops.unwrap().rate, 300_000);
        let credits = fast.op_credits.unwrap();
        assert_eq!(
            (credits.rate, credits.capacity, credits.initial),
            (30_000, 540_000_000, 540_000_000)
        );
        // A full burst lasts as long as unscaled: credits / (burst - baseline).
        let burst_s = |l: Limits| {
            let c = l.op_credits.unwrap();
            c.capacity as f64 / (l.ops.unwrap().rate - c.rate) as f64
        };
        assert_eq!(burst_s(fast), burst_s(gp2));
        assert_eq!(fast.io_unit, SSD_UNIT);
        let io2 = scaled(
            limits(&vol(VolumeType::Io2, 1000, Some(256_000), None)),
            100.0,
        );
        assert_eq!(io2.bytes.unwrap().rate, 400_000 * MIB);
        // Slower, never to a standstill.
        let slow = scaled(
            limits(&vol(VolumeType::Gp3, 1, Some(3000), Some(125))),
            1e-6,
        );
        assert_eq!(slow.ops.unwrap().rate, 1);
    }
}
