//! A snapshot store that is unreachable (nothing listens) or slow (a black hole that accepts
//! connections and never answers): a snapshot fails within the store's retry settings
//! (`max_retries`, `retry_timeout`, `timeout`, `connect_timeout` in the `s3://` URL), while the
//! volume goes on serving I/O, the gRPC API stays responsive, DeleteSnapshot and garbage
//! collection hold nothing up, and the server starts and stops in bounded time.
//!
//! No assertion on speed: the bounds below are hang checks, far above what a healthy run takes.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use proto::ebs::v1 as pb;

/// A hang check for one qemu-io run or one gRPC call during a store fault.
const HANG: Duration = Duration::from_secs(5);
/// How long the volume serves I/O under a store fault, at least.
const IO_WINDOW: Duration = Duration::from_secs(4);
/// A failing snapshot must have settled by then.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// The volume's first bytes, tracked in chunks of this size with one pattern byte each.
const CHUNK: u64 = 64 * KIB;
const CHUNKS: u64 = 128;
/// The bucket and prefix of every store here (what the state message must name).
const STORE: &str = "s3://faults/snaps";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ebs-store-faults-")
        .tempdir()
        .expect("temp dir")
}

/// A loopback port nothing listens on (bound, then closed).
fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `--snapshot-store us-east-1=…` at `127.0.0.1:port`, with `settings` (`k=v&…`) in the query.
fn store_arg(port: u16, settings: &str) -> String {
    format!(
        "us-east-1={STORE}?endpoint=http://127.0.0.1:{port}&allow_http=true\
         &access_key_id=test&secret_access_key=sekrit&region=us-east-1&{settings}"
    )
}

/// A listener that accepts connections and never answers (a store that hangs), or, while
/// `closing` is set, closes every connection at once (a store that fails fast).
struct BlackHole {
    port: u16,
    closing: Arc<AtomicBool>,
}

impl BlackHole {
    fn start(closing: bool) -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the black hole");
        let port = listener.local_addr().unwrap().port();
        let flag = Arc::new(AtomicBool::new(closing));
        let closing = flag.clone();
        // Lives until the test process exits; it only holds sockets.
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming().flatten() {
                if !flag.load(Ordering::Acquire) {
                    held.push(stream);
                }
            }
        });
        BlackHole { port, closing }
    }

    /// From now on, connections hang.
    fn swallow(&self) {
        self.closing.store(false, Ordering::Release);
    }
}

/// Starts a server on a fresh data dir with `store` as us-east-1's store; also its start-up time.
fn start(dir: &tempfile::TempDir, store: &str) -> (Server, Duration) {
    let t = Instant::now();
    let server = Server::start_with_args(
        &dir.path().join("data"),
        &["--snapshot-min-interval", "0s", "--snapshot-store", store],
    );
    (server, t.elapsed())
}

fn create_snapshot(server: &Server, volume_id: &str) -> pb::Snapshot {
    let mut client = server.client();
    let s = server.ok(
        "CreateSnapshot",
        server.block_on(client.create_snapshot(pb::CreateSnapshotRequest {
            volume_id: volume_id.to_owned(),
            ..Default::default()
        })),
    );
    assert_eq!(s.state, "pending", "{s:?}");
    s
}

/// DescribeSnapshots of `id`; `None` once it is gone.
fn describe_snapshot(server: &Server, id: &str) -> Option<pb::Snapshot> {
    let mut client = server.client();
    let reply = server.block_on(client.describe_snapshots(pb::DescribeSnapshotsRequest {
        snapshot_ids: vec![id.to_owned()],
        ..Default::default()
    }));
    match reply {
        Ok(r) => r.into_inner().snapshots.into_iter().next(),
        Err(status) if ec2_code(&status).as_deref() == Some("InvalidSnapshot.NotFound") => None,
        Err(status) => panic!("DescribeSnapshots {id}: {status:?}"),
    }
}

/// Runs `f`, asserting it returns within [`HANG`]; its result and duration.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(took < HANG, "{what} took {took:?} during a store fault");
    (r, took)
}

/// One qemu-io run of `commands` (all must succeed), checked against [`HANG`]; its duration.
fn timed_qemu_io(uri: &str, commands: &[String]) -> Duration {
    let mut cmd = Command::new("qemu-io");
    cmd.args(QEMU_IO_OPTS);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri);
    let (out, took) = timed("a qemu-io run", || run_with_timeout(&mut cmd, 60 * HANG));
    assert_qemu_io_ok(&out);
    took
}

