//! The NBD transmission phase: request decoding, command and flag checks, the data path on a
//! real 1 MiB volume, and reply encoding, over a loopback TCP connection.
//!
//! Input: a mode byte (structured replies / `base:allocation`, see `ebs_fuzz::session_mode`),
//! then everything the client sends after the handshake. Besides "no panic, no hang", the
//! replies are checked against a model of what was sent: every reply is well framed, answers a
//! request that was sent, and, when the stream holds no protocol violation, every request but
//! `NBD_CMD_DISC` (and a write announced past [`SKIP_MAX`], which closes the session) gets
//! exactly one reply.

#![no_main]

use std::collections::HashMap;

use ebs_fuzz::{VOLUME_SIZE, harness, session_mode};
use libfuzzer_sys::fuzz_target;
use volume_server::nbd::session::SKIP_MAX;
use volume_server::nbd::wire::*;

/// What the server should have read.
struct Model {
    /// Requests that must be answered, by cookie.
    pending: HashMap<u64, Request>,
    /// Every request was read and the server read the whole stream: every one is answered.
    complete: bool,
}

/// Walks the requests in `input` as the server reads them, giving each a unique cookie (its
/// number) so every reply names the one request it answers.
fn model(input: &mut [u8]) -> Model {
    let mut pending = HashMap::new();
    let mut at = 0;
    let complete = loop {
        let Some(header) = input.get_mut(at..at + REQUEST_LEN) else {
            // A partial header at the end is read, then the client hangs up.
            break true;
        };
        let bytes: [u8; REQUEST_LEN] = (&*header).try_into().expect("28 bytes");
        let Some(mut req) = decode_request(&bytes) else {
            // Bad magic: a hard disconnect; replies not yet sent are dropped.
            break false;
        };
        req.cookie = pending.len() as u64;
        header[8..16].copy_from_slice(&req.cookie.to_be_bytes());
        at += REQUEST_LEN;
        let rest = input.len() - at;
        if req.cmd == CMD_DISC {
            // The session stops reading; unread bytes may make the close a reset.
            break rest == 0;
        }
        if req.cmd == CMD_WRITE {
            let len = req.len as usize;
            if req.len > SKIP_MAX {
                // Far past the maximum: the session hangs up without reading the payload;
                // unread bytes may make the close a reset.
                break rest == 0;
            }
            if rest < len {
                // A partial payload is never dispatched, nor (oversized) answered.
                break true;
            }
            // An oversized payload is read and discarded, then answered EINVAL.
            at += len;
        }
        pending.insert(req.cookie, req);
    };
    Model { pending, complete }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

const ERRNOS: [u32; 8] = [
    EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN,
];

/// Walks the replies, checking each against the request it answers.
fn check(structured: bool, mut m: Model, mut out: &[u8]) {
    let mut answered = 0usize;
    let expected = m.pending.len();
    while !out.is_empty() {
        if out.len() < 16 {
            assert!(!m.complete, "truncated reply header: {out:02x?}");
            return;
        }
        let magic = be32(out, 0);
        let simple = magic == SIMPLE_REPLY_MAGIC;
        assert!(
            simple || (structured && magic == STRUCTURED_REPLY_MAGIC),
            "bad reply magic {magic:#x} (structured: {structured})"
        );
        let cookie = be64(out, 8);
        let req = m
            .pending
            .remove(&cookie)
            .unwrap_or_else(|| panic!("reply to cookie {cookie:#x}, never sent or answered"));
        answered += 1;
        let len = if simple {
            let error = be32(out, 4);
            assert!(
                error == 0 || ERRNOS.contains(&error),
                "errno {error} not allowed by the spec"
            );
            if error == 0 && req.cmd == CMD_READ {
                assert!(!structured, "structured read data in a simple reply");
                16 + req.len as usize
            } else {
                16
            }
        } else {
            if out.len() < 20 {
                assert!(!m.complete, "truncated chunk header");
                return;
            }
            let (flags, kind, len) = (be16(out, 4), be16(out, 6), be32(out, 16) as usize);
            assert_eq!(flags, REPLY_FLAG_DONE, "one chunk per reply");
            let Some(payload) = out.get(20..20 + len) else {
                assert!(!m.complete, "truncated chunk payload");
                return;
            };
            match kind {
                REPLY_TYPE_OFFSET_DATA => {
                    assert_eq!(req.cmd, CMD_READ);
                    assert_eq!(be64(payload, 0), req.offset, "data chunk offset");
                    assert_eq!(len - 8, req.len as usize, "data chunk length");
                    assert!(req.offset.saturating_add(u64::from(req.len)) <= VOLUME_SIZE);
                }
                REPLY_TYPE_BLOCK_STATUS => {
                    assert_eq!(req.cmd, CMD_BLOCK_STATUS);
                    assert!(len >= 12 && (len - 4) % 8 == 0, "block status length {len}");
                    assert_eq!(be32(payload, 0), META_BASE_ALLOCATION_ID);
                    let extents = (len - 4) / 8;
                    if req.flags & CMD_FLAG_REQ_ONE != 0 {
                        assert_eq!(extents, 1, "REQ_ONE");
                    }
                    let mut total = 0u64;
                    for e in payload[4..].chunks_exact(8) {
                        assert_ne!(be32(e, 0), 0, "empty extent");
                        total += u64::from(be32(e, 0));
                    }
                    assert!(
                        req.offset.saturating_add(total) <= VOLUME_SIZE,
                        "extents past the end"
                    );
                }
                REPLY_TYPE_ERROR => {
                    assert!(len >= 6, "error chunk length");
                    assert!(ERRNOS.contains(&be32(payload, 0)), "errno not allowed");
                    assert_eq!(usize::from(be16(payload, 4)), len - 6, "message length");
                }
                other => panic!("unexpected chunk type {other}"),
            }
            20 + len
        };
        if out.len() < len {
            assert!(!m.complete, "truncated read data");
            return;
        }
        out = &out[len..];
    }
    if m.complete {
        assert_eq!(answered, expected, "every request gets one reply");
    }
}

fuzz_target!(|data: &[u8]| {
    // The header decoder on its own: it decodes exactly what encodes back to the same bytes.
    if let Some(h) = data.get(1..1 + REQUEST_LEN) {
        let h: &[u8; REQUEST_LEN] = h.try_into().expect("28 bytes");
        match decode_request(h) {
            Some(r) => assert_eq!(&encode_request(&r), h),
            None => assert_ne!(h[..4], REQUEST_MAGIC.to_be_bytes()),
        }
    }
    let (structured, base_allocation) = session_mode(data.first().copied().unwrap_or(0));
    let mut client = data.get(1..).unwrap_or_default().to_vec();
    let model = model(&mut client);
    let replies = harness().session(structured, base_allocation, &client);
    check(structured, model, &replies);
});
