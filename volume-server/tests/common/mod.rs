//! Test harness shared by the integration tests: a real `volume-server` on port 0 in a temp dir, a
//! blocking gRPC client over it, and helpers to run the real NBD clients (qemu-io, nbdinfo, nbdcopy, fio,
//! nbdfuse) with their output captured.
//!
//! Missing tools make a test print `SKIPPED: …` and return, unless `EBS_REQUIRE_INTEROP=1` (set by CI),
//! which turns every skip into a failure.

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use proto::ebs::v1 as pb;
use proto::ebs::v1::volume_service_client::VolumeServiceClient;
use tonic::transport::Channel;

/// How long the server may take to print its `listening` line, and to exit after SIGTERM.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(20);
/// A hang guard for one tool run (never an assertion on speed: a healthy run takes a fraction of it).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
pub const KIB: u64 = 1 << 10;

/// The availability zone every test uses.
pub const AZ: &str = "us-east-1a";

// -------------------------------------------------------------------------------------------------
// environment and tools

/// True when CI asked for every interop test to run (`EBS_REQUIRE_INTEROP=1`).
pub fn interop_required() -> bool {
    std::env::var("EBS_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// Skips the calling test loudly (returns false), or fails it under `EBS_REQUIRE_INTEROP=1`.
pub fn skip(reason: &str) -> bool {
    if interop_required() {
        panic!("EBS_REQUIRE_INTEROP=1 but {reason}; install it (see .ci/run)");
    }
    // Straight to the stderr handle, not `eprintln!`: the test harness captures the macros' output of
    // passing tests, and a skip must be seen.
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason} (test {test})");
    false
}

/// The path of an executable on `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True if `name` is on `PATH`; otherwise prints `SKIPPED: <name> not installed` (or panics when
/// `EBS_REQUIRE_INTEROP=1`) and returns false.
pub fn require_tool(name: &str) -> bool {
    if which(name).is_some() {
        true
    } else {
        skip(&format!("{name} not installed"))
    }
}

/// [`require_tool`] for each of `names` (reports every missing one).
pub fn require_tools(names: &[&str]) -> bool {
    // Not `all()`: every missing tool gets its own line.
    names.iter().filter(|name| !require_tool(name)).count() == 0
}

/// The effective user id, read from `/proc/self/status`.
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// True when FUSE and loop mounts can work here: root, `/dev/fuse`, `/dev/loop-control`. Skips loudly
/// otherwise (or panics under `EBS_REQUIRE_INTEROP=1`).
pub fn require_root_fuse_loop() -> bool {
    if euid() != Some(0) {
        return skip("not running as root (needed for loop mounts)");
    }
    for dev in ["/dev/fuse", "/dev/loop-control"] {
        if !Path::new(dev).exists() {
            return skip(&format!("{dev} is missing"));
        }
    }
    true
}

/// `target/debug/ebsctl` (next to this test executable's `deps/` folder), if it was built.
/// `cargo test --workspace` builds it; `cargo test -p volume-server` alone may not.
pub fn ebsctl_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let path = profile_dir.join("ebsctl");
    is_executable(&path).then_some(path)
}

// -------------------------------------------------------------------------------------------------
// running tools

/// What a finished tool printed.
#[derive(Debug)]
pub struct Output {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// Panics unless the tool exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "{}", self.describe());
        self
    }

    /// Panics if the tool exited 0.
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "expected a failure: {}",
            self.describe()
        );
        self
    }

    /// stdout and stderr together.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// How a command line reads in messages.
pub fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            let _ = write!(line, " '{arg}'");
        } else {
            let _ = write!(line, " {arg}");
        }
    }
    line
}

/// Spawns a thread that reads `source` to the end into a string.
fn collect<R: Read + Send + 'static>(mut source: R) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` to exit, killing it (and panicking) if it takes longer than `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{what}` did not finish within {timeout:?}; killed it");
            }
            Err(e) => panic!("waiting for `{what}`: {e}"),
        }
    }
}

