//! The crash harness: the server is killed with SIGKILL, again and again, while fio writes with
//! verification headers, a gRPC writer stamps, trims and zeroes blocks and flushes, and
//! control-plane calls (create, attach, modify, snapshot, detach, delete) run. After every
//! restart, every write, trim and zeroing flushed before the kill reads back, the catalog holds
//! no half-made state, and every snapshot taken so far (one per trial, before the writers start,
//! so of a known volume) that completed is restored and compared with what the volume held.
//!
//! `EBS_CRASH_TRIALS` sets the number of kills (default 4); `scripts/crash_trials.sh` runs a
//! long series against a release build and prints the totals.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use proto::ebs::v1 as pb;

const MIB: u64 = 1 << 20;
/// fio regions: each trial rewrites one of them completely and flushes.
const REGIONS: u64 = 4;
const REGION_LEN: u64 = 32 * MIB;
/// The area the in-flight fio job writes while the server is killed.
const INFLIGHT_AT: u64 = REGIONS * REGION_LEN;
/// The gRPC stamper's blocks.
const STAMP_AT: u64 = 1 << 30;
const STAMP_BLOCKS: u64 = 256;
const BLOCK: usize = 4096;

fn trials() -> usize {
    std::env::var("EBS_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

fn fio_region(uri: &str, region: u64, verify_only: bool) -> Output {
    let mut args = vec![
        "--name=region".to_string(),
        "--ioengine=nbd".into(),
        format!("--uri={uri}"),
        "--rw=randwrite".into(),
        "--bs=4k".into(),
        "--iodepth=16".into(),
        format!("--offset={}", region * REGION_LEN),
        format!("--size={REGION_LEN}"),
        "--verify=crc32c".into(),
        "--verify_fatal=1".into(),
        // fio saves a verify state file into the working directory when a job fails, as it
        // does every time the server is killed under it; nothing here loads one.
        "--verify_state_save=0".into(),
        // The same seed for the write and the verification of a region.
        format!("--randseed={}", 1000 + region),
    ];
    if verify_only {
        args.push("--verify_only".into());
    } else {
        args.extend(["--do_verify=0".into(), "--end_fsync=1".into()]);
    }
    run_tool("fio", &args)
}

/// A stamped block: who wrote it, and a body derived from the stamp.
fn stamp(seq: u64, block: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..16].copy_from_slice(&block.to_le_bytes());
    for (i, x) in b[16..].iter_mut().enumerate() {
        *x = (seq.wrapping_mul(31).wrapping_add(i as u64)) as u8;
    }
    b
}

/// `(seq, block)` of a stamped block, `None` if never written; panics on a torn block.
fn read_stamp(b: &[u8], at: u64) -> Option<u64> {
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    let seq = u64::from_le_bytes(b[..8].try_into().unwrap());
    let block = u64::from_le_bytes(b[8..16].try_into().unwrap());
    assert_eq!(block, at, "stamp of block {block} found at block {at}");
    assert!(
        b == stamp(seq, block).as_slice(),
        "block {at} is torn (seq {seq})"
    );
    Some(seq)
}

/// What the stamper does to a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Trim,
    Zero,
}

/// The stamper's op of sequence number `seq`: mostly stamps, some trims and zeroings.
fn op_of(seq: u64) -> Op {
    match seq % 7 {
        3 => Op::Trim,
        5 => Op::Zero,
        _ => Op::Write,
    }
}

/// What the stamper has done: the highest sequence number issued, for each block the highest
/// sequence number a completed flush covers, and the sequence numbers issued to it.
struct Stamps {
    issued: AtomicU64,
    flushed: Mutex<Vec<u64>>,
    history: Mutex<Vec<Vec<u64>>>,
}

impl Stamps {
    fn new() -> Self {
        Stamps {
            issued: AtomicU64::new(0),
            flushed: Mutex::new(vec![0; STAMP_BLOCKS as usize]),
            history: Mutex::new(vec![vec![]; STAMP_BLOCKS as usize]),
        }
    }

    /// Checks block `b` as read after a crash: it holds the effect of the op its last flush
    /// covered or of a later one issued to it (a stamp with that number; zeros for a trim or a
    /// zeroing), never an older one.
    fn check(&self, b: u64, data: &[u8], trial: usize) {
        let flushed = self.flushed.lock().unwrap()[b as usize];
        let history = self.history.lock().unwrap()[b as usize].clone();
        let since: Vec<u64> = history.into_iter().filter(|s| *s >= flushed).collect();
        match read_stamp(data, b) {
            Some(seq) => {
                assert!(
                    seq >= flushed,
                    "trial {trial}: block {b} holds seq {seq}, older than its flushed seq {flushed}"
                );
                assert!(
                    since.contains(&seq) && op_of(seq) == Op::Write,
                    "trial {trial}: block {b} holds seq {seq}, never written there"
                );
            }
            None => assert!(
                flushed == 0 || since.iter().any(|s| op_of(*s) != Op::Write),
                "trial {trial}: block {b} reads zeros, but its flushed seq {flushed} wrote it and nothing since trimmed it"
            ),
        }
    }
}

