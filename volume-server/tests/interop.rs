//! Real NBD clients against a real `volume-server`: qemu-io, nbdinfo, nbdcopy, fio's nbd engine, and
//! nbdfuse + a loop-mounted ext4 filesystem. Each test starts its own server in its own temp dir.
//!
//! A missing tool skips the test loudly (`SKIPPED: …` on stderr); with `EBS_REQUIRE_INTEROP=1` it fails.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ebs-interop-")
        .tempdir()
        .expect("temp dir")
}

// -------------------------------------------------------------------------------------------------
// qemu-io

#[test]
fn qemu_io_writes_read_back_in_the_same_and_a_new_process() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (_volume, _instance, uri) = server.attach_new_volume(1);

    // Aligned and 512-byte-aligned writes, a FUA write, write-zeroes (with and without unmap), and
    // the very end of the device; then read everything back on the same connection.
    let writes = [
        "write -P 0xab 0 64k",
        "write -P 0xcd 1M 4k",
        "write -P 0x5a 5243392 1536", // 5 MiB + 512, 3 sectors
        "write -f -P 0x77 2M 8k",     // FUA
        "write -P 0x3c 300M 1M",
        "write -P 0xee 1073676288 64k", // the last 64 KiB of 1 GiB
        "write -z 16k 16k",             // WRITE_ZEROES inside the 0xab range
        "write -P 0x99 8M 128k",
        "write -z -u 8M 64k", // WRITE_ZEROES that may unmap
        "flush",
    ];
    let reads = [
        "read -P 0xab 0 16k",
        "read -P 0 16k 16k",
        "read -P 0xab 32k 32k",
        "read -P 0 64k 64k", // never written
        "read -P 0xcd 1M 4k",
        "read -P 0 1052672 4k", // just after it
        "read -P 0 5242880 512",
        "read -P 0x5a 5243392 1536",
        "read -P 0 5244928 512",
        "read -P 0x77 2M 8k",
        "read -P 0x3c 300M 1M",
        "read -P 0xee 1073676288 64k",
        "read -P 0 8M 64k",
        "read -P 0x99 8454144 64k", // 8M + 64k
    ];
    let all: Vec<&str> = writes.iter().chain(reads.iter()).copied().collect();
    let out = qemu_io(&uri, &all);
    assert_eq!(
        out.stdout.matches("wrote ").count(),
        writes.len() - 1,
        "every write should report: {}",
        out.describe()
    );
    assert_eq!(
        out.stdout.matches("read ").count(),
        reads.len(),
        "every read should report: {}",
        out.describe()
    );

    // A second process on a second connection sees the same bytes.
    qemu_io(&uri, &reads);

    // A mismatching pattern is detected (the check above can fail).
    let wrong = qemu_io_unchecked(&uri, &["read -P 0xab 1M 4k"]);
    assert!(
        !wrong.status.success() && wrong.combined().contains("Pattern verification failed"),
        "a wrong pattern must be reported: {}",
        wrong.describe()
    );
    server.stop();
}

// -------------------------------------------------------------------------------------------------
// nbdinfo

fn nbdinfo_json(uri: &str) -> serde_json::Value {
    let out = run_tool("nbdinfo", &["--json", uri]);
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("nbdinfo --json is not JSON ({e}): {}", out.describe()))
}

