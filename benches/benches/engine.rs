//! Engine submit and complete: one 4 KiB `Volume::read` / `Volume::write` (buffered, no FUA) on
//! a temp-file volume, awaited on a tokio current-thread runtime, as an NBD session does.
//!
//! * `io_uring/…`, `sync/…`: every request goes through the engine (`InlinePolicy::NONE`): the
//!   submission, the hop to the engine thread, the syscall and the completion back to the task.
//! * `inline/…`: the default policy, as the daemon runs: page-cache hits and small writes are done
//!   on the calling thread and never reach the engine. The reference point for the hop's cost.
//!
//! The working set (16 MiB) is written once before measuring, so reads hit the page cache and the
//! numbers are the software path rather than the disk. The volume lives under Cargo's
//! `CARGO_TARGET_TMPDIR`, on the same file system as the build.

use std::path::Path;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use storage_engine::{Engine, EngineKind, InlinePolicy, Volume};
use tokio::runtime::Runtime;

const IO: u64 = 4096;
const VOLUME_SIZE: u64 = 64 << 20;
const WORKING_SET: u64 = 16 << 20;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Creates and opens a volume at `path`, with its working set written.
fn open_volume(rt: &Runtime, path: &Path, engine: Engine, inline: InlinePolicy) -> Volume {
    Volume::create(path, VOLUME_SIZE).expect("create volume");
    let vol = Volume::open_with(path, engine, inline).expect("open volume");
    let chunk = Bytes::from(benches::random_bytes(1 << 20, 3));
    rt.block_on(async {
        for off in (0..WORKING_SET).step_by(chunk.len()) {
            vol.write(off, chunk.clone(), false).await.expect("prefill");
        }
    });
    vol
}

fn engine(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::Builder::new()
        .prefix("engine-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let payload = Bytes::from(benches::random_bytes(IO as usize, 4));
    let mut rng = benches::Rng::new(5);
    let offsets: Vec<u64> = (0..4096)
        .map(|_| rng.below(WORKING_SET / IO) * IO)
        .collect();

    let setups = [
        ("io_uring", EngineKind::IoUring, 1, InlinePolicy::NONE),
        ("sync", EngineKind::Sync, 4, InlinePolicy::NONE),
        ("inline", EngineKind::IoUring, 1, InlinePolicy::DEFAULT),
    ];
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(IO));
    for (name, kind, threads, inline) in setups {
        // Same thread counts as the daemon: `--io-threads 1`, and the sync fallback's 4.
        let engine = match Engine::start(kind, threads) {
            Ok(e) => e,
            Err(err) => {
                eprintln!("engine/{name}: skipped, {kind} engine unavailable: {err}");
                continue;
            }
        };
        let vol = open_volume(&rt, &dir.path().join(format!("{name}.img")), engine, inline);
        let vol = &vol;

        let mut i = 0usize;
        g.bench_function(BenchmarkId::new(name, "read_4k"), |b| {
            b.to_async(&rt).iter(|| {
                let off = offsets[i];
                i = (i + 1) % offsets.len();
                async move { vol.read(off, IO).await.expect("read") }
            })
        });

        let mut i = 0usize;
        g.bench_function(BenchmarkId::new(name, "write_4k"), |b| {
            b.to_async(&rt).iter(|| {
                let off = offsets[i];
                i = (i + 1) % offsets.len();
                let data = payload.clone();
                async move { vol.write(off, data, false).await.expect("write") }
            })
        });

        rt.block_on(vol.close()).expect("close volume");
    }
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