/// Runs `cmd` to completion with stdin closed and its output captured (hang guard: [`TOOL_TIMEOUT`]).
pub fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, TOOL_TIMEOUT)
}

/// [`run`] with an explicit hang guard.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let what = command_line(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let status = wait_with_timeout(&mut child, timeout, &what);
    Output {
        what,
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `program args…`.
pub fn run_tool<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Output {
    run(Command::new(program).args(args))
}

/// qemu-io's options: raw format, and a writeback cache so that plain writes go out without FUA (qemu-io
/// defaults to writethrough, which makes every write FUA); `write -f` asks for FUA, `flush` flushes,
/// and closing flushes.
pub const QEMU_IO_OPTS: [&str; 4] = ["-f", "raw", "-t", "writeback"];

/// `qemu-io -f raw -t writeback -c CMD … URI`: every command must succeed and every `read -P` must match.
pub fn qemu_io(uri: &str, commands: &[&str]) -> Output {
    let out = qemu_io_unchecked(uri, commands);
    assert_qemu_io_ok(&out);
    out
}

/// `qemu-io -f raw -t writeback -c CMD … URI` without judging the result.
pub fn qemu_io_unchecked(uri: &str, commands: &[&str]) -> Output {
    let mut cmd = Command::new("qemu-io");
    cmd.args(QEMU_IO_OPTS);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri);
    run(&mut cmd)
}

/// qemu-io exits non-zero when a command failed; pattern mismatches also print a line we look for.
pub fn assert_qemu_io_ok(out: &Output) {
    out.assert_success();
    let text = out.combined();
    assert!(
        !text.contains("Pattern verification failed"),
        "pattern mismatch: {}",
        out.describe()
    );
    assert!(
        !text.contains(" failed:"),
        "a qemu-io command failed: {}",
        out.describe()
    );
}

/// A long-running `qemu-io -f raw -t writeback -c CMD … URI` (stdout line-buffered by `stdbuf`, stderr merged into
/// it) whose output can be awaited line by line. With `interactive`, no `-c` commands are given and
/// the returned stdin feeds it: send one command, then wait for its output before the next (qemu-io
/// reads stdin through a buffer and may sit on a second queued line).
pub fn spawn_qemu_io(
    uri: &str,
    commands: &[&str],
    interactive: bool,
) -> (KillOnDrop, LineReader, Option<std::process::ChildStdin>) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec stdbuf -oL qemu-io \"$@\" 2>&1", "sh"])
        .args(QEMU_IO_OPTS);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(uri)
        .stdin(if interactive {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", command_line(&cmd)));
    let stdin = child.stdin.take();
    let lines = LineReader::new(child.stdout.take().expect("piped stdout"));
    (KillOnDrop(child), lines, stdin)
}

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout line by line on a thread, so a test can wait for a given line.
#[derive(Debug)]
pub struct LineReader {
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl LineReader {
    pub fn new(stdout: ChildStdout) -> Self {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines,
            seen: String::new(),
        }
    }

    /// Waits for a line containing `needle`; panics (showing what was read) on EOF or after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_any(&[needle], timeout)
    }

    /// Waits for a line containing any of `needles`; panics (showing what was read) on EOF or after
    /// `timeout`.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if needles.iter().any(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "no line with any of {needles:?} within {timeout:?}; read so far:\n{}",
                    self.seen
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "output ended before a line with any of {needles:?}; read:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Everything read so far.
    pub fn seen(&self) -> &str {
        &self.seen
    }
}

// -------------------------------------------------------------------------------------------------
// NBD URIs

/// Splits `nbd://HOST:PORT/EXPORT` into `(HOST:PORT, EXPORT)`.
pub fn split_nbd_uri(uri: &str) -> (SocketAddr, String) {
    let rest = uri
        .strip_prefix("nbd://")
        .unwrap_or_else(|| panic!("not an nbd:// URI: {uri:?}"));
    let (authority, export) = rest
        .split_once('/')
        .unwrap_or_else(|| panic!("no export name in {uri:?}"));
    let addr = authority
        .parse()
        .unwrap_or_else(|e| panic!("bad HOST:PORT in {uri:?}: {e}"));
    (addr, export.to_owned())
}