#[test]
fn nbdinfo_reports_size_flags_and_block_sizes() {
    if !require_tool("nbdinfo") {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (_volume, _instance, uri) = server.attach_new_volume(1);
    let (_, token) = split_nbd_uri(&uri);

    let info = nbdinfo_json(&uri);
    assert_eq!(info["protocol"], "newstyle-fixed", "{info:#}");
    assert_eq!(info["structured"], true, "{info:#}");
    let export = &info["exports"][0];
    assert_eq!(export["export-name"], token.as_str(), "{info:#}");
    assert_eq!(export["export-size"], GIB, "{info:#}");
    for flag in [
        "can_flush",
        "can_fua",
        "can_trim",
        "can_zero",
        "can_fast_zero",
        "can_multi_conn",
        "can_cache",
    ] {
        assert_eq!(export[flag], true, "{flag}: {info:#}");
    }
    assert_eq!(export["is_read_only"], false, "{info:#}");
    assert_eq!(export["block_size_minimum"], 512, "{info:#}");
    assert_eq!(export["block_size_preferred"], 4096, "{info:#}");
    assert_eq!(export["block_size_maximum"], 32 * MIB, "{info:#}");
    let contexts = export["contexts"]
        .as_array()
        .unwrap_or_else(|| panic!("no meta contexts: {info:#}"));
    assert!(contexts.iter().any(|c| c == "base:allocation"), "{info:#}");
    server.stop();
}

/// `nbdinfo --map --json` as `(offset, length, type)`, adjacent extents of one type merged.
fn nbd_map(uri: &str) -> Vec<(u64, u64, u64)> {
    let out = run_tool("nbdinfo", &["--map", "--json", uri]);
    out.assert_success();
    let extents: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("nbdinfo --map --json is not JSON ({e}): {}", out.describe()));
    let mut merged: Vec<(u64, u64, u64)> = Vec::new();
    for e in extents.as_array().expect("an array of extents") {
        let field = |name: &str| {
            e[name]
                .as_u64()
                .unwrap_or_else(|| panic!("extent without {name}: {}", out.describe()))
        };
        let (offset, length, kind) = (field("offset"), field("length"), field("type"));
        match merged.last_mut() {
            Some(last) if last.2 == kind && last.0 + last.1 == offset => last.1 += length,
            Some(last) => {
                assert_eq!(
                    last.0 + last.1,
                    offset,
                    "extents not contiguous: {}",
                    out.describe()
                );
                merged.push((offset, length, kind));
            }
            None => {
                assert_eq!(offset, 0, "{}", out.describe());
                merged.push((offset, length, kind));
            }
        }
    }
    merged
}

#[test]
fn nbdinfo_map_shows_written_data_and_trimmed_holes() {
    if !require_tools(&["nbdinfo", "qemu-io"]) {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (_volume, _instance, uri) = server.attach_new_volume(1);

    // A new volume is one hole that reads as zeroes.
    assert_eq!(nbd_map(&uri), vec![(0, GIB, 3)], "fresh volume");

    qemu_io(
        &uri,
        &[
            "write -P 0xab 0 1M",
            "write -P 0xcd 4M 64k",
            "discard 256k 256k",
            "flush",
        ],
    );
    const DATA: u64 = 0;
    const HOLE_ZERO: u64 = 3;
    let expected = vec![
        (0, 256 * KIB, DATA),
        (256 * KIB, 256 * KIB, HOLE_ZERO),
        (512 * KIB, 512 * KIB, DATA),
        (MIB, 3 * MIB, HOLE_ZERO),
        (4 * MIB, 64 * KIB, DATA),
        (4 * MIB + 64 * KIB, GIB - 4 * MIB - 64 * KIB, HOLE_ZERO),
    ];
    assert_eq!(nbd_map(&uri), expected);
    // The trimmed range reads back as zeroes, its neighbours keep their data.
    qemu_io(
        &uri,
        &[
            "read -P 0xab 0 256k",
            "read -P 0 256k 256k",
            "read -P 0xab 512k 512k",
            "read -P 0xcd 4M 64k",
        ],
    );
    server.stop();
}

// -------------------------------------------------------------------------------------------------
// nbdcopy

#[test]
fn nbdcopy_round_trips_256_mib_over_four_connections() {
    if !require_tool("nbdcopy") {
        return;
    }
    let dir = tempdir();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (_volume, _instance, uri) = server.attach_new_volume(1);

    let src = dir.path().join("src.img");
    let out = dir.path().join("out.img");
    write_random_file(&src, 256 * MIB);

    run(Command::new("nbdcopy")
        .arg("--connections=4")
        .arg(&src)
        .arg(&uri))
    .assert_success();
    run(Command::new("nbdcopy")
        .arg("--connections=4")
        .arg(&uri)
        .arg(&out))
    .assert_success();

    let len = std::fs::metadata(&out).expect("out.img").len();
    assert_eq!(len, GIB, "nbdcopy copies the whole export");
    assert_same_range(&src, &out, 0, 256 * MIB);
    assert_zero_range(&out, 256 * MIB, GIB - 256 * MIB);
    server.stop();
}

// -------------------------------------------------------------------------------------------------
// fio

fn fio(dir: &Path, uri: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new("fio");
    // No verify state file (it would land in the working directory).
    cmd.current_dir(dir)
        .args([
            "--name=ebs",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=64m",
            "--iodepth=32",
            "--verify=crc32c",
            "--randseed=20251126",
            "--verify_state_save=0",
        ])
        .args(extra);
    let out = run(&mut cmd);
    out.assert_success();
    let text = out.combined();
    let verify_errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("verify:") || l.contains("bad magic") || l.contains("crc32c:"))
        .collect();
    assert!(
        verify_errors.is_empty(),
        "fio verify errors {verify_errors:?}: {}",
        out.describe()
    );
    out
}

