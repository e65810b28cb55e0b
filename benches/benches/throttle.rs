//! The throttle decision: the cost of one `Throttle::reserve(offset, len)` (EBS operation
//! counting, bucket refill and take, the per-second window), which every NBD and gRPC request
//! pays before it reaches the engine.
//!
//! The limits are the daemon's own (`volume_server::control::perf::limits`) for an io2 volume
//! (1,000 GiB, 64,000 IOPS: 4,000 MiB/s) and a gp3 volume (100 GiB, the 3,000 IOPS / 125 MiB/s
//! baseline). Only the decision is measured: the benchmark never sleeps, so the buckets run into
//! debt, which costs the same arithmetic as a bucket with tokens left.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use storage_engine::{Limits, Throttle};
use volume_server::catalog::VolumeRecord;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The limits the daemon gives a volume of this type, size and provisioning.
fn limits_of(volume_type: &str, size_gib: u64, iops: u32, throughput: Option<u32>) -> Limits {
    // Built the way the catalog stores it, so fields added later with defaults need no change
    // here.
    let record: VolumeRecord = serde_json::from_value(serde_json::json!({
        "volume_id": "vol-0123456789abcdef0",
        "size_gib": size_gib,
        "availability_zone": "us-east-1a",
        "state": "available",
        "volume_type": volume_type,
        "iops": iops,
        "throughput": throughput,
        "create_time_ms": 0,
    }))
    .expect("a valid volume record");
    volume_server::control::perf::limits(&record)
}

fn throttle(c: &mut Criterion) {
    let volumes = [
        ("io2", 1000, limits_of("io2", 1000, 64_000, None)),
        ("gp3", 100, limits_of("gp3", 100, 3_000, Some(125))),
    ];
    let mut g = c.benchmark_group("throttle");
    g.throughput(Throughput::Elements(1));
    for (name, size_gib, limits) in volumes {
        let size = size_gib * GIB;
        for (size_name, len) in [("4k", 4 * KIB), ("1m", MIB)] {
            let slots = size / len;
            let id = |pattern: &str| BenchmarkId::new(format!("{name}_{pattern}"), size_name);

            // Sequential: each I/O starts where the previous ended (4 KiB ones merge into
            // 256 KiB operations).
            let t = Throttle::new(limits);
            let mut next = 0u64;
            g.bench_function(id("seq"), |b| {
                b.iter(|| {
                    let a = t.reserve(black_box(next), black_box(len));
                    next = (next + len) % size;
                    a
                })
            });

            // Random: aligned offsets from a precomputed table, so no two neighbours merge.
            let mut rng = benches::Rng::new(42);
            let offsets: Vec<u64> = (0..4096).map(|_| rng.below(slots) * len).collect();
            let t = Throttle::new(limits);
            let mut i = 0usize;
            g.bench_function(id("rand"), |b| {
                b.iter(|| {
                    let a = t.reserve(black_box(offsets[i]), black_box(len));
                    i = (i + 1) % offsets.len();
                    a
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, throttle);
criterion_main!(benches);
