//! Restarts: after `kill -9` the catalog (volumes, hosts, attachments and their NBD tokens) and every
//! flushed or FUA write survive; after SIGINT/SIGTERM the server exits 0 and comes back the same.

mod common;

use common::*;

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ebs-crash-")
        .tempdir()
        .expect("temp dir")
}

/// The catalog state a restart must keep.
fn assert_same_catalog(server: &Server, volume_id: &str, instance_id: &str, token: &str) -> String {
    let volume = server.describe_volume(volume_id);
    assert_eq!(volume.volume_id, volume_id, "{volume:?}");
    assert_eq!(volume.state, "in-use", "{volume:?}");
    assert_eq!(volume.size, 1, "{volume:?}");
    assert_eq!(volume.volume_type, "gp3", "{volume:?}");
    assert_eq!(volume.availability_zone, AZ, "{volume:?}");
    assert_eq!(volume.attachments.len(), 1, "{volume:?}");
    let attachment = &volume.attachments[0];
    assert_eq!(attachment.instance_id, instance_id, "{volume:?}");
    // `attaching` for the transition time after the attach, which a quick restart can fall in.
    assert!(
        matches!(attachment.state.as_str(), "attached" | "attaching"),
        "{volume:?}"
    );
    assert_eq!(attachment.device, "/dev/sdf", "{volume:?}");
    let (addr, export) = split_nbd_uri(&attachment.nbd_uri);
    assert_eq!(export, token, "same token after the restart: {volume:?}");
    assert_eq!(addr.port(), server.nbd_addr.port(), "{volume:?}");

    let host = server.describe_host(instance_id);
    assert_eq!(host.instance_id, instance_id, "{host:?}");
    assert_eq!(host.state, "running", "{host:?}");
    assert!(
        host.attachments.iter().any(|a| a.volume_id == volume_id),
        "the host lists its attachment: {host:?}"
    );
    attachment.nbd_uri.clone()
}

#[test]
fn kill_9_keeps_the_catalog_and_every_acknowledged_flush() {
    if !require_tools(&["qemu-io", "stdbuf"]) {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (volume, instance, uri) = server.attach_new_volume(1);
    let (_, token) = split_nbd_uri(&uri);

    // One process writes and closes (qemu-io flushes on close).
    qemu_io(&uri, &["write -P 0x11 0 1M", "write -P 0x12 100M 64k"]);

    // A second one writes, flushes, writes with FUA, and stays connected while the server dies.
    let (session, mut lines, _) = spawn_qemu_io(
        &uri,
        &[
            "write -P 0x22 2M 64k",
            "flush",
            "write -f -P 0x33 3M 64k",
            "read -P 0x22 2M 64k",
            "sleep 600000",
        ],
        false,
    );
    let last = lines.wait_for_any(
        &["read 65536/65536 bytes at offset 2097152", "failed"],
        TOOL_TIMEOUT,
    );
    assert!(last.starts_with("read "), "{}", lines.seen());
    assert_eq!(
        lines.seen().matches("wrote 65536/65536").count(),
        2,
        "{}",
        lines.seen()
    );
    assert!(!lines.seen().contains("failed"), "{}", lines.seen());

    server.kill9();
    drop(session);

    let server = Server::start(dir.path());
    let uri = assert_same_catalog(&server, &volume, &instance, &token);
    qemu_io(
        &uri,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x12 100M 64k",
            "read -P 0x22 2M 64k",
            "read -P 0x33 3M 64k",
            "read -P 0 1M 1M",
        ],
    );

    // The restarted server keeps serving writes, and a second crash keeps them too.
    qemu_io(&uri, &["write -f -P 0x44 4M 4k"]);
    server.kill9();
    let server = Server::start(dir.path());
    let uri = assert_same_catalog(&server, &volume, &instance, &token);
    qemu_io(&uri, &["read -P 0x44 4M 4k", "read -P 0x11 0 1M"]);
    server.stop();
}

#[test]
fn sigint_and_sigterm_stop_cleanly_and_restart_the_same() {
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (volume, instance, uri) = server.attach_new_volume(1);
    let (_, token) = split_nbd_uri(&uri);
    let other = server.create_volume(2);
    server.stop_with("INT");

    let server = Server::start(dir.path());
    assert_same_catalog(&server, &volume, &instance, &token);
    let other_after = server.describe_volume(&other.volume_id);
    assert!(
        matches!(other_after.state.as_str(), "available" | "creating"),
        "{other_after:?}"
    );
    assert_eq!(other_after.size, 2, "{other_after:?}");
    assert!(other_after.attachments.is_empty(), "{other_after:?}");
    server.stop_with("TERM");

    // A second clean restart changes nothing either.
    let server = Server::start(dir.path());
    assert_same_catalog(&server, &volume, &instance, &token);
    server.stop();
}

#[test]
fn a_data_dir_is_not_shared_between_servers() {
    // Two servers on two temp dirs know nothing of each other's volumes.
    let (a_dir, b_dir) = (tempdir(), tempdir());
    let a = Server::start(a_dir.path());
    let b = Server::start(b_dir.path());
    let volume = a.create_volume(1);
    let mut client = b.client();
    let status = b
        .block_on(
            client.describe_volumes(proto::ebs::v1::DescribeVolumesRequest {
                volume_ids: vec![volume.volume_id.clone()],
                ..Default::default()
            }),
        )
        .expect_err("server b must not know a's volume");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(
        ec2_code(&status).as_deref(),
        Some("InvalidVolume.NotFound"),
        "{status:?}"
    );
    a.stop();
    b.stop();
}
