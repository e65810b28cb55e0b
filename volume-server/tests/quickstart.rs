//! The README's quick start, run exactly as written: its first `sh` block, pasted into bash as
//! one piece, in a fresh directory (so the server's data goes to the default, relative
//! `./ebs-data`), on the default ports. Only the build is stood in for: `cargo` on the block's
//! PATH is a no-op, and `./target/release` links to this test's own binaries.
//!
//! Needs root (the block mounts a loop device), the NBD tools, fio and jq; the default ports
//! (50051, 10809, 9898, 4566) must be free.

mod common;

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The first fenced `sh` block after `## Quick start`.
fn quick_start(readme: &str) -> String {
    let section = readme
        .split_once("\n## Quick start")
        .expect("README has a Quick start section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the Quick start has an sh block")
        .1;
    block
        .split_once("\n```")
        .expect("the sh block ends")
        .0
        .to_string()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    if !require_tools(&[
        "bash",
        "jq",
        "nbdinfo",
        "nbdfuse",
        "fio",
        "mkfs.ext4",
        "fusermount3",
    ]) || !require_root_fuse_loop()
    {
        return;
    }
    let Some(ebsctl) = ebsctl_path() else {
        skip("ebsctl is not built next to the test binary (run `cargo test --workspace`)");
        return;
    };
    if let Some(port) = [50051, 10809, 9898, 4566]
        .into_iter()
        .find(|p| !port_free(*p))
    {
        skip(&format!(
            "port {port} is in use; the quick start uses the default ports"
        ));
        return;
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let script = quick_start(&readme);
    assert!(
        script.contains("./target/release/volume-server &"),
        "{script}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bin = ebsctl.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.path().join("target")).unwrap();
    std::os::unix::fs::symlink(&bin, dir.path().join("target/release")).unwrap();
    let fake = dir.path().join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(
        fake.join("cargo"),
        "#!/bin/sh\n# The test built the binaries already.\nexit 0\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(fake.join("cargo"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // Its own process group: the block leaves the server (and nothing else, if it went well)
    // running in the background, and the whole group is stopped at the end.
    let mut child = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", &path)
        .env_remove("EBS_ENDPOINT")
        .env_remove("EBS_TOKEN")
        .env_remove("EBS_TOKEN_FILE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start bash");
    let pgid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The server the block started, and anything else it left behind.
    // SAFETY: kill(2) on our own child's process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: as above; whatever ignored SIGTERM.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = Command::new("umount")
        .arg("/mnt/vol")
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("fusermount3")
        .args(["-u", "/tmp/nbd"])
        .stderr(Stdio::null())
        .status();
    let stdout = out_thread.join().unwrap();
    let stderr = err_thread.join().unwrap();
    let describe = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("the quick start ran past 300 s\n{describe}"));
    assert!(
        status.success(),
        "the quick start failed: {status}\n{describe}"
    );
    // What it shows along the way: nbdinfo's export, fio's reads, the workload's console (its
    // devices file, read from its own directory through the absolute path it was handed, and
    // nbdinfo on its root device).
    for expected in ["rr: (groupid=0", "\"InstanceType\": \"m5d.large\""] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing\n{describe}"
        );
    }
    assert_eq!(
        stdout.matches("export-size: 8589934592").count(),
        2,
        "nbdinfo on the volume, then in the workload on its root (restored from the volume's snapshot)\n{describe}"
    );
    assert!(
        !stderr.contains("No such file or directory"),
        "a path handed out did not resolve\n{describe}"
    );
    assert!(
        dir.path().join("ebs-data/catalog.redb").exists(),
        "data in ./ebs-data"
    );
}