#[test]
fn fio_nbd_engine_random_writes_verify() {
    if !require_tool("fio") {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (_volume, _instance, uri) = server.attach_new_volume(1);

    // Write 64 MiB at random 4 KiB offsets (with a FLUSH every 256 writes), then read it all back
    // and check every block's checksum header.
    let first = fio(dir.path(), &uri, &["--do_verify=1", "--fsync=256"]);
    assert!(
        first.stdout.contains("WRITE:") && first.stdout.contains("READ:"),
        "expected a write and a verify pass: {}",
        first.describe()
    );
    // A second fio process only verifies: the data lives on the server.
    let second = fio(dir.path(), &uri, &["--verify_only=1"]);
    assert!(
        second.stdout.contains("READ:"),
        "expected a verify pass: {}",
        second.describe()
    );
    server.stop();
}

// -------------------------------------------------------------------------------------------------
// detach fences an open session

#[test]
fn detach_fences_an_open_nbd_session() {
    if !require_tools(&["qemu-io", "nbdinfo", "stdbuf"]) {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (volume, instance, uri) = server.attach_new_volume(1);

    // One qemu-io session, fed one command at a time.
    let (mut session, mut lines, stdin) = spawn_qemu_io(&uri, &[], true);
    let mut stdin = stdin.expect("piped stdin");
    let mut send = move |command: &str| {
        use std::io::Write as _;
        writeln!(stdin, "{command}").expect("write to qemu-io");
        stdin.flush().expect("flush qemu-io stdin");
    };

    send("write -f -P 0x11 0 64k");
    let line = lines.wait_for_any(&["wrote ", "failed"], TOOL_TIMEOUT);
    assert!(
        line.contains("wrote 65536/65536 bytes at offset 0"),
        "{line:?}\n{}",
        lines.seen()
    );

    let detached = server.detach(&volume);
    assert_eq!(detached.volume_id, volume, "{detached:?}");

    // The open session can no longer write.
    send("write -f -P 0x22 0 64k");
    let line = lines.wait_for_any(&["wrote ", "failed"], TOOL_TIMEOUT);
    assert!(line.contains("write failed"), "{line:?}\n{}", lines.seen());
    drop(send);
    let _ = wait_with_timeout(&mut session.0, TOOL_TIMEOUT, "qemu-io after stdin closed");

    // The old URI no longer opens; the volume is available again.
    run_tool("nbdinfo", &[&uri]).assert_failure();
    let described = server.wait_volume_state(&volume, "available");
    assert!(described.attachments.is_empty(), "{described:?}");

    // Neither do made-up export names, nor the bare volume id.
    let nbd = server.nbd_addr;
    run_tool("nbdinfo", &[&format!("nbd://{nbd}/{volume}")]).assert_failure();
    run_tool("nbdinfo", &[&format!("nbd://{nbd}/not-a-token")]).assert_failure();

    // A new attachment gets a new token; the fenced write never landed.
    let again = server.attach(&volume, &instance);
    assert_ne!(split_nbd_uri(&again.nbd_uri).1, split_nbd_uri(&uri).1);
    assert!(
        again.generation > detached.generation,
        "{again:?} vs {detached:?}"
    );
    qemu_io(&again.nbd_uri, &["read -P 0x11 0 64k"]);
    server.stop();
}

// -------------------------------------------------------------------------------------------------
// nbdfuse + loop-mounted ext4, across a server restart

/// `nbdfuse DIR URI` in the background, exposing `DIR/nbd`; unmounted on drop whatever happens.
#[derive(Debug)]
struct FuseMount {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl FuseMount {
    fn mount(dir: &Path, uri: &str) -> FuseMount {
        std::fs::create_dir_all(dir).expect("fuse mount dir");
        let parent = dir.parent().expect("parent dir");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let pidfile = parent.join(format!("{name}.pid"));
        let log = parent.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&pidfile);
        let log_file = File::create(&log).expect("nbdfuse log");
        let child = Command::new("nbdfuse")
            .arg("-P")
            .arg(&pidfile)
            .arg(dir)
            .arg(uri)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("start nbdfuse");
        let mut mount = FuseMount {
            dir: dir.to_owned(),
            log,
            child: Some(child),
        };
        // nbdfuse writes the pid file once it serves the mount.
        let deadline = Instant::now() + TOOL_TIMEOUT;
        while !(pidfile.exists() && mount.device().exists()) {
            if let Some(status) = mount.child.as_mut().unwrap().try_wait().expect("nbdfuse") {
                panic!("nbdfuse exited with {status}: {}", mount.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "nbdfuse never came up: {}",
                mount.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    fn device(&self) -> PathBuf {
        self.dir.join("nbd")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `fusermount3 -u`, then nbdfuse must exit 0.
    fn unmount(mut self) {
        run(Command::new("fusermount3").arg("-u").arg(&self.dir)).assert_success();
        let mut child = self.child.take().unwrap();
        let status = wait_with_timeout(&mut child, TOOL_TIMEOUT, "nbdfuse after unmount");
        assert!(
            status.success(),
            "nbdfuse exited with {status}: {}",
            self.log_text()
        );
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = run(Command::new("fusermount3").arg("-uz").arg(&self.dir));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `mount -o loop IMAGE DIR`; lazily unmounted on drop if still mounted.
#[derive(Debug)]
struct LoopMount {
    dir: PathBuf,
    mounted: bool,
}

impl LoopMount {
    fn mount(image: &Path, dir: &Path) -> LoopMount {
        std::fs::create_dir_all(dir).expect("mount dir");
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir))
        .assert_success();
        LoopMount {
            dir: dir.to_owned(),
            mounted: true,
        }
    }

    fn unmount(mut self) {
        run(Command::new("umount").arg(&self.dir)).assert_success();
        self.mounted = false;
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
        }
    }
}

#[test]
fn nbdfuse_ext4_files_survive_a_server_restart() {
    if !require_tools(&[
        "nbdfuse",
        "fusermount3",
        "mkfs.ext4",
        "e2fsck",
        "mount",
        "umount",
        "sync",
    ]) || !require_root_fuse_loop()
    {
        return;
    }
    let dir = tempdir();
    let data = dir.path().join("data");
    let fuse_dir = dir.path().join("fuse");
    let mnt = dir.path().join("mnt");
    let random = dir.path().join("random.bin");
    write_random_file(&random, 10 * MIB);

    let server = Server::start(&data);
    let (volume, _instance, uri) = server.attach_new_volume(1);
    let (_, token) = split_nbd_uri(&uri);
    {
        let fuse = FuseMount::mount(&fuse_dir, &uri);
        let device = fuse.device();
        assert_eq!(std::fs::metadata(&device).expect("nbd file").len(), GIB);
        run(Command::new("mkfs.ext4").args(["-F", "-q"]).arg(&device)).assert_success();
        let fs = LoopMount::mount(&device, &mnt);
        std::fs::write(mnt.join("hello.txt"), b"hello from ebs\n").expect("write hello.txt");
        std::fs::create_dir(mnt.join("dir")).expect("mkdir");
        std::fs::copy(&random, mnt.join("dir/random.bin")).expect("copy random.bin");
        run_tool("sync", &[] as &[&str]).assert_success();
        fs.unmount();
        fuse.unmount();
    }
    server.stop();

    let server = Server::start(&data);
    let described = server.describe_volume(&volume);
    assert_eq!(described.state, "in-use", "{described:?}");
    let uri = server.nbd_uri_of(&volume);
    let (addr, token_after) = split_nbd_uri(&uri);
    assert_eq!(
        token_after, token,
        "the attachment keeps its token across a restart"
    );
    assert_eq!(addr.port(), server.nbd_addr.port());
    {
        let fuse = FuseMount::mount(&fuse_dir, &uri);
        let device = fuse.device();
        run(Command::new("e2fsck").args(["-f", "-n"]).arg(&device)).assert_success();
        let fs = LoopMount::mount(&device, &mnt);
        assert_eq!(
            std::fs::read_to_string(mnt.join("hello.txt")).expect("read hello.txt"),
            "hello from ebs\n"
        );
        assert_eq!(
            std::fs::metadata(mnt.join("dir/random.bin"))
                .expect("random.bin")
                .len(),
            10 * MIB
        );
        assert_same_range(&random, &mnt.join("dir/random.bin"), 0, 10 * MIB);
        fs.unmount();
        fuse.unmount();
    }
    server.stop();
}

/// `--nbd-socket`: the same exports over a Unix socket (mode 0600, named in the `listening`
/// line): qemu-io writes through `nbd+unix://`, and reads it back over TCP; nbdinfo sees the
/// same export; a detach fences the Unix session too; a socket left by a killed server is
/// replaced at the next start, and a file that is not a socket is refused.
#[test]
fn the_unix_socket_serves_the_same_exports() {
    if !require_tools(&["qemu-io", "nbdinfo"]) {
        return;
    }
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempdir();
    let socket = dir.path().join("nbd.sock");
    let socket_arg = socket.display().to_string();
    let data = dir.path().join("data");
    let server = Server::start_with_args(&data, &["--nbd-socket", &socket_arg]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let (volume, _, tcp) = server.attach_new_volume(1);
    let token = tcp.rsplit('/').next().unwrap().to_string();
    let unix = format!("nbd+unix:///{token}?socket={socket_arg}");
    let info = run(Command::new("nbdinfo").arg(&unix));
    info.assert_success();
    assert!(
        info.stdout.contains("export-size: 1073741824"),
        "{}",
        info.describe()
    );
    qemu_io(&unix, &["write -P 0x6b 0 1M", "flush"]);
    qemu_io(&tcp, &["read -P 0x6b 0 1M"]);
    // A wrong export name over the socket is refused like over TCP.
    let wrong = format!("nbd+unix:///not-an-export?socket={socket_arg}");
    assert!(!run(Command::new("nbdinfo").arg(&wrong)).status.success());

    server.detach(&volume);
    let after = qemu_io_unchecked(&unix, &["read 0 4k"]);
    assert!(
        !after.status.success() || after.combined().contains("failed"),
        "the Unix session outlived the detach: {}",
        after.describe()
    );

    // kill -9 leaves the socket file; the next start replaces it.
    server.kill9();
    assert!(socket.exists());
    let server = Server::start_with_args(&data, &["--nbd-socket", &socket_arg]);
    let (_, _, tcp) = server.attach_new_volume(1);
    let token = tcp.rsplit('/').next().unwrap().to_string();
    qemu_io(
        &format!("nbd+unix:///{token}?socket={socket_arg}"),
        &["write -P 0x11 0 4k", "read -P 0x11 0 4k"],
    );
    server.stop();
    assert!(!socket.exists(), "a clean stop removes the socket");

    // Not a socket: refused, the file left alone.
    std::fs::write(&socket, "keep me").unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_volume-server"))
        .args(["--data-dir", &data.display().to_string()])
        .args(["--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0"])
        .args(["--nbd-socket", &socket_arg]));
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.combined().contains("Unix socket"), "{}", out.describe());
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "keep me");
}