// -------------------------------------------------------------------------------------------------
// the server

/// A running `volume-server` with port 0 on all three listeners.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub nbd_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The AWS endpoint.
    pub aws_addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    rt: tokio::runtime::Runtime,
}

/// Appends every line of `source` to `sink`; the first line starting with `listening ` also goes to `ready`.
fn pump<R: Read + Send + 'static>(
    source: R,
    sink: Arc<Mutex<String>>,
    ready: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut ready = ready;
        let mut reader = BufReader::new(source);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    sink.lock().unwrap().push_str(&text);
                    if text.starts_with("listening ")
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(text.trim_end().to_owned());
                    }
                }
            }
        }
    });
}

/// The address `key=` names in a `listening` line.
pub fn listening_addr(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("bad {key}= in {line:?}: {e}"))
}

/// Parses `listening grpc=A nbd=B metrics=C aws=D [nbd-socket=PATH]` (the first three).
pub fn parse_listening(line: &str) -> (SocketAddr, SocketAddr, SocketAddr) {
    let mut grpc = None;
    let mut nbd = None;
    let mut metrics = None;
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("listening"), "{line:?}");
    for word in words {
        let (key, value) = word
            .split_once('=')
            .unwrap_or_else(|| panic!("bad word {word:?} in {line:?}"));
        if key == "nbd-socket" {
            // A path, not an address.
            continue;
        }
        let addr: SocketAddr = value
            .parse()
            .unwrap_or_else(|e| panic!("bad address {value:?} in {line:?}: {e}"));
        match key {
            "grpc" => grpc = Some(addr),
            "nbd" => nbd = Some(addr),
            "metrics" => metrics = Some(addr),
            "aws" => {}
            other => panic!("unknown listener {other:?} in {line:?}"),
        }
    }
    let get = |a: Option<SocketAddr>, name: &str| {
        let a = a.unwrap_or_else(|| panic!("no {name}= in {line:?}"));
        assert_ne!(a.port(), 0, "{name} still on port 0 in {line:?}");
        a
    };
    (get(grpc, "grpc"), get(nbd, "nbd"), get(metrics, "metrics"))
}

