//! The EBS direct APIs and fast snapshot restore, against a real server.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use proto::ebs::v1 as pb;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const BLOCK: usize = 512 * 1024;

fn random_block() -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    rand::rng().fill_bytes(&mut b);
    b
}

fn checksum(data: &[u8]) -> String {
    B64.encode(Sha256::digest(data))
}

fn put(server: &Server, id: &str, index: i32, data: &[u8]) -> Result<String, tonic::Status> {
    let mut c = server.client();
    server
        .block_on(c.put_snapshot_block(pb::PutSnapshotBlockRequest {
            snapshot_id: id.into(),
            block_index: index,
            block_data: data.to_vec(),
            data_length: BLOCK as i32,
            checksum: checksum(data),
            checksum_algorithm: "SHA256".into(),
            progress: None,
        }))
        .map(|r| r.into_inner().checksum)
}

fn start(server: &Server, parent: Option<&str>) -> String {
    let mut c = server.client();
    let r = server.ok(
        "StartSnapshot",
        server.block_on(c.start_snapshot(pb::StartSnapshotRequest {
            volume_size: 1,
            parent_snapshot_id: parent.map(str::to_string),
            description: Some("direct".into()),
            ..Default::default()
        })),
    );
    assert_eq!((r.status.as_str(), r.block_size), ("pending", BLOCK as i32));
    r.snapshot_id
}

/// The LINEAR aggregate: SHA-256 over the blocks' SHA-256 digests in ascending index order.
fn aggregate(blocks: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for b in blocks {
        h.update(Sha256::digest(b));
    }
    B64.encode(h.finalize())
}

fn complete(
    server: &Server,
    id: &str,
    count: i32,
    sum: Option<String>,
) -> Result<String, tonic::Status> {
    let mut c = server.client();
    server
        .block_on(c.complete_snapshot(pb::CompleteSnapshotRequest {
            snapshot_id: id.into(),
            changed_blocks_count: count,
            checksum_algorithm: sum.as_ref().map(|_| "SHA256".into()),
            checksum_aggregation_method: sum.as_ref().map(|_| "LINEAR".into()),
            checksum: sum,
        }))
        .map(|r| r.into_inner().status)
}

fn code(r: Result<impl std::fmt::Debug, tonic::Status>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => ec2_code(&s).unwrap_or_else(|| format!("no code: {s:?}")),
    }
}

