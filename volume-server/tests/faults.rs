//! Disk faults against a real server, on a small loop-mounted ext4 that holds one AZ's volumes:
//! a full disk refuses writes with ENOSPC while reads and other volumes go on, and writes resume
//! when space frees; a real I/O error (the filesystem turning read-only) fails that volume only,
//! which then reports `impaired`; with the catalog on a full disk, a failed commit fails its
//! call only (and a size change leaves the file as the catalog says), and every change goes
//! through again once space frees.

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

    /// Takes every free byte with `prefix-N` files. One `fallocate` of all that `df` reports
    /// can fail (its own extent blocks need room too) and space can come back (a commit that
    /// failed frees its pages): so smaller pieces, until nothing is left.
    fn fill(&self, prefix: &str) {
        let mut piece = self.available();
        let mut n = 0;
        while piece >= 4096 {
            let file = self.at.join(format!("{prefix}-{n}"));
            let ok = Command::new("fallocate")
                .args(["-l", &piece.to_string()])
                .arg(&file)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                n += 1;
                piece = self.available();
            } else {
                let _ = std::fs::remove_file(&file);
                piece /= 2;
            }
        }
    }

    /// Removes the files [`LoopFs::fill`] made with `prefix`.
    fn unfill(&self, prefix: &str) {
        for entry in std::fs::read_dir(&self.at).unwrap().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
            {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
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

    // EnableVolumeIO: the volume takes I/O again (reads of what the read-only filesystem
    // still holds work; writes still fail, and stop it again).
    server.ok(
        "EnableVolumeIo",
        server.block_on(c.enable_volume_io(pb::EnableVolumeIoRequest {
            volume_id: broken.clone(),
        })),
    );
    assert_eq!(status(&server, &broken).status, "ok");
    qemu_io(&broken_uri, &["read -P 0x11 0 4k"]);
    let out = qemu_io_unchecked(&broken_uri, &["write -P 0x66 0 4k", "flush"]);
    assert!(out.combined().contains("failed"), "{}", out.describe());
    assert_eq!(status(&server, &broken).status, "impaired");
    // autoEnableIO: on, the volume takes I/O again and a failing write fails only itself.
    assert_eq!(auto_enable_io(&server, &broken), Some(false));
    server.ok(
        "ModifyVolumeAttribute",
        server.block_on(c.modify_volume_attribute(pb::ModifyVolumeAttributeRequest {
            volume_id: broken.clone(),
            auto_enable_io: true,
        })),
    );
    assert_eq!(auto_enable_io(&server, &broken), Some(true));
    assert_eq!(status(&server, &broken).status, "ok");
    let out = qemu_io_unchecked(&broken_uri, &["write -P 0x77 0 4k", "flush"]);
    assert!(out.combined().contains("failed"), "{}", out.describe());
    assert_eq!(status(&server, &broken).status, "ok");
    qemu_io(&broken_uri, &["read -P 0x11 0 4k"]);
    server.stop();
}

/// DescribeVolumeAttribute autoEnableIO of `volume_id`.
fn auto_enable_io(server: &Server, volume_id: &str) -> Option<bool> {
    let mut c = server.client();
    server
        .ok(
            "DescribeVolumeAttribute",
            server.block_on(
                c.describe_volume_attribute(pb::DescribeVolumeAttributeRequest {
                    volume_id: volume_id.to_owned(),
                    attribute: "autoEnableIO".into(),
                }),
            ),
        )
        .auto_enable_io
}

/// The whole data directory, catalog included, on a small filesystem that fills up: a catalog
/// commit that fails for want of space fails that call only (the catalog is reopened, not left
/// refusing every later change); a ModifyVolume whose commit fails leaves the volume file as the
/// catalog says; once space frees, every change goes through again and survives a restart.
#[test]
fn a_full_disk_under_the_catalog_fails_calls_only_until_space_frees() {
    if !can_loop_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs = LoopFs::mount(&dir.path().join("data.img"), &data, 64, "rw");
    let server = Server::start(&data);
    let mut c = server.client();
    let volumes: Vec<String> = (0..40).map(|_| server.create_volume(1).volume_id).collect();
    let file_of = |id: &str| data.join(AZ).join("volumes").join(format!("{id}.img"));
    let big_tags = |seed: usize| -> Vec<pb::Tag> {
        (0..50)
            .map(|i| pb::Tag {
                key: format!("{seed:04}-{i:02}-{}", "k".repeat(120)),
                value: "v".repeat(256),
            })
            .collect()
    };

    // Fill the disk, then tag volumes until a catalog commit fails for want of space.
    let ballast = fs.at.join("ballast");
    let _ = Command::new("fallocate")
        .args(["-l", &fs.available().to_string()])
        .arg(&ballast)
        .status();
    let mut failed = None;
    for (i, id) in volumes.iter().enumerate() {
        let r = server.block_on(c.create_tags(pb::CreateTagsRequest {
            resources: vec![id.clone()],
            tags: big_tags(i),
        }));
        if let Err(status) = r {
            failed = Some(status);
            break;
        }
    }
    let failed = failed.expect("a catalog commit on a full disk failed");
    assert_eq!(
        ec2_code(&failed).as_deref(),
        Some("InternalError"),
        "{failed:?}"
    );
    // A failed commit can leave free pages inside the catalog's file that the next small
    // commit fits in. Rewriting large records until commits fail `n` times running uses them
    // up, so that what follows meets a catalog with no room left, on a disk with none either.
    let mut rewrites = 0usize;
    type Client =
        proto::ebs::v1::volume_service_client::VolumeServiceClient<tonic::transport::Channel>;
    let mut squeeze = |c: &mut Client, n: usize| {
        let mut running = 0;
        for _ in 0..400 {
            if running == n {
                break;
            }
            fs.fill("ballast1");
            // The same 50 keys as the volume's own (the tag limit), new values.
            let i = rewrites % volumes.len();
            let fill = if rewrites.is_multiple_of(2) { "w" } else { "x" };
            rewrites += 1;
            let tags = big_tags(i)
                .into_iter()
                .map(|t| pb::Tag {
                    value: fill.repeat(256),
                    ..t
                })
                .collect();
            let r = server.block_on(c.create_tags(pb::CreateTagsRequest {
                resources: vec![volumes[i].clone()],
                tags,
            }));
            if let Err(e) = &r {
                assert_eq!(ec2_code(e).as_deref(), Some("InternalError"), "{e:?}");
            }
            running = if r.is_err() { running + 1 } else { 0 };
        }
    };
    squeeze(&mut c, 5);

    // Size changes now, each writing a large record, on a disk and a catalog squeezed full
    // before each: whether or not a commit goes through, the file and the catalog agree. A
    // commit can still fit in pages the catalog freed itself; if every size change of a round
    // went through, the next round grows them again once their modifications completed.
    let mut sizes: std::collections::HashMap<String, i32> =
        volumes.iter().map(|v| (v.clone(), 1)).collect();
    let mut refused: Vec<(String, i32)> = vec![];
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5500));
        }
        for id in &volumes {
            squeeze(&mut c, 2);
            fs.fill("ballast2");
            let target = sizes[id] + 2;
            let grown = server.block_on(c.modify_volume(pb::ModifyVolumeRequest {
                volume_id: id.clone(),
                size: Some(target),
                ..Default::default()
            }));
            let file_len = std::fs::metadata(file_of(id)).unwrap().len();
            let size = server.describe_volume(id).size;
            assert_eq!(
                file_len,
                size as u64 * GIB,
                "{id}: the file and the catalog disagree after {grown:?}"
            );
            let expected = if grown.is_ok() { target } else { sizes[id] };
            assert_eq!(size, expected, "{grown:?}");
            if grown.is_err() {
                refused.push((id.clone(), size));
            }
            sizes.insert(id.clone(), size);
            fs.unfill("ballast2");
        }
        eprintln!(
            "round {round}: on a full disk, {} of 40 size changes were refused",
            refused.len()
        );
        if !refused.is_empty() {
            break;
        }
    }
    let (again, was) = refused
        .first()
        .cloned()
        .expect("no size change failed on a full disk");
    let again = &again;

    // Space frees: every change goes through again, with no restart.
    std::fs::remove_file(&ballast).unwrap();
    fs.unfill("ballast1");
    for (i, id) in volumes.iter().enumerate() {
        server.ok(
            "CreateTags after space freed",
            server.block_on(c.create_tags(pb::CreateTagsRequest {
                resources: vec![id.clone()],
                tags: big_tags(i),
            })),
        );
    }
    server.ok(
        "ModifyVolume after space freed",
        server.block_on(c.modify_volume(pb::ModifyVolumeRequest {
            volume_id: again.clone(),
            size: Some(was + 1),
            ..Default::default()
        })),
    );
    assert_eq!(server.describe_volume(again).size, was + 1);
    assert_eq!(
        std::fs::metadata(file_of(again)).unwrap().len(),
        (was + 1) as u64 * GIB
    );
    let (_, _, uri) = server.attach_new_volume(1);
    qemu_io(&uri, &["write -P 0x5a 0 1M", "flush", "read -P 0x5a 0 1M"]);

    server.stop();
    let server = Server::start(&data);
    let mut c = server.client();
    assert_eq!(server.describe_volume(again).size, was + 1);
    let tagged = server.ok(
        "DescribeVolumes",
        server.block_on(c.describe_volumes(pb::DescribeVolumesRequest {
            volume_ids: vec![volumes[39].clone()],
            ..Default::default()
        })),
    );
    assert_eq!(tagged.volumes[0].tags.len(), 50);
    server.stop();
}
