//! The NBD handshake: option negotiation, fed arbitrary client bytes over a loopback
//! connection, with one export (`fuzz`) registered; each input runs twice, with TLS off and with
//! TLS required.
//!
//! Besides "no panic, no hang": the server's bytes are its greeting, then well-framed option
//! replies, then (after `NBD_OPT_EXPORT_NAME` only) the export's size and flags; a successful
//! negotiation names the one export with consistent flags. With TLS required, no plaintext
//! client ever gets a session, and every option but `STARTTLS` and `ABORT` is refused with
//! `NBD_REP_ERR_TLS_REQD`.

#![no_main]

use std::sync::Arc;

use ebs_fuzz::{Harness, Outcome, VOLUME_SIZE, harness};
use libfuzzer_sys::fuzz_target;
use volume_server::nbd::handshake::transmission_flags;
use volume_server::nbd::wire::*;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks the framing of the server's bytes; returns the `(option, reply type)` of each option
/// reply, up to a `STARTTLS` acknowledgement (after which the bytes are TLS records).
fn check(h: &Harness, outcome: &Outcome, replies: &[u8]) -> Vec<(u32, u32)> {
    let mut greeting = Vec::new();
    greeting.extend_from_slice(&NBDMAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    assert_eq!(
        replies.get(..greeting.len()),
        Some(&greeting[..]),
        "greeting"
    );

    let mut seen = Vec::new();
    let mut rest = &replies[greeting.len()..];
    while rest.len() >= 20 && rest[..8] == OPT_REPLY_MAGIC.to_be_bytes() {
        let (opt, kind, len) = (be32(rest, 8), be32(rest, 12), be32(rest, 16) as usize);
        assert!(rest.len() >= 20 + len, "truncated option reply");
        seen.push((opt, kind));
        rest = &rest[20 + len..];
        if opt == OPT_STARTTLS && kind == REP_ACK {
            return seen;
        }
    }
    if let Ok((neg, _)) = outcome {
        assert!(
            Arc::ptr_eq(&neg.export, &h.export),
            "negotiated another export"
        );
        assert_eq!(neg.flags, transmission_flags(&neg.export, neg.structured));
        assert!(neg.structured || !neg.base_allocation);
    }
    if !rest.is_empty() {
        // Only the reply to NBD_OPT_EXPORT_NAME is not an option reply.
        let (neg, _) = outcome
            .as_ref()
            .expect("unframed bytes from a failed handshake");
        assert!(rest.len() == 10 || rest.len() == 134, "export reply length");
        assert_eq!(rest[..8], VOLUME_SIZE.to_be_bytes());
        assert_eq!(rest[8..10], neg.flags.to_be_bytes());
        assert!(rest[10..].iter().all(|&b| b == 0));
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let h = harness();

    let (outcome, replies) = h.handshake(&h.tls_off, data);
    check(h, &outcome, &replies);
    if let Ok((_, tls)) = outcome {
        assert!(!tls, "TLS without TLS configured");
    }

    let (outcome, replies) = h.handshake(&h.tls_required, data);
    let seen = check(h, &outcome, &replies);
    if let Ok((_, tls)) = outcome {
        assert!(tls, "a plaintext session although TLS is required");
    }
    for (opt, kind) in seen {
        if opt != OPT_STARTTLS && opt != OPT_ABORT {
            assert_eq!(kind, REP_ERR_TLS_REQD, "option {opt} answered before TLS");
        }
    }
});