/// What the volume's first `CHUNKS` chunks hold: one pattern byte each (0 = never written).
struct Model {
    uri: String,
    patterns: Vec<u8>,
    max_io: Duration,
    runs: u32,
}

impl Model {
    fn new(uri: &str) -> Model {
        Model {
            uri: uri.to_owned(),
            patterns: vec![0; CHUNKS as usize],
            max_io: Duration::ZERO,
            runs: 0,
        }
    }

    fn run(&mut self, commands: &[String]) {
        let took = timed_qemu_io(&self.uri, commands);
        self.max_io = self.max_io.max(took);
        self.runs += 1;
    }

    /// Writes `pattern` over chunks `first..first + n` in one run.
    fn fill(&mut self, first: u64, n: u64, pattern: u8) {
        self.run(&[format!(
            "write -P {pattern} {} {}",
            first * CHUNK,
            n * CHUNK
        )]);
        for c in first..first + n {
            self.patterns[c as usize] = pattern;
        }
    }

    /// One step of the I/O loop: rewrites a chunk and reads it and a neighbour back.
    fn step(&mut self, i: u64) {
        let c = (i * 7) % CHUNKS;
        let next = (c + 1) % CHUNKS;
        let pattern = 1 + (i % 250) as u8;
        self.run(&[
            format!("write -P {pattern} {} {CHUNK}", c * CHUNK),
            format!("read -P {pattern} {} {CHUNK}", c * CHUNK),
            format!(
                "read -P {} {} {CHUNK}",
                self.patterns[next as usize],
                next * CHUNK
            ),
        ]);
        self.patterns[c as usize] = pattern;
    }

    /// Reads every chunk back against its pattern, in one run.
    fn verify(&mut self) {
        let reads: Vec<String> = (0..CHUNKS)
            .map(|c| {
                format!(
                    "read -P {} {} {CHUNK}",
                    self.patterns[c as usize],
                    c * CHUNK
                )
            })
            .collect();
        self.run(&reads);
    }
}

/// What a fault scenario observed.
struct Observed {
    /// CreateSnapshot until DescribeSnapshots showed `error`.
    settled_after: Duration,
    /// The longest qemu-io run (including the final verification).
    max_io: Duration,
    /// The longest DescribeVolumes / DescribeSnapshots call while the snapshot was pending.
    max_grpc: Duration,
    /// How long DeleteSnapshot of the failed snapshot took to answer.
    delete_took: Duration,
    io_runs: u32,
    message: String,
    /// Whether the server logged a failed garbage collection (it ran against the store).
    gc_failed: bool,
}

impl Observed {
    fn report(&self) -> String {
        format!(
            "snapshot in error after {:?}; {} qemu-io runs, the longest {:?}; longest gRPC call \
             {:?}; DeleteSnapshot answered in {:?}; garbage collection failed: {}; message: {}",
            self.settled_after,
            self.io_runs,
            self.max_io,
            self.max_grpc,
            self.delete_took,
            self.gc_failed,
            self.message
        )
    }
}