/// Writes, trims or zeroes stamp blocks round-robin, flushing every 8 ops, until an error (the
/// server died) or `stop`.
fn stamper(
    endpoint: String,
    token: String,
    stamps: Arc<Stamps>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let Ok(mut c) =
                proto::ebs::v1::volume_service_client::VolumeServiceClient::connect(endpoint).await
            else {
                return 0;
            };
            let mut written = 0;
            let mut pending: Vec<(u64, u64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let seq = stamps.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let block = seq % STAMP_BLOCKS;
                stamps.history.lock().unwrap()[block as usize].push(seq);
                let offset = STAMP_AT + block * BLOCK as u64;
                let done = match op_of(seq) {
                    Op::Write => c
                        .write_blocks(futures::stream::iter(vec![pb::WriteBlocksRequest {
                            attachment_token: token.clone(),
                            offset,
                            data: stamp(seq, block),
                            fua: false,
                        }]))
                        .await
                        .map(drop),
                    Op::Trim => c
                        .trim_blocks(pb::TrimBlocksRequest {
                            attachment_token: token.clone(),
                            offset,
                            length: BLOCK as u64,
                            fua: false,
                        })
                        .await
                        .map(drop),
                    Op::Zero => c
                        .write_zero_blocks(pb::WriteZeroBlocksRequest {
                            attachment_token: token.clone(),
                            offset,
                            length: BLOCK as u64,
                            no_hole: seq.is_multiple_of(2),
                            fua: false,
                        })
                        .await
                        .map(drop),
                };
                if done.is_err() {
                    return written;
                }
                written += 1;
                pending.push((block, seq));
                if pending.len() == 8 {
                    let flushed = c
                        .flush_blocks(pb::FlushBlocksRequest {
                            attachment_token: token.clone(),
                        })
                        .await;
                    if flushed.is_err() {
                        return written;
                    }
                    let mut f = stamps.flushed.lock().unwrap();
                    for (b, s) in pending.drain(..) {
                        f[b as usize] = f[b as usize].max(s);
                    }
                }
            }
            written
        })
    })
}