#[test]
fn direct_apis_write_read_and_diff_snapshots_block_by_block() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    let (b0, b5) = (random_block(), random_block());
    let zeros = vec![0u8; BLOCK];

    let id = start(&server, None);
    put(&server, &id, 0, &b0).unwrap();
    put(&server, &id, 5, &b5).unwrap();
    put(&server, &id, 7, &zeros).unwrap();
    // A wrong checksum, a short block and an index past the 1 GiB end are refused.
    let mut c = server.client();
    let bad = server.block_on(c.put_snapshot_block(pb::PutSnapshotBlockRequest {
        snapshot_id: id.clone(),
        block_index: 1,
        block_data: b0.clone(),
        data_length: BLOCK as i32,
        checksum: checksum(&b5),
        checksum_algorithm: "SHA256".into(),
        progress: None,
    }));
    assert_eq!(code(bad), "ValidationException");
    assert_eq!(code(put(&server, &id, 2048, &b0)), "ValidationException");
    assert_eq!(code(complete(&server, &id, 2, None)), "ValidationException");
    assert_eq!(
        code(complete(
            &server,
            &id,
            3,
            Some(aggregate(&[&b5, &b0, &zeros]))
        )),
        "ValidationException",
        "the aggregate is over ascending block order"
    );
    assert_eq!(
        complete(&server, &id, 3, Some(aggregate(&[&b0, &b5, &zeros]))).unwrap(),
        "completed"
    );
    assert_eq!(code(put(&server, &id, 1, &b0)), "ValidationException");

    // The completed snapshot lists its non-zero blocks, and each reads back verified.
    let list = server.ok(
        "ListSnapshotBlocks",
        server.block_on(c.list_snapshot_blocks(pb::ListSnapshotBlocksRequest {
            snapshot_id: id.clone(),
            ..Default::default()
        })),
    );
    let indexes: Vec<i32> = list.blocks.iter().map(|b| b.block_index).collect();
    assert_eq!(indexes, vec![0, 5]);
    assert_eq!((list.volume_size, list.block_size), (1, BLOCK as i32));
    for (blk, want) in list.blocks.iter().zip([&b0, &b5]) {
        let got = server.ok(
            "GetSnapshotBlock",
            server.block_on(c.get_snapshot_block(pb::GetSnapshotBlockRequest {
                snapshot_id: id.clone(),
                block_index: blk.block_index,
                block_token: blk.block_token.clone(),
            })),
        );
        assert_eq!(&got.block_data, want);
        assert_eq!(got.checksum, checksum(want));
    }
    // A token is only good for the block it was listed for.
    let wrong = server.block_on(c.get_snapshot_block(pb::GetSnapshotBlockRequest {
        snapshot_id: id.clone(),
        block_index: 5,
        block_token: list.blocks[0].block_token.clone(),
    }));
    assert_eq!(code(wrong), "ValidationException");

    // An incremental child changes block 5 and zeroes block 0.
    let child = start(&server, Some(&id));
    let b5b = random_block();
    put(&server, &child, 5, &b5b).unwrap();
    put(&server, &child, 0, &zeros).unwrap();
    assert_eq!(complete(&server, &child, 2, None).unwrap(), "completed");
    let diff = server.ok(
        "ListChangedBlocks",
        server.block_on(c.list_changed_blocks(pb::ListChangedBlocksRequest {
            first_snapshot_id: Some(id.clone()),
            second_snapshot_id: child.clone(),
            ..Default::default()
        })),
    );
    let changed: Vec<(i32, bool, bool)> = diff
        .changed_blocks
        .iter()
        .map(|b| {
            (
                b.block_index,
                b.first_block_token.is_some(),
                b.second_block_token.is_some(),
            )
        })
        .collect();
    assert_eq!(changed, vec![(0, true, false), (5, true, true)]);

    // Paging: 300 blocks, 100 per page, with the token carrying on where the last page ended.
    let big = start(&server, None);
    for i in 0..300 {
        let mut b = vec![0u8; BLOCK];
        b[..4].copy_from_slice(&(i as u32 + 1).to_le_bytes());
        put(&server, &big, i, &b).unwrap();
    }
    complete(&server, &big, 300, None).unwrap();
    let mut seen = vec![];
    let mut token = None;
    loop {
        let page = server.ok(
            "ListSnapshotBlocks",
            server.block_on(c.list_snapshot_blocks(pb::ListSnapshotBlocksRequest {
                snapshot_id: big.clone(),
                max_results: Some(100),
                next_token: token.clone(),
                ..Default::default()
            })),
        );
        assert!(page.blocks.len() <= 100);
        seen.extend(page.blocks.iter().map(|b| b.block_index));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, (0..300).collect::<Vec<_>>());

    // A volume restored from the child reads the composed content; DescribeSnapshots shows it.
    let vol = server.ok(
        "CreateVolume",
        server.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            snapshot_id: Some(child.clone()),
            ..Default::default()
        })),
    );
    let host = server.register_host("reader");
    let uri = server.attach(&vol.volume_id, &host.instance_id).nbd_uri;
    if require_tool("qemu-img") {
        let img = dir.path().join("restored.img");
        run_tool(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "raw",
                &uri,
                img.to_str().unwrap(),
            ],
        )
        .assert_success();
        let bytes = std::fs::read(&img).unwrap();
        assert!(
            bytes[..BLOCK].iter().all(|&b| b == 0),
            "block 0 was zeroed by the child"
        );
        assert_eq!(&bytes[5 * BLOCK..6 * BLOCK], &b5b[..]);
    }
    let described = server.ok(
        "DescribeSnapshots",
        server.block_on(c.describe_snapshots(pb::DescribeSnapshotsRequest {
            snapshot_ids: vec![child.clone()],
            ..Default::default()
        })),
    );
    assert_eq!(described.snapshots[0].volume_id, "vol-ffffffff");
    assert_eq!(described.snapshots[0].state, "completed");
    assert_eq!(
        code(
            server.block_on(c.list_snapshot_blocks(pb::ListSnapshotBlocksRequest {
                snapshot_id: "snap-0123456789abcdef0".into(),
                ..Default::default()
            }))
        ),
        "ResourceNotFoundException"
    );
}

fn snapshot_with_data(server: &Server, uri: &str, volume_id: &str) -> String {
    qemu_io(uri, &["write -P 0x3c 0 3M", "write -P 0x5d 600M 1M"]);
    server.snapshot_completed(volume_id)
}

