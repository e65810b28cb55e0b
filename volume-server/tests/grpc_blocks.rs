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

/// One WriteBlocks stream writes to one attachment: a later message naming another token
/// fails the stream (nothing lands on the other volume), and a stream that fails part way
/// says how many bytes it wrote before the failure.
#[test]
fn a_write_stream_keeps_to_one_attachment_and_reports_what_landed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let (_, _, uri_a) = srv.attach_new_volume(1);
    let (_, _, uri_b) = srv.attach_new_volume(1);
    let (a, b) = (token(&uri_a), token(&uri_b));
    let chunk = |tok: &str, offset: u64, byte: u8| pb::WriteBlocksRequest {
        attachment_token: tok.to_owned(),
        offset,
        data: vec![byte; 4096],
        fua: false,
    };
    let written_of = |status: &tonic::Status| -> u64 {
        status
            .metadata()
            .get(proto::BYTES_WRITTEN_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {} in {status:?}", proto::BYTES_WRITTEN_KEY))
    };
    let mut c = srv.client();
    let read = |tok: &str, offset: u64| {
        let mut c = srv.client();
        srv.ok(
            "ReadBlocks",
            srv.block_on(c.read_blocks(pb::ReadBlocksRequest {
                attachment_token: tok.to_owned(),
                offset,
                length: 4096,
            })),
        )
        .data
    };

    // A second token in the stream: refused, and B never sees the write.
    let mixed = vec![
        chunk(&a, 0, 0x11),
        chunk("", 4096, 0x22),
        chunk(&b, 0, 0x33),
    ];
    let status = srv
        .block_on(c.write_blocks(futures::stream::iter(mixed)))
        .expect_err("a stream naming two attachments");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        ec2_code(&status).as_deref(),
        Some("InvalidParameterCombination")
    );
    assert_eq!(written_of(&status), 8192, "{status:?}");
    assert_eq!(read(&a, 0), vec![0x11; 4096]);
    assert_eq!(read(&a, 4096), vec![0x22; 4096]);
    assert_eq!(
        read(&b, 0),
        vec![0; 4096],
        "the other attachment was written"
    );

    // Out of range on the third message: two messages landed, and the status says so.
    let past = vec![
        chunk(&a, 8192, 0x44),
        chunk("", 12288, 0x55),
        chunk("", 1 << 30, 0x66),
        chunk("", 16384, 0x77),
    ];
    let status = srv
        .block_on(c.write_blocks(futures::stream::iter(past)))
        .expect_err("a write past the end");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert_eq!(written_of(&status), 8192, "{status:?}");
    assert!(status.message().contains("8192 bytes"), "{status:?}");
    assert_eq!(read(&a, 12288), vec![0x55; 4096]);
    assert_eq!(
        read(&a, 16384),
        vec![0; 4096],
        "a message after the failure landed"
    );

    // No token in the first message.
    let status = srv
        .block_on(c.write_blocks(futures::stream::iter(vec![chunk("", 0, 0x88)])))
        .expect_err("no token");
    assert_eq!(ec2_code(&status).as_deref(), Some("MissingParameter"));
}
