//! A power cut, not just `kill -9`: the data directory sits on `scripts/powercut_fs.py`, a FUSE
//! layer that keeps file data in memory until that file is fsynced. Killing the layer with the
//! server drops everything unsynced, as a power cut drops the page cache; the server then
//! restarts on the backing directory. Every acknowledged flush and FUA write must be there, and
//! so must the catalog (volumes, attachments, tags, snapshot records) and the snapshots, which
//! restore byte for byte. (`kill -9` alone keeps the page cache, so a missing fsync of a
//! volume, the catalog or a tracking sidecar goes unseen; here it shows.)
//!
//! The snapshot store stays on the real disk beside it: the local store makes itself durable
//! with `syncfs`, which a FUSE mount does not pass on to its daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use proto::ebs::v1 as pb;

/// The power-cut filesystem, mounted at `mount` over `backing`.
struct PowerCutFs {
    daemon: Option<std::process::Child>,
    mount: PathBuf,
}

impl PowerCutFs {
    fn mount(backing: &Path, mount: &Path) -> PowerCutFs {
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mount).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/powercut_fs.py");
        let mut daemon = Command::new("python3")
            .arg(script)
            .arg(backing)
            .arg(mount)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start powercut_fs.py");
        let mut lines = LineReader::new(daemon.stdout.take().unwrap());
        lines.wait_for("mounted", Duration::from_secs(20));
        PowerCutFs {
            daemon: Some(daemon),
            mount: mount.to_owned(),
        }
    }

    /// The power cut: the layer dies with everything it had not synced, and its mount goes.
    fn cut(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mount)
                .status();
        }
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        self.cut();
    }
}

fn can_run() -> bool {
    if euid() != Some(0) || !Path::new("/dev/fuse").exists() {
        return skip("the power-cut filesystem needs root and /dev/fuse");
    }
    let fusepy = Command::new("python3")
        .args(["-c", "import fuse"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !fusepy {
        return skip("python3 cannot import fuse (pip install fusepy; apt-get install libfuse2)");
    }
    require_tools(&["fusermount3", "qemu-io", "nbdinfo"])
}

/// The state of snapshot `id`, as DescribeSnapshots says.
fn snapshot_state(server: &Server, id: &str) -> String {
    let mut c = server.client();
    let r = server.ok(
        "DescribeSnapshots",
        server.block_on(c.describe_snapshots(pb::DescribeSnapshotsRequest {
            snapshot_ids: vec![id.into()],
            ..Default::default()
        })),
    );
    r.snapshots[0].state.clone()
}

/// Restores `snapshot_id` into a new volume attached to a new host `host`; its NBD URI.
fn restore_attached(server: &Server, snapshot_id: &str, host: &str) -> String {
    let mut c = server.client();
    let v = server.ok(
        "CreateVolume from a snapshot",
        server.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            snapshot_id: Some(snapshot_id.into()),
            volume_type: Some("gp3".into()),
            ..Default::default()
        })),
    );
    let h = server.register_host(host);
    server.attach(&v.volume_id, &h.instance_id).nbd_uri
}

#[test]
fn a_power_cut_keeps_every_flushed_write_the_catalog_and_the_snapshots() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let mount = dir.path().join("mnt");
    let store = format!("us-east-1=file://{}", dir.path().join("store").display());
    let args = ["--snapshot-store", &store, "--snapshot-min-interval", "0s"];
    let mut fs = PowerCutFs::mount(&backing, &mount);
    let server = Server::start_with_args(&mount, &args);
    let (volume_id, host, uri) = server.attach_new_volume(1);
    let mut c = server.client();

    // Acknowledged and made durable: a flushed write, a FUA write, a flushed trim.
    qemu_io(
        &uri,
        &[
            "write -P 0x11 0 1M",
            "write -P 0x12 8M 1M",
            "flush",
            "write -f -P 0x22 1M 64k",
        ],
    );
    // A snapshot of that, then a trim and a write after it.
    let snap = server.snapshot_completed(&volume_id);
    qemu_io(&uri, &["discard 8M 1M", "write -P 0x33 2M 512k", "flush"]);
    server.ok(
        "CreateTags",
        server.block_on(c.create_tags(pb::CreateTagsRequest {
            resources: vec![volume_id.clone()],
            tags: vec![pb::Tag {
                key: "survives".into(),
                value: "power-cut".into(),
            }],
        })),
    );
    let modified = server.ok(
        "ModifyVolume",
        server.block_on(c.modify_volume(pb::ModifyVolumeRequest {
            volume_id: volume_id.clone(),
            size: Some(2),
            ..Default::default()
        })),
    );
    assert_eq!(modified.target_size, 2);
    // Not flushed (qemu-io flushes when it exits, so through gRPC): may be lost.
    server.ok(
        "WriteBlocks",
        server.block_on(
            c.write_blocks(futures::stream::iter([pb::WriteBlocksRequest {
                attachment_token: uri.rsplit('/').next().unwrap().to_owned(),
                offset: 4 * MIB,
                data: vec![0x44; 64 * KIB as usize],
                fua: false,
            }])),
        ),
    );

    server.kill9();
    fs.cut();

    let server = Server::start_with_args(&backing, &args);
    let v = server.describe_volume(&volume_id);
    assert_eq!(v.state, "in-use", "{v:?}");
    assert_eq!(v.size, 2, "the size change was acknowledged: {v:?}");
    assert_eq!(
        v.tags
            .iter()
            .map(|t| (&*t.key, &*t.value))
            .collect::<Vec<_>>(),
        [("survives", "power-cut")],
        "{v:?}"
    );
    assert_eq!(v.attachments[0].instance_id, host);
    let uri = server.nbd_uri_of(&volume_id);
    qemu_io(
        &uri,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x22 1M 64k",
            "read -P 0x33 2M 512k",
            "read -P 0 8M 1M",
        ],
    );
    // What was never flushed is allowed to be gone; say which it was (a lost write shows the
    // layer really cut the power).
    let unflushed = qemu_io_unchecked(&uri, &["read -P 0x44 4M 64k"]);
    eprintln!(
        "the unflushed write {} the power cut",
        if unflushed.combined().contains("Pattern verification failed") {
            "was lost in"
        } else {
            "survived"
        }
    );
    let out = run_tool("nbdinfo", &["--size", &uri]);
    out.assert_success();
    assert_eq!(out.stdout.trim(), (2 * GIB).to_string(), "the grown size");

    // The snapshot taken before the cut restores what the volume held then.
    assert_eq!(snapshot_state(&server, &snap), "completed");
    let ruri = restore_attached(&server, &snap, "after-the-cut");
    qemu_io(
        &ruri,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x22 1M 64k",
            "read -P 0 2M 512k",
            "read -P 0x12 8M 1M",
        ],
    );
    // And a snapshot after the cut is exact too (tracking after a cut reads everything).
    let after = server.snapshot_completed(&volume_id);
    let auri = restore_attached(&server, &after, "after-the-cut-2");
    qemu_io(
        &auri,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x33 2M 512k",
            "read -P 0 8M 1M",
        ],
    );
    server.stop();
}