fn restore(server: &Server, snap: &str, az: &str) -> pb::Volume {
    let mut c = server.client();
    server.ok(
        "CreateVolume",
        server.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: az.into(),
            snapshot_id: Some(snap.into()),
            ..Default::default()
        })),
    )
}

fn fsr(
    server: &Server,
    enable: bool,
    snap: &str,
    zones: &[&str],
) -> pb::FastSnapshotRestoresResult {
    let mut c = server.client();
    let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
    let ids = vec![snap.to_string()];
    let r = if enable {
        server.block_on(
            c.enable_fast_snapshot_restores(pb::EnableFastSnapshotRestoresRequest {
                availability_zones: zones,
                source_snapshot_ids: ids,
            }),
        )
    } else {
        server.block_on(
            c.disable_fast_snapshot_restores(pb::DisableFastSnapshotRestoresRequest {
                availability_zones: zones,
                source_snapshot_ids: ids,
            }),
        )
    };
    server.ok("FastSnapshotRestores", r)
}

#[test]
fn fast_snapshot_restore_initializes_volumes_while_credits_last() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One emulated hour per 100 ms: a 1 GiB snapshot earns 10 credits per 100 ms (bucket 10).
    let server = Server::start_with_args(
        dir.path(),
        &[
            "--snapshot-min-interval",
            "0s",
            "--fsr-time-scale",
            "36000",
            "--default-initialization-rate",
            "1",
        ],
    );
    let (vol, _, uri) = server.attach_new_volume(1);
    let snap = snapshot_with_data(&server, &uri, &vol);

    let r = fsr(&server, true, &snap, &["us-east-1b", "us-east-9z"]);
    assert_eq!(r.successful.len(), 1, "{r:?}");
    assert_eq!(r.unsuccessful.len(), 1, "{r:?}");
    assert_eq!(r.unsuccessful[0].availability_zone, "us-east-9z");
    std::thread::sleep(Duration::from_millis(300));
    let mut c = server.client();
    let described = server.ok(
        "DescribeFastSnapshotRestores",
        server.block_on(c.describe_fast_snapshot_restores(
            pb::DescribeFastSnapshotRestoresRequest {
                filters: vec![pb::Filter {
                    name: "snapshot-id".into(),
                    values: vec![snap.clone()],
                }],
                ..Default::default()
            },
        )),
    );
    assert_eq!(described.fast_snapshot_restores.len(), 1);
    assert_eq!(described.fast_snapshot_restores[0].state, "enabled");

    // In the FSR zone: fully initialized at once; elsewhere: lazy (1 MiB/s background).
    let fast = restore(&server, &snap, "us-east-1b");
    assert!(fast.fast_restored, "{fast:?}");
    assert_eq!(fast.initialization_progress, None, "{fast:?}");
    let lazy = restore(&server, &snap, "us-east-1c");
    assert!(!lazy.fast_restored, "{lazy:?}");
    assert!(
        lazy.initialization_progress.is_some_and(|p| p < 100),
        "{lazy:?}"
    );

    // Both read the snapshot's bytes.
    let host_b = {
        let mut c = server.client();
        server.ok(
            "RegisterHost",
            server.block_on(c.register_host(pb::RegisterHostRequest {
                name: "b".into(),
                availability_zone: "us-east-1b".into(),
                ..Default::default()
            })),
        )
    };
    let furi = server.attach(&fast.volume_id, &host_b.instance_id).nbd_uri;
    qemu_io(
        &furi,
        &[
            "read -P 0x3c 0 3M",
            "read -P 0x5d 600M 1M",
            "read -P 0 3M 1M",
        ],
    );

    // Disabled: back to lazy restores.
    let r = fsr(&server, false, &snap, &["us-east-1b"]);
    assert_eq!(r.successful[0].state, "disabled", "{r:?}");
    let after = restore(&server, &snap, "us-east-1b");
    assert!(!after.fast_restored, "{after:?}");
}

#[test]
fn fast_snapshot_restore_without_a_credit_restores_lazily() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // One emulated hour per 100 s: 10 credits/hour is one credit every 10 s.
    let server = Server::start_with_args(
        dir.path(),
        &["--snapshot-min-interval", "0s", "--fsr-time-scale", "36"],
    );
    let (vol, _, uri) = server.attach_new_volume(1);
    let snap = snapshot_with_data(&server, &uri, &vol);
    fsr(&server, true, &snap, &["us-east-1b"]);
    // The bucket starts empty.
    let first = restore(&server, &snap, "us-east-1b");
    assert!(!first.fast_restored, "{first:?}");
}