impl Server {
    /// Starts the server on `data_dir` (created if missing) and waits for its `listening` line.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with_args(data_dir, &[])
    }

    /// [`Server::start`] with extra flags.
    pub fn start_with_args(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`Server::start`] with extra flags and environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_volume-server"));
        cmd.envs(env.iter().copied());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args(["--nbd-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--aws-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("EBS_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = command_line(&cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        pump(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            Some(tx),
        );
        pump(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        );

        let line = match rx.recv_timeout(SERVER_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let exited = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                // Let the pumps drain what the process printed before it died.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "`{what}` printed no `listening` line ({}; exit: {exited:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    match e {
                        mpsc::RecvTimeoutError::Timeout => format!("waited {SERVER_TIMEOUT:?}"),
                        mpsc::RecvTimeoutError::Disconnected => "stdout closed".to_owned(),
                    },
                    stdout.lock().unwrap(),
                    stderr.lock().unwrap(),
                );
            }
        };
        let (grpc_addr, nbd_addr, metrics_addr) = parse_listening(&line);
        let aws_addr = listening_addr(&line, "aws");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Server {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            grpc_addr,
            nbd_addr,
            metrics_addr,
            aws_addr,
            stderr,
            stdout,
            rt,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `http://GRPC_ADDR`, for ebsctl's `--endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// URL of the AWS endpoint.
    pub fn aws_url(&self) -> String {
        format!("http://{}", self.aws_addr)
    }

    /// `aws --endpoint-url <the AWS endpoint>` signing as `key` (secret `secret`), isolated
    /// from any user configuration (no profile, config or credentials file, pager or retries).
    pub fn aws_cli(&self, key: &str, secret: &str) -> Command {
        let mut cmd = Command::new("aws");
        cmd.args(["--endpoint-url", &self.aws_url()])
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_PAGER", "")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_SESSION_TOKEN");
        cmd
    }

    /// Sends `signal` (a `kill -s` name: TERM, INT, …) to the server.
    pub fn signal(&self, signal: &str) {
        run_tool("kill", &["-s", signal, &self.pid().to_string()]).assert_success();
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn stop(self) {
        self.stop_with("TERM");
    }

    /// Sends `signal` (TERM or INT), then waits for a clean exit (status 0).
    pub fn stop_with(mut self, signal: &str) {
        self.signal(signal);
        let mut child = self.child.take().expect("server is running");
        let status = wait_with_timeout(
            &mut child,
            SERVER_TIMEOUT,
            "volume-server after SIG{signal}",
        );
        assert!(
            status.success(),
            "volume-server did not exit cleanly after SIG{signal}: {status}\n--- stderr ---\n{}",
            self.stderr()
        );
    }

    /// Waits for the server to exit by itself (a crash point); its exit status.
    pub fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        wait_with_timeout(&mut child, SERVER_TIMEOUT, "volume-server to exit")
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("server is running");
        child.kill().expect("SIGKILL volume-server");
        let _ = child.wait();
    }

    /// Runs a future on this server's client runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// A new gRPC client connected to the server.
    pub fn client(&self) -> VolumeServiceClient<Channel> {
        let endpoint = self.endpoint();
        self.block_on(VolumeServiceClient::connect(endpoint.clone()))
            .unwrap_or_else(|e| panic!("cannot connect to {endpoint}: {e}"))
    }

    /// Unwraps a gRPC reply, showing the status, its EC2 code and the server's stderr on failure.
    pub fn ok<T>(&self, what: &str, reply: Result<tonic::Response<T>, tonic::Status>) -> T {
        match reply {
            Ok(r) => r.into_inner(),
            Err(status) => panic!(
                "{what} failed: {:?} {:?} (EC2 code {:?})\n--- server stderr ---\n{}",
                status.code(),
                status.message(),
                ec2_code(&status),
                self.stderr()
            ),
        }
    }

    /// CreateVolume gp3 of `size_gib` in [`AZ`]; asserts it is `available`.
    pub fn create_volume(&self, size_gib: i32) -> pb::Volume {
        let mut client = self.client();
        let volume = self.ok(
            "CreateVolume",
            self.block_on(client.create_volume(pb::CreateVolumeRequest {
                availability_zone: AZ.to_owned(),
                size: Some(size_gib),
                volume_type: Some("gp3".to_owned()),
                ..Default::default()
            })),
        );
        assert!(volume.volume_id.starts_with("vol-"), "{volume:?}");
        // EC2's answer (the volume is ready; the state trails for the transition time).
        assert_eq!(volume.state, "creating", "{volume:?}");
        assert_eq!(volume.size, size_gib, "{volume:?}");
        volume
    }

    /// RegisterHost `name` in [`AZ`].
    pub fn register_host(&self, name: &str) -> pb::Host {
        let mut client = self.client();
        let host = self.ok(
            "RegisterHost",
            self.block_on(client.register_host(pb::RegisterHostRequest {
                name: name.to_owned(),
                availability_zone: AZ.to_owned(),
                ..Default::default()
            })),
        );
        assert!(host.instance_id.starts_with("i-"), "{host:?}");
        host
    }

    /// AttachVolume as `/dev/sdf`; asserts the attachment is `attaching` (EC2's answer: it serves
    /// I/O already) with an NBD URI on our NBD port.
    pub fn attach(&self, volume_id: &str, instance_id: &str) -> pb::VolumeAttachment {
        let mut client = self.client();
        let attachment = self.ok(
            "AttachVolume",
            self.block_on(client.attach_volume(pb::AttachVolumeRequest {
                volume_id: volume_id.to_owned(),
                instance_id: instance_id.to_owned(),
                device: "/dev/sdf".to_owned(),
            })),
        );
        assert_eq!(attachment.state, "attaching", "{attachment:?}");
        assert_eq!(attachment.volume_id, volume_id, "{attachment:?}");
        assert_eq!(attachment.instance_id, instance_id, "{attachment:?}");
        let (addr, export) = split_nbd_uri(&attachment.nbd_uri);
        assert_eq!(addr.port(), self.nbd_addr.port(), "{attachment:?}");
        assert!(!export.is_empty(), "{attachment:?}");
        assert_ne!(
            export, volume_id,
            "the export name must not be the volume id"
        );
        attachment
    }

    /// DetachVolume (not forced).
    pub fn detach(&self, volume_id: &str) -> pb::VolumeAttachment {
        let mut client = self.client();
        self.ok(
            "DetachVolume",
            self.block_on(client.detach_volume(pb::DetachVolumeRequest {
                volume_id: volume_id.to_owned(),
                force: false,
                ..Default::default()
            })),
        )
    }

    /// DescribeVolumes of one id.
    pub fn describe_volume(&self, volume_id: &str) -> pb::Volume {
        let mut client = self.client();
        let reply = self.ok(
            "DescribeVolumes",
            self.block_on(client.describe_volumes(pb::DescribeVolumesRequest {
                volume_ids: vec![volume_id.to_owned()],
                ..Default::default()
            })),
        );
        assert_eq!(reply.volumes.len(), 1, "{reply:?}");
        reply.volumes.into_iter().next().unwrap()
    }

    /// Polls DescribeVolumes until the volume is in `state` (panics after [`SERVER_TIMEOUT`]).
    pub fn wait_volume_state(&self, volume_id: &str, state: &str) -> pb::Volume {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let volume = self.describe_volume(volume_id);
            if volume.state == state {
                return volume;
            }
            assert!(
                Instant::now() < deadline,
                "{volume_id} never became {state}: {volume:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// DescribeHosts of one id.
    pub fn describe_host(&self, instance_id: &str) -> pb::Host {
        let mut client = self.client();
        let reply = self.ok(
            "DescribeHosts",
            self.block_on(client.describe_hosts(pb::DescribeHostsRequest {
                instance_ids: vec![instance_id.to_owned()],
            })),
        );
        assert_eq!(reply.hosts.len(), 1, "{reply:?}");
        reply.hosts.into_iter().next().unwrap()
    }

    /// The NBD URI of the volume's single attachment, as DescribeVolumes reports it.
    pub fn nbd_uri_of(&self, volume_id: &str) -> String {
        let volume = self.describe_volume(volume_id);
        assert_eq!(volume.attachments.len(), 1, "{volume:?}");
        volume.attachments[0].nbd_uri.clone()
    }

    /// CreateSnapshot of `volume_id`, then polls until it is `completed`; its id.
    pub fn snapshot_completed(&self, volume_id: &str) -> String {
        let mut c = self.client();
        let snap = self.ok(
            "CreateSnapshot",
            self.block_on(c.create_snapshot(pb::CreateSnapshotRequest {
                volume_id: volume_id.into(),
                ..Default::default()
            })),
        );
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let s = self.ok(
                "DescribeSnapshots",
                self.block_on(c.describe_snapshots(pb::DescribeSnapshotsRequest {
                    snapshot_ids: vec![snap.snapshot_id.clone()],
                    ..Default::default()
                })),
            );
            assert_ne!(s.snapshots[0].state, "error", "{s:?}");
            if s.snapshots[0].state == "completed" {
                return snap.snapshot_id;
            }
            assert!(Instant::now() < deadline, "{s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates a gp3 volume, registers a host and attaches the volume to it:
    /// `(volume_id, instance_id, nbd_uri)`.
    pub fn attach_new_volume(&self, size_gib: i32) -> (String, String, String) {
        let volume = self.create_volume(size_gib);
        let host = self.register_host("test-host");
        let attachment = self.attach(&volume.volume_id, &host.instance_id);
        (volume.volume_id, host.instance_id, attachment.nbd_uri)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- volume-server stderr ---\n{}\n--- volume-server stdout ---\n{}",
                    self.stderr.lock().map(|s| s.clone()).unwrap_or_default(),
                    self.stdout.lock().map(|s| s.clone()).unwrap_or_default(),
                );
            }
        }
    }
}