/// Control-plane churn until the server dies or `stop`: returns the number of calls made.
fn churn(endpoint: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let Ok(mut c) =
                proto::ebs::v1::volume_service_client::VolumeServiceClient::connect(endpoint).await
            else {
                return 0;
            };
            let mut calls = 0;
            let Ok(host) = c
                .register_host(pb::RegisterHostRequest {
                    name: "churn".into(),
                    availability_zone: "us-east-1a".into(),
                    ..Default::default()
                })
                .await
            else {
                return calls;
            };
            let host = host.into_inner().instance_id;
            while !stop.load(Ordering::Relaxed) {
                let Ok(v) = c
                    .create_volume(pb::CreateVolumeRequest {
                        availability_zone: "us-east-1a".into(),
                        size: Some(1),
                        volume_type: Some("gp3".into()),
                        ..Default::default()
                    })
                    .await
                else {
                    return calls;
                };
                let id = v.into_inner().volume_id;
                calls += 1;
                let steps: [Result<(), tonic::Status>; 5] = [
                    c.attach_volume(pb::AttachVolumeRequest {
                        volume_id: id.clone(),
                        instance_id: host.clone(),
                        device: "/dev/sdf".into(),
                    })
                    .await
                    .map(drop),
                    c.modify_volume(pb::ModifyVolumeRequest {
                        volume_id: id.clone(),
                        size: Some(2),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                    c.create_snapshot(pb::CreateSnapshotRequest {
                        volume_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                    c.detach_volume(pb::DetachVolumeRequest {
                        volume_id: id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                    Ok(()),
                ];
                for s in steps {
                    if s.is_err() {
                        return calls;
                    }
                    calls += 1;
                }
                // Deleting waits for the snapshot; leave the volume if it is still pending.
                let _ = c
                    .delete_volume(pb::DeleteVolumeRequest {
                        volume_id: id.clone(),
                    })
                    .await;
                calls += 1;
            }
            calls
        })
    })
}

/// No half-made state: no volume `creating` or `deleting`, a file for every volume and a
/// volume for every file, every attachment `attached` and served, no snapshot `pending`.
fn check_catalog(server: &Server, data_dir: &Path) -> usize {
    let mut c = server.client();
    let volumes = server
        .ok(
            "DescribeVolumes",
            server.block_on(c.describe_volumes(pb::DescribeVolumesRequest::default())),
        )
        .volumes;
    let mut files = BTreeSet::new();
    for zone in ["us-east-1a", "us-east-1b", "us-east-1c"] {
        if let Ok(rd) = std::fs::read_dir(data_dir.join(zone).join("volumes")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(id) = name.strip_suffix(".img") {
                    files.insert(id.to_string());
                }
            }
        }
    }
    let ids: BTreeSet<String> = volumes.iter().map(|v| v.volume_id.clone()).collect();
    assert_eq!(files, ids, "volume files and catalog differ");
    for v in &volumes {
        assert!(
            // `creating` for the transition time after a CreateVolume that completed.
            v.state == "available" || v.state == "in-use" || v.state == "creating",
            "half-made volume: {v:?}"
        );
        assert_eq!(v.state == "in-use", !v.attachments.is_empty(), "{v:?}");
        for a in &v.attachments {
            assert!(
                matches!(a.state.as_str(), "attached" | "attaching"),
                "{v:?}"
            );
            run_tool("nbdinfo", &["--size", a.nbd_uri.as_str()]).assert_success();
        }
    }
    let snaps = server
        .ok(
            "DescribeSnapshots",
            server.block_on(c.describe_snapshots(pb::DescribeSnapshotsRequest::default())),
        )
        .snapshots;
    // A snapshot pending at the kill ends in `error` at start; one begun since may still run.
    for s in &snaps {
        assert!(
            ["completed", "error", "pending"].contains(&s.state.as_str()),
            "{s:?}"
        );
    }
    volumes.len()
}

#[test]
fn kill_9_in_a_loop_loses_no_flushed_write_and_leaves_no_half_made_state() {
    if !require_tools(&["fio", "nbdinfo"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let mut server = Server::start_with_args(&data_dir, SERVER_ARGS);
    let mut c = server.client();
    let volume = server
        .ok(
            "CreateVolume",
            server.block_on(c.create_volume(pb::CreateVolumeRequest {
                availability_zone: "us-east-1a".into(),
                size: Some(64),
                volume_type: Some("io2".into()),
                iops: Some(64_000),
                ..Default::default()
            })),
        )
        .volume_id;
    let host = server.register_host("crash-harness");
    let uri = server.attach(&volume, &host.instance_id).nbd_uri;
    let (_, token) = split_nbd_uri(&uri);
    let stamps = Arc::new(Stamps::new());
    let mut snapshots: Vec<Taken> = vec![];
    let (mut restored, mut snapshots_failed) = (0, 0);
    let mut written_regions = BTreeSet::new();
    let (mut stamped, mut control_calls, mut verified) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let n = trials();
    for trial in 0..n {
        let uri = server.nbd_uri_of(&volume);
        // A region written in full and flushed: it must survive every later kill.
        let region = trial as u64 % REGIONS;
        fio_region(&uri, region, false).assert_success();
        written_regions.insert(region);
        // Nothing writes now: a snapshot of a volume whose content is known. Every other one
        // completes (and is restored) before the writers start; the others race the kill.
        snapshots.push(take_snapshot(&server, &volume, &token, &written_regions));
        if trial.is_multiple_of(2) {
            let (r, f) = check_snapshots(&server, &host.instance_id, &mut snapshots, true);
            restored += r;
            snapshots_failed += f;
        }
        // Then, while writes are in flight and control calls run, the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let inflight = std::process::Command::new("fio")
            .args([
                "--name=inflight",
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bs=64k",
                "--iodepth=16",
                &format!("--offset={INFLIGHT_AT}"),
                "--size=256m",
                "--time_based",
                "--runtime=60",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("fio");
        let inflight = KillOnDrop(inflight);
        let writer = stamper(
            server.endpoint(),
            token.clone(),
            stamps.clone(),
            stop.clone(),
        );
        let control = churn(server.endpoint(), stop.clone());
        let pause = 300 + (trial as u64 * 397) % 900;
        std::thread::sleep(Duration::from_millis(pause));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        stamped += writer.join().unwrap();
        control_calls += control.join().unwrap();
        drop(inflight);

        server = Server::start_with_args(&data_dir, SERVER_ARGS);
        let uri = server.nbd_uri_of(&volume);
        for r in &written_regions {
            fio_region(&uri, *r, true).assert_success();
            verified += REGION_LEN;
        }
        let mut c = server.client();
        let data = server
            .ok(
                "ReadBlocks",
                server.block_on(c.read_blocks(pb::ReadBlocksRequest {
                    attachment_token: token.clone(),
                    offset: STAMP_AT,
                    length: (STAMP_BLOCKS as usize * BLOCK) as u32,
                })),
            )
            .data;
        for b in 0..STAMP_BLOCKS {
            let at = b as usize * BLOCK;
            stamps.check(b, &data[at..at + BLOCK], trial);
        }
        verified += STAMP_BLOCKS * BLOCK as u64;
        let volumes = check_catalog(&server, &data_dir);
        let (r, f) = check_snapshots(&server, &host.instance_id, &mut snapshots, false);
        restored += r;
        snapshots_failed += f;
        eprintln!(
            "trial {}/{n}: killed after {pause} ms; {} regions verified, {stamped} stamped ops, {control_calls} control calls, {volumes} volumes, {restored} snapshots restored and compared",
            trial + 1,
            written_regions.len()
        );
    }
    let (r, f) = check_snapshots(&server, &host.instance_id, &mut snapshots, true);
    restored += r;
    snapshots_failed += f;
    assert!(restored > 0, "no snapshot completed to be restored");
    eprintln!(
        "crash harness: {n} kills in {:.1} s; {} MiB verified; {stamped} stamped writes, trims and zeroings; {control_calls} control calls; {restored} snapshots restored and compared ({snapshots_failed} ended in error by a kill); nothing lost",
        started.elapsed().as_secs_f64(),
        verified / MIB
    );
    server.stop();
}

/// Snapshots may be taken back to back (one per trial).
const SERVER_ARGS: &[&str] = &["--snapshot-min-interval", "0s"];

/// A snapshot taken while nothing wrote, and what the volume held then.
struct Taken {
    snapshot_id: String,
    /// The stamp area.
    stamps: Vec<u8>,
    /// fio regions complete (and so verifiable) at the time.
    regions: BTreeSet<u64>,
}

fn read_stamps(server: &Server, token: &str) -> Vec<u8> {
    let mut c = server.client();
    server
        .ok(
            "ReadBlocks",
            server.block_on(c.read_blocks(pb::ReadBlocksRequest {
                attachment_token: token.to_string(),
                offset: STAMP_AT,
                length: (STAMP_BLOCKS as usize * BLOCK) as u32,
            })),
        )
        .data
}

fn take_snapshot(server: &Server, volume: &str, token: &str, regions: &BTreeSet<u64>) -> Taken {
    let stamps = read_stamps(server, token);
    let mut c = server.client();
    let snap = server.ok(
        "CreateSnapshot",
        server.block_on(c.create_snapshot(pb::CreateSnapshotRequest {
            volume_id: volume.into(),
            ..Default::default()
        })),
    );
    Taken {
        snapshot_id: snap.snapshot_id,
        stamps,
        regions: regions.clone(),
    }
}

/// Restores every snapshot of `taken` that completed and compares it with what the volume held
/// when it was taken; drops those that ended in error (a kill while pending). With `wait`,
/// waits for pending ones first. Returns (restored, failed).
fn check_snapshots(
    server: &Server,
    instance_id: &str,
    taken: &mut Vec<Taken>,
    wait: bool,
) -> (usize, usize) {
    let mut c = server.client();
    let (mut restored, mut failed) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut left = vec![];
    for t in taken.drain(..) {
        let state = loop {
            let s = server.ok(
                "DescribeSnapshots",
                server.block_on(c.describe_snapshots(pb::DescribeSnapshotsRequest {
                    snapshot_ids: vec![t.snapshot_id.clone()],
                    ..Default::default()
                })),
            );
            let state = s.snapshots[0].state.clone();
            if state != "pending" || !wait || Instant::now() > deadline {
                break state;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match state.as_str() {
            "completed" => {}
            "error" => {
                failed += 1;
                continue;
            }
            _ => {
                left.push(t);
                continue;
            }
        }
        let v = server
            .ok(
                "CreateVolume from a snapshot",
                server.block_on(c.create_volume(pb::CreateVolumeRequest {
                    availability_zone: "us-east-1a".into(),
                    snapshot_id: Some(t.snapshot_id.clone()),
                    volume_type: Some("io2".into()),
                    iops: Some(64_000),
                    ..Default::default()
                })),
            )
            .volume_id;
        let a = server.ok(
            "AttachVolume",
            server.block_on(c.attach_volume(pb::AttachVolumeRequest {
                volume_id: v.clone(),
                instance_id: instance_id.into(),
                device: "/dev/sdg".into(),
            })),
        );
        let (_, token) = split_nbd_uri(&a.nbd_uri);
        assert!(
            read_stamps(server, &token) == t.stamps,
            "snapshot {} restored a stamp area that differs from what the volume held",
            t.snapshot_id
        );
        for r in &t.regions {
            fio_region(&a.nbd_uri, *r, true).assert_success();
        }
        server.detach(&v);
        server.wait_volume_state(&v, "available");
        server.ok(
            "DeleteVolume",
            server.block_on(c.delete_volume(pb::DeleteVolumeRequest { volume_id: v })),
        );
        restored += 1;
    }
    *taken = left;
    (restored, failed)
}
