//! Disk faults against a real server, on a small loop-mounted ext4 that holds one AZ's volumes:
//! a full disk refuses writes with ENOSPC while reads and other volumes go on, and writes resume
//! when space frees; a real I/O error (the filesystem turning read-only) fails that volume only,
//! which then reports `impaired`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use proto::ebs::v1 as pb;

/// A loop-mounted ext4 of `mib` MiB at `at`; unmounted (lazily) on drop.
struct LoopFs {
    at: PathBuf,
}

impl LoopFs {
    fn mount(image: &Path, at: &Path, mib: u64, options: &str) -> LoopFs {
        let f = std::fs::File::create(image).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        run_tool(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", image.to_str().unwrap()],
        )
        .assert_success();
        std::fs::create_dir_all(at).unwrap();
        run_tool(
            "mount",
            &[
                "-o",
                &format!("loop,{options}"),
                image.to_str().unwrap(),
                at.to_str().unwrap(),
            ],
        )
        .assert_success();
        LoopFs {
            at: at.to_path_buf(),
        }
    }

    /// Bytes free for an unprivileged writer.
    fn available(&self) -> u64 {
        let out = run_tool("df", &["--output=avail", "-B1", self.at.to_str().unwrap()]);
        out.assert_success();
        out.stdout.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// The ext4 sysfs directory of this filesystem (`/sys/fs/ext4/loopN`).
    fn sysfs(&self) -> PathBuf {
        let out = run_tool("findmnt", &["-no", "SOURCE", self.at.to_str().unwrap()]);
        out.assert_success();
        let dev = out.stdout.trim().rsplit('/').next().unwrap().to_string();
        Path::new("/sys/fs/ext4").join(dev)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn can_loop_mount() -> bool {
    if euid() != Some(0) || !Path::new("/dev/loop-control").exists() {
        return skip("loop-mounting a filesystem needs root and /dev/loop-control");
    }
    require_tools(&[
        "mkfs.ext4",
        "mount",
        "findmnt",
        "df",
        "qemu-io",
        "fallocate",
    ])
}

/// A volume in `zone` attached to a host there: `(volume id, nbd uri)`.
fn attached_in(server: &Server, zone: &str) -> (String, String) {
    let mut c = server.client();
    let v = server.ok(
        "CreateVolume",
        server.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: zone.into(),
            size: Some(1),
            volume_type: Some("gp3".into()),
            ..Default::default()
        })),
    );
    let h = server.ok(
        "RegisterHost",
        server.block_on(c.register_host(pb::RegisterHostRequest {
            name: format!("host-{zone}"),
            availability_zone: zone.into(),
            ..Default::default()
        })),
    );
    let a = server.attach(&v.volume_id, &h.instance_id);
    (v.volume_id, a.nbd_uri)
}

fn status(server: &Server, volume_id: &str) -> pb::VolumeStatusInfo {
    let mut c = server.client();
    let r = server.ok(
        "DescribeVolumeStatus",
        server.block_on(c.describe_volume_status(pb::DescribeVolumeStatusRequest {
            volume_ids: vec![volume_id.into()],
        })),
    );
    r.volume_statuses[0].volume_status.clone().unwrap()
}

#[test]
fn a_full_disk_refuses_writes_only_and_writes_resume_when_space_frees() {
    if !can_loop_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs = LoopFs::mount(
        &dir.path().join("az-b.img"),
        &data.join("us-east-1b"),
        64,
        "rw",
    );
    let server = Server::start(&data);
    let (full, full_uri) = attached_in(&server, "us-east-1b");
    let (_, other_uri) = attached_in(&server, "us-east-1a");
    qemu_io(&full_uri, &["write -P 0x11 0 1M", "flush"]);

    // Leave 4 MiB free, then write 16 MiB.
    let ballast = fs.at.join("ballast");
    let size = fs.available() - (4 << 20);
    run_tool(
        "fallocate",
        &["-l", &size.to_string(), ballast.to_str().unwrap()],
    )
    .assert_success();
    let out = qemu_io_unchecked(&full_uri, &["write -P 0x22 4M 16M"]);
    assert!(
        out.combined().contains("No space left on device"),
        "expected ENOSPC: {}",
        out.describe()
    );
    // Reads of that volume, and every other volume, go on; it is not impaired.
    qemu_io(&full_uri, &["read -P 0x11 0 1M"]);
    qemu_io(
        &other_uri,
        &["write -P 0x33 0 16M", "flush", "read -P 0x33 0 16M"],
    );
    assert_eq!(status(&server, &full).status, "ok");

    // Space frees: the same connection-less client writes again.
    std::fs::remove_file(&ballast).unwrap();
    qemu_io(
        &full_uri,
        &[
            "write -P 0x22 4M 16M",
            "flush",
            "read -P 0x22 4M 16M",
            "read -P 0x11 0 1M",
        ],
    );
    server.stop();
}

#[test]
fn an_io_error_fails_that_volume_only_and_it_reports_impaired() {
    if !can_loop_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs = LoopFs::mount(
        &dir.path().join("az-b.img"),
        &data.join("us-east-1b"),
        64,
        "errors=remount-ro",
    );
    let server = Server::start(&data);
    let (broken, broken_uri) = attached_in(&server, "us-east-1b");
    let (healthy, healthy_uri) = attached_in(&server, "us-east-1a");
    qemu_io(&broken_uri, &["write -P 0x11 0 1M", "flush"]);
    assert_eq!(status(&server, &broken).status, "ok");

    // The kernel reports a filesystem error: ext4 turns read-only and every write fails.
    std::fs::write(fs.sysfs().join("trigger_fs_error"), "crash harness\n").unwrap();
    let out = qemu_io_unchecked(&broken_uri, &["write -P 0x44 0 64k", "flush"]);
    assert!(out.combined().contains("failed"), "{}", out.describe());
    // Fail-stop: from now on the volume refuses everything, reads included.
    let out = qemu_io_unchecked(&broken_uri, &["read -P 0x11 0 4k"]);
    assert!(out.combined().contains("failed"), "{}", out.describe());
    let s = status(&server, &broken);
    assert_eq!(s.status, "impaired");
    assert!(
        s.details
            .iter()
            .any(|d| d.name == "io-enabled" && d.status == "failed"),
        "{s:?}"
    );
    // Nothing else is affected.
    assert_eq!(status(&server, &healthy).status, "ok");
    qemu_io(
        &healthy_uri,
        &["write -P 0x55 0 4M", "flush", "read -P 0x55 0 4M"],
    );
    let mut c = server.client();
    server.ok(
        "DescribeVolumes",
        server.block_on(c.describe_volumes(pb::DescribeVolumesRequest::default())),
    );
    server.stop();
}
