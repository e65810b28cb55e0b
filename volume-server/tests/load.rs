//! Load with verification, short: 16 NBD connections (4 volumes x 4 fio jobs) at QD32 for a few
//! seconds, every job writing 4 KiB blocks with crc32c + sequence-number headers over its own
//! slice and reading them back as it goes; no fio error, no verify failure, the server's RSS
//! under a generous bound and its fds back to where they were. `scripts/load_test.py` is the long
//! version (64 connections, 16 volumes, 60 s, release build) and explains the fio configuration.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use proto::ebs::v1 as pb;

const VOLUMES: usize = 4;
const JOBS_PER_VOLUME: usize = 4;
const IODEPTH: u32 = 32;
const RUNTIME_S: u32 = 3;
/// Each job's slice of its volume: small, so blocks are overwritten and read back many times.
const REGION: u64 = 8 * MIB;
/// A debug build's RSS under this load is tens of MiB; this only catches unbounded growth.
const RSS_BOUND_KIB: u64 = 1024 * 1024;

/// A `kB` field (`VmRSS`, …) of `/proc/PID/status`; None once the process is gone.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The fio job file of `scripts/load_test.py` (see its docstring): randwrite with a verify
/// backlog over disjoint slices; not `time_based`, so fio checks each block's write sequence
/// number (a stale version fails), with an `io_size` no run reaches so that `runtime` ends it.
/// `jobs` is (URI, offset) per job.
fn job_file(jobs: &[(String, u64)], region: u64, runtime_s: u32, backlog: u32) -> String {
    let mut s = format!(
        "[global]\nioengine=nbd\nthread=1\nrw=randwrite\nnorandommap=1\nserialize_overlap=1\n\
         bs=4k\niodepth={IODEPTH}\nsize={region}\nio_size=64t\nruntime={runtime_s}\n\
         verify=crc32c\nverify_backlog={backlog}\nverify_fatal=1\nverify_dump=0\n\
         verify_state_save=0\nrandrepeat=0\n\n"
    );
    for (i, (uri, offset)) in jobs.iter().enumerate() {
        s += &format!("[j{i:02}]\nuri={uri}\noffset={offset}\n\n");
    }
    s
}

/// Runs fio on `jobs_file` (JSON output); returns the run and the parsed report.
fn fio(dir: &Path, name: &str, text: &str) -> (Output, Option<serde_json::Value>) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = run_with_timeout(
        Command::new("fio")
            .arg("--output-format=json")
            .arg(&path)
            .current_dir(dir),
        Duration::from_secs(120),
    );
    let report = out
        .stdout
        .find('{')
        .and_then(|i| serde_json::from_str(&out.stdout[i..]).ok());
    (out, report)
}

/// Creates an io2 volume (16 GiB, 16,000 IOPS: the throttle stays out of the way) attached to a
/// new host; its NBD URI.
fn io2_volume(srv: &Server) -> String {
    let mut c = srv.client();
    let v = srv.ok(
        "CreateVolume",
        srv.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            size: Some(16),
            volume_type: Some("io2".into()),
            iops: Some(16_000),
            ..Default::default()
        })),
    );
    let h = srv.register_host("load");
    srv.attach(&v.volume_id, &h.instance_id).nbd_uri
}

#[test]
fn sixteen_connections_at_qd32_verify_with_bounded_memory() {
    if !require_tools(&["fio"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"));
    let stride = 16 * GIB / JOBS_PER_VOLUME as u64;
    let jobs: Vec<(String, u64)> = (0..VOLUMES)
        .map(|_| io2_volume(&srv))
        .flat_map(|uri| (0..JOBS_PER_VOLUME as u64).map(move |j| (uri.clone(), j * stride)))
        .collect();

    let pid = srv.pid();
    let fds_before = open_fds(pid);
    let rss_before = status_kib(pid, "VmRSS").expect("server VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.extend(status_kib(pid, "VmRSS").map(|rss| (rss, open_fds(pid))));
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    let (out, report) = fio(
        dir.path(),
        "load.fio",
        &job_file(&jobs, REGION, RUNTIME_S, 1024),
    );
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();

    out.assert_success();
    let report = report.unwrap_or_else(|| panic!("no JSON report: {}", out.describe()));
    let fio_jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(
        fio_jobs.len(),
        VOLUMES * JOBS_PER_VOLUME,
        "{}",
        out.describe()
    );
    let (mut writes, mut reads) = (0, 0);
    for j in fio_jobs {
        assert_eq!(
            j["error"],
            0,
            "job {} failed: {}",
            j["jobname"],
            out.describe()
        );
        writes += j["write"]["total_ios"].as_u64().unwrap();
        reads += j["read"]["total_ios"].as_u64().unwrap();
    }
    assert!(
        !out.combined().contains("verify:"),
        "verify failure: {}",
        out.describe()
    );
    // With rw=randwrite every read is a verify read: some must have happened.
    assert!(
        writes > 0 && reads > 0,
        "{writes} writes, {reads} verify reads"
    );

    let max_rss = samples.iter().map(|s| s.0).max().unwrap_or(rss_before);
    let max_fds = samples.iter().map(|s| s.1).max().unwrap_or(0);
    assert!(
        max_rss < RSS_BOUND_KIB,
        "server RSS reached {max_rss} KiB (before the load: {rss_before} KiB)"
    );
    // fio has disconnected: the server closes its sessions' sockets.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > fds_before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open_fds(pid) <= fds_before + 2,
        "server fds: {fds_before} before the load, {} after it",
        open_fds(pid)
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "load: {writes} writes, {reads} verify reads over {} connections in {RUNTIME_S} s; \
         server RSS {rss_before} KiB before, {max_rss} KiB max; fds {fds_before} before, {max_fds} max",
        fio_jobs.len()
    );
    srv.stop();
}

/// The control: the same fio configuration, but two jobs given the SAME slice, so each reads
/// back blocks the other overwrote. fio must report it; otherwise the test above proves nothing.
#[test]
fn the_fio_verification_catches_another_writers_blocks() {
    if !require_tools(&["fio"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"));
    let uri = io2_volume(&srv);
    let jobs = [(uri.clone(), 0), (uri, 0)];
    let (out, _) = fio(dir.path(), "control.fio", &job_file(&jobs, MIB, 2, 16));
    out.assert_failure();
    assert!(
        out.combined().contains("verify: bad header"),
        "expected a verify failure: {}",
        out.describe()
    );
    srv.stop();
}