/// The EC2 error code (`x-ec2-error-code`) of a failed call.
pub fn ec2_code(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get(proto::EC2_ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

// -------------------------------------------------------------------------------------------------
// files

/// Writes `len` bytes from `/dev/urandom` to `path`.
pub fn write_random_file(path: &Path, len: u64) {
    let mut src = std::fs::File::open("/dev/urandom")
        .expect("/dev/urandom")
        .take(len);
    let mut dst = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let copied = std::io::copy(&mut src, &mut dst).expect("copy random bytes");
    assert_eq!(copied, len);
    dst.sync_all().expect("sync random file");
}

/// Asserts that `a` and `b` hold the same bytes over `[offset, offset+len)` of each (chunked, so
/// memory stays small); reports the first differing offset.
pub fn assert_same_range(a: &Path, b: &Path, offset: u64, len: u64) {
    use std::io::{Seek, SeekFrom};
    let open = |p: &Path| {
        let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f
    };
    let (mut fa, mut fb) = (open(a), open(b));
    let mut ba = vec![0u8; 4 << 20];
    let mut bb = vec![0u8; 4 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ba.len() as u64) as usize;
        fa.read_exact(&mut ba[..n])
            .unwrap_or_else(|e| panic!("{} at {}: {e}", a.display(), offset + done));
        fb.read_exact(&mut bb[..n])
            .unwrap_or_else(|e| panic!("{} at {}: {e}", b.display(), offset + done));
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!(
                "{} and {} differ at offset {}",
                a.display(),
                b.display(),
                offset + done + i as u64
            );
        }
        done += n as u64;
    }
}