/// A volume written, snapshotted while the store is faulty; I/O goes on while the snapshot is
/// pending and until at least [`IO_WINDOW`] has passed; the snapshot ends in `error` naming the
/// store; the data is intact; then DeleteSnapshot (and the garbage collection it wakes) against
/// the faulty store holds no I/O up either.
fn snapshot_under_a_store_fault(server: &Server) -> Observed {
    let (volume_id, _, uri) = server.attach_new_volume(1);
    let mut model = Model::new(&uri);
    model.fill(0, CHUNKS / 2, 0x5a);
    model.fill(CHUNKS / 2, CHUNKS / 2, 0xa5);

    let t0 = Instant::now();
    let snapshot = create_snapshot(server, &volume_id);
    let id = snapshot.snapshot_id.clone();
    let mut settled: Option<(pb::Snapshot, Duration)> = None;
    let mut max_grpc = Duration::ZERO;
    let mut i = 0;
    while settled.is_none() || t0.elapsed() < IO_WINDOW {
        model.step(i);
        i += 1;
        if settled.is_none() {
            let (volume, took) = timed("DescribeVolumes", || server.describe_volume(&volume_id));
            assert_eq!(volume.state, "in-use", "{volume:?}");
            max_grpc = max_grpc.max(took);
            let (s, took) = timed("DescribeSnapshots", || describe_snapshot(server, &id));
            max_grpc = max_grpc.max(took);
            let s = s.expect("the snapshot is listed");
            if s.state != "pending" {
                settled = Some((s, t0.elapsed()));
            } else {
                assert!(
                    t0.elapsed() < SETTLE_DEADLINE,
                    "{id} still pending after {SETTLE_DEADLINE:?}: {s:?}"
                );
            }
        }
    }
    let (s, settled_after) = settled.unwrap();
    assert_eq!(s.state, "error", "a snapshot into a faulty store: {s:?}");
    assert!(
        s.state_message.contains(STORE),
        "the state message should name the store: {s:?}"
    );
    assert!(
        !s.state_message.contains("sekrit") && !s.state_message.contains("secret_access_key"),
        "the state message shows credentials: {s:?}"
    );
    model.verify();

    // DeleteSnapshot of the failed snapshot: answered at once (the manifest delete and the
    // garbage collection run in the background, against the faulty store), and I/O goes on.
    let ((), delete_took) = timed("DeleteSnapshot", || {
        let mut client = server.client();
        server.ok(
            "DeleteSnapshot",
            server.block_on(client.delete_snapshot(pb::DeleteSnapshotRequest {
                snapshot_id: id.clone(),
            })),
        );
    });
    let t1 = Instant::now();
    while t1.elapsed() < IO_WINDOW {
        model.step(i);
        i += 1;
        timed("DescribeVolumes", || server.describe_volume(&volume_id));
    }
    assert!(
        describe_snapshot(server, &id).is_none(),
        "{id} is still listed after DeleteSnapshot"
    );
    model.verify();
    Observed {
        settled_after,
        max_io: model.max_io,
        max_grpc,
        delete_took,
        io_runs: model.runs,
        message: s.state_message,
        gc_failed: server
            .stderr()
            .contains("snapshot garbage collection failed"),
    }
}

/// SIGTERM with background work still against the faulty store; how long the exit took.
fn stop(server: Server) -> Duration {
    let t = Instant::now();
    server.stop();
    t.elapsed()
}

#[test]
fn an_unreachable_store_fails_the_snapshot_not_the_volume() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempdir();
    let store = store_arg(
        unused_port(),
        "max_retries=2&retry_timeout=3s&connect_timeout=1s",
    );
    let (server, started) = start(&dir, &store);
    let seen = snapshot_under_a_store_fault(&server);
    let stopped = stop(server);
    eprintln!(
        "unreachable store: start-up {started:?}; {}; SIGTERM exit {stopped:?}",
        seen.report()
    );
}

#[test]
fn a_store_that_never_answers_fails_the_snapshot_not_the_volume() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempdir();
    // Fails fast while the server starts (start-up against a hanging store: see
    // `start_up_against_a_faulty_store_is_bounded`), then hangs.
    let hole = BlackHole::start(true);
    let store = store_arg(hole.port, "timeout=2s&max_retries=1&retry_timeout=4s");
    let (server, started) = start(&dir, &store);
    hole.swallow();
    let seen = snapshot_under_a_store_fault(&server);
    let stopped = stop(server);
    eprintln!(
        "store that never answers: start-up {started:?}; {}; SIGTERM exit {stopped:?}",
        seen.report()
    );
}

/// Start-up lists and clears `pending/` markers, releases `gc.lease` and lists `pins/` in the
/// store, one request after another, before the server listens: each is bounded by the
/// store's retry settings (with the defaults, minutes per request against a store that never
/// answers).
#[test]
fn start_up_against_a_faulty_store_is_bounded() {
    let dir = tempdir();
    let unreachable = store_arg(
        unused_port(),
        "max_retries=2&retry_timeout=3s&connect_timeout=1s",
    );
    let (server, refused) = start(&dir, &unreachable);
    timed("DescribeVolumes", || {
        let mut client = server.client();
        server.ok(
            "DescribeVolumes",
            server.block_on(client.describe_volumes(pb::DescribeVolumesRequest::default())),
        )
    });
    server.stop();

    let hole = BlackHole::start(false);
    let dir = tempdir();
    let hanging = store_arg(hole.port, "timeout=1s&max_retries=1&retry_timeout=2s");
    let (server, swallowed) = start(&dir, &hanging);
    std::thread::sleep(Duration::from_millis(
        std::env::var("DBG_SLEEP").map_or(0, |v| v.parse().unwrap()),
    ));
    server.stop();
    eprintln!("start-up: unreachable store {refused:?}, store that never answers {swallowed:?}");
    assert!(
        refused < Duration::from_secs(10),
        "start-up took {refused:?} with an unreachable store"
    );
    assert!(
        swallowed < Duration::from_secs(15),
        "start-up took {swallowed:?} with a store that never answers (1 s per attempt, 1 retry)"
    );
}
