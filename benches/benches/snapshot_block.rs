//! Block hashing and compression: what snapshot create, copy and restore do to every 512 KiB
//! block (`snapshot::block`), on three kinds of content:
//! * `random`: incompressible, stored raw after zstd fails to shrink it;
//! * `text`: words and numbers with line breaks, compressible as logs and source are;
//! * `zeros`: never stored (snapshot create skips it after `is_zero`), measured for scale.
//!
//! `is_zero` returns at the first non-zero word, so on `random` and `text` it measures only the
//! call (its bytes-per-second figure is meaningless there); `zeros` is its full scan.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use snapshot::block::{self, BlockKey};

fn snapshot_block(c: &mut Criterion) {
    let len = block::BLOCK_SIZE as usize;
    let inputs = [
        ("random", benches::random_bytes(len, 1)),
        ("text", benches::text_like_bytes(len, 2)),
        ("zeros", vec![0u8; len]),
    ];
    let mut g = c.benchmark_group("snapshot_block");
    g.throughput(Throughput::Bytes(len as u64));
    for (name, data) in &inputs {
        let key = BlockKey::of(data);
        let stored = block::encode(data);
        eprintln!(
            "snapshot_block/{name}: 512 KiB stores as {} bytes ({:.1} %)",
            stored.len(),
            100.0 * stored.len() as f64 / len as f64
        );
        assert_eq!(block::decode(&key, &stored).expect("round trip"), *data);

        g.bench_with_input(BenchmarkId::new("key_sha256", name), data, |b, d| {
            b.iter(|| BlockKey::of(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("encode", name), data, |b, d| {
            b.iter(|| block::encode(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("decode", name), &stored, |b, s| {
            b.iter(|| block::decode(&key, black_box(s)).expect("valid block"))
        });
        g.bench_with_input(BenchmarkId::new("is_zero", name), data, |b, d| {
            b.iter(|| block::is_zero(black_box(d)))
        });
    }
    g.finish();
}

criterion_group!(benches, snapshot_block);
criterion_main!(benches);