/// Asserts that `path` holds only zero bytes over `[offset, offset+len)`.
pub fn assert_zero_range(path: &Path, offset: u64, len: u64) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let zeroes = vec![0u8; 4 << 20];
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n])
            .unwrap_or_else(|e| panic!("{} at {}: {e}", path.display(), offset + done));
        if buf[..n] != zeroes[..n] {
            let i = buf[..n].iter().position(|&x| x != 0).unwrap();
            panic!(
                "{} has a non-zero byte at offset {}",
                path.display(),
                offset + done + i as u64
            );
        }
        done += n as u64;
    }
}

// ------------------------------------------------------------ the aws CLI and boto3

/// Whether python3 can import `module`.
pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The aws CLI and boto3, or a loud skip (a failure under EBS_REQUIRE_INTEROP).
pub fn require_aws_clients() -> bool {
    if !require_tool("aws") {
        return false;
    }
    if !python_has("boto3") {
        return skip("python3 cannot import boto3 (pip install boto3)");
    }
    true
}

/// `aws --endpoint-url … --output json ARGS` as key `key` (secret `secret`), isolated from any
/// user configuration.
pub fn aws_as(server: &Server, key: &str, secret: &str, args: &[&str]) -> Output {
    run(server
        .aws_cli(key, secret)
        .args(["--output", "json"])
        .args(args))
}

/// [`aws_as`] with the key every local account test uses (`test`: account `000000000000`).
pub fn aws(server: &Server, args: &[&str]) -> Output {
    aws_as(server, "test", "test", args)
}

/// The JSON a successful CLI call printed.
pub fn json(out: &Output) -> serde_json::Value {
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
}

/// Asserts the CLI failed with EC2 code `code`, as botocore parsed it.
pub fn assert_code(out: &Output, code: &str) {
    out.assert_failure();
    assert!(
        out.stderr.contains(&format!("({code})")),
        "expected ({code}): {}",
        out.describe()
    );
}
