//! gRPC block I/O against a real server: the same data as NBD sees (qemu-io reads what gRPC
//! wrote and the reverse), trim and zeroing, and the errors a client can match on.

mod common;

use common::*;
use proto::ebs::v1 as pb;

fn token(uri: &str) -> String {
    uri.rsplit('/').next().unwrap().to_string()
}

#[test]
fn grpc_and_nbd_see_the_same_blocks() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let (volume_id, _, uri) = srv.attach_new_volume(1);
    let tok = token(&uri);
    let mut c = srv.client();
    let chunks = vec![
        pb::WriteBlocksRequest {
            attachment_token: tok.clone(),
            offset: 0,
            data: vec![0xab; 64 << 10],
            fua: false,
        },
        pb::WriteBlocksRequest {
            attachment_token: String::new(),
            offset: 1 << 20,
            data: vec![0xcd; 4096],
            fua: true,
        },
    ];
    let written = srv.ok(
        "WriteBlocks",
        srv.block_on(c.write_blocks(futures::stream::iter(chunks))),
    );
    assert_eq!(written.bytes_written, (64 << 10) + 4096);
    srv.ok(
        "FlushBlocks",
        srv.block_on(c.flush_blocks(pb::FlushBlocksRequest {
            attachment_token: tok.clone(),
        })),
    );
    assert_qemu_io_ok(&qemu_io(
        &uri,
        &["read -P 0xab 0 64k", "read -P 0xcd 1M 4k"],
    ));

    assert_qemu_io_ok(&qemu_io(&uri, &["write -P 0xef 2M 8k", "flush"]));
    let read = |offset: u64, length: u32| {
        let mut c = srv.client();
        srv.block_on(c.read_blocks(pb::ReadBlocksRequest {
            attachment_token: tok.clone(),
            offset,
            length,
        }))
    };
    assert_eq!(
        srv.ok("ReadBlocks", read(2 << 20, 8192)).data,
        vec![0xef; 8192]
    );

    srv.ok(
        "TrimBlocks",
        srv.block_on(c.trim_blocks(pb::TrimBlocksRequest {
            attachment_token: tok.clone(),
            offset: 0,
            length: 64 << 10,
            fua: false,
        })),
    );
    assert_eq!(srv.ok("ReadBlocks", read(0, 4096)).data, vec![0; 4096]);
    srv.ok(
        "WriteZeroBlocks",
        srv.block_on(c.write_zero_blocks(pb::WriteZeroBlocksRequest {
            attachment_token: tok.clone(),
            offset: 2 << 20,
            length: 8192,
            no_hole: true,
            fua: true,
        })),
    );
    assert_qemu_io_ok(&qemu_io(&uri, &["read -P 0 2M 8k"]));

    // Errors clients can match on.
    let err = read(1, 512).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = read(1 << 30, 4096).unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    let err = read(0, (32 << 20) + 512).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    srv.detach(&volume_id);
    let err = read(0, 4096).unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert_eq!(
        ec2_code(&err).as_deref(),
        Some("InvalidAttachment.NotFound")
    );
}
