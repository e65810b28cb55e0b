//! Seed inputs: small valid ones that reach deep into each parser. `gen_corpus` writes them to
//! `corpus/<target>/`, next to byte streams captured from real NBD clients.

use std::collections::BTreeMap;

use snapshot::block::{self, BLOCK_SIZE, BlockKey};
use snapshot::manifest::Manifest;
use volume_server::nbd::wire::*;

use crate::{BLOCK_FIX_CRCS, BLOCK_NOISE, BLOCK_ROUND_TRIP, EXPORT_NAME, MODE_BASE_ALLOCATION};
use crate::{MODE_STRUCTURED, plaintext_from};

/// A named seed.
pub type Seed = (&'static str, Vec<u8>);

/// Builds what a client sends during the handshake.
#[derive(Debug, Default)]
pub struct ClientHello(Vec<u8>);

impl ClientHello {
    /// Starts with the client flags.
    pub fn new(flags: u32) -> ClientHello {
        ClientHello(flags.to_be_bytes().to_vec())
    }

    /// Appends one option.
    pub fn option(mut self, opt: u32, data: &[u8]) -> ClientHello {
        self.0.extend_from_slice(&IHAVEOPT.to_be_bytes());
        self.0.extend_from_slice(&opt.to_be_bytes());
        self.0.extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.0.extend_from_slice(data);
        self
    }

    /// The bytes.
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// `OPT_INFO`/`OPT_GO` data.
pub fn info_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

/// `OPT_{LIST,SET}_META_CONTEXT` data.
pub fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

/// Option 11, which newer clients try first; we answer it `ERR_UNSUP`.
const OPT_EXTENDED_HEADERS: u32 = 11;

/// Client handshakes, each ending where the transmission phase would start.
pub fn handshakes() -> Vec<Seed> {
    let both = C_FIXED_NEWSTYLE | C_NO_ZEROES;
    vec![
        (
            "go_structured_meta",
            ClientHello::new(both)
                .option(OPT_EXTENDED_HEADERS, &[])
                .option(OPT_STRUCTURED_REPLY, &[])
                .option(
                    OPT_SET_META_CONTEXT,
                    &meta_data(EXPORT_NAME, &[META_BASE_ALLOCATION]),
                )
                .option(OPT_GO, &info_data(EXPORT_NAME, &[INFO_BLOCK_SIZE]))
                .bytes(),
        ),
        (
            "go_simple",
            ClientHello::new(both)
                .option(OPT_GO, &info_data(EXPORT_NAME, &[]))
                .bytes(),
        ),
        (
            "export_name_with_zeroes",
            ClientHello::new(C_FIXED_NEWSTYLE)
                .option(OPT_EXPORT_NAME, EXPORT_NAME.as_bytes())
                .bytes(),
        ),
        (
            "export_name_not_fixed",
            ClientHello::new(0)
                .option(OPT_EXPORT_NAME, EXPORT_NAME.as_bytes())
                .bytes(),
        ),
        (
            "list_info_unknown_then_go",
            ClientHello::new(both)
                .option(OPT_LIST, &[])
                .option(OPT_INFO, &info_data("nope", &[]))
                .option(
                    OPT_INFO,
                    &info_data(EXPORT_NAME, &[INFO_EXPORT, INFO_BLOCK_SIZE]),
                )
                .option(OPT_STARTTLS, &[])
                .option(OPT_STRUCTURED_REPLY, &[])
                .option(
                    OPT_LIST_META_CONTEXT,
                    &meta_data(EXPORT_NAME, &["base:", "qemu:dirty-bitmap:x"]),
                )
                .option(OPT_LIST_META_CONTEXT, &meta_data(EXPORT_NAME, &[]))
                .option(OPT_GO, &info_data(EXPORT_NAME, &[]))
                .bytes(),
        ),
        (
            // With TLS required: refused options, then the upgrade and the start of a
            // (truncated) TLS ClientHello record.
            "starttls",
            {
                let mut b = ClientHello::new(both)
                    .option(OPT_GO, &info_data(EXPORT_NAME, &[]))
                    .option(OPT_STARTTLS, &[])
                    .bytes();
                b.extend_from_slice(&[
                    0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03,
                ]);
                b
            },
        ),
        (
            "abort",
            ClientHello::new(both).option(OPT_ABORT, &[]).bytes(),
        ),
        (
            "meta_before_structured_then_export_name",
            ClientHello::new(both)
                .option(
                    OPT_SET_META_CONTEXT,
                    &meta_data(EXPORT_NAME, &[META_BASE_ALLOCATION]),
                )
                .option(OPT_STRUCTURED_REPLY, &[1])
                .option(OPT_EXPORT_NAME, EXPORT_NAME.as_bytes())
                .bytes(),
        ),
    ]
}

fn request(flags: u16, cmd: u16, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    encode_request(&Request {
        flags,
        cmd,
        cookie,
        offset,
        len,
    })
    .to_vec()
}

/// Transmission phases: a mode byte ([`crate::session_mode`]) then requests.
pub fn requests() -> Vec<Seed> {
    let full = MODE_STRUCTURED | MODE_BASE_ALLOCATION;
    let mut every_command = vec![full];
    every_command.extend(request(0, CMD_WRITE, 1, 4096, 512));
    every_command.extend((0..512).map(|i| i as u8));
    every_command.extend(request(CMD_FLAG_FUA, CMD_WRITE, 2, 0, 512));
    every_command.extend([0xab; 512]);
    every_command.extend(request(0, CMD_READ, 3, 0, 8192));
    every_command.extend(request(CMD_FLAG_DF, CMD_READ, 4, 4096, 512));
    every_command.extend(request(0, CMD_FLUSH, 5, 0, 0));
    every_command.extend(request(CMD_FLAG_FUA, CMD_TRIM, 6, 65536, 65536));
    every_command.extend(request(0, CMD_WRITE_ZEROES, 7, 131072, 4096));
    every_command.extend(request(
        CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
        CMD_WRITE_ZEROES,
        8,
        0,
        4096,
    ));
    every_command.extend(request(0, CMD_CACHE, 9, 0, 65536));
    every_command.extend(request(0, CMD_BLOCK_STATUS, 10, 0, 1 << 20));
    every_command.extend(request(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 11, 0, 4096));
    every_command.extend(request(0, CMD_DISC, 12, 0, 0));

    let mut simple = vec![0];
    simple.extend(request(0, CMD_WRITE, 1, 0, 512));
    simple.extend([0x5a; 512]);
    simple.extend(request(0, CMD_READ, 2, 0, 512));
    simple.extend(request(0, CMD_BLOCK_STATUS, 3, 0, 512));
    simple.extend(request(0, CMD_FLUSH, 4, 0, 0));

    let mut bad_input = vec![MODE_STRUCTURED];
    // Past the end, unaligned, too large, unknown command, bad flags, wrapping offset.
    bad_input.extend(request(0, CMD_READ, 1, 1 << 20, 512));
    bad_input.extend(request(0, CMD_READ, 2, 1, 3));
    bad_input.extend(request(0, CMD_READ, 3, 0, 64 << 20));
    bad_input.extend(request(0, 99, 4, 0, 512));
    bad_input.extend(request(0x8000, CMD_FLUSH, 5, 0, 0));
    bad_input.extend(request(0, CMD_WRITE, 6, u64::MAX - 511, 512));
    bad_input.extend([0; 512]);

    // A hard disconnect with I/O in flight.
    let mut bad_magic = vec![0];
    bad_magic.extend(request(0, CMD_READ, 1, 0, 65536));
    bad_magic.extend([0xff; 28]);

    let mut oversized_write = vec![full];
    oversized_write.extend(request(0, CMD_WRITE, 1, 0, (32 << 20) + 1));
    oversized_write.extend([0; 64]);

    vec![
        ("every_command", every_command),
        ("simple_replies", simple),
        ("bad_requests", bad_input),
        ("bad_magic", bad_magic),
        ("oversized_write", oversized_write),
    ]
}

fn sample_manifest() -> Manifest {
    Manifest {
        snapshot_id: "snap-0123456789abcdef0".into(),
        volume_id: "vol-0123456789abcdef0".into(),
        parent_id: Some("snap-00000000000000001".into()),
        owner_id: "111122223333".into(),
        kms_key_id: None,
        volume_size: 8 << 30,
        start_ms: 1_700_000_000_000,
        complete_ms: 1_700_000_000_500,
        blocks: [
            (0, BlockKey::of(b"a")),
            (1, BlockKey::of(b"b")),
            (7, BlockKey::of(b"c")),
            (16383, BlockKey::of(b"d")),
        ]
        .into_iter()
        .collect(),
    }
}

/// Encoded manifests; the `*_body` ones lack their CRC (the target appends one).
pub fn manifests() -> Vec<Seed> {
    let full = sample_manifest();
    let root = Manifest {
        snapshot_id: "snap-00000000000000001".into(),
        parent_id: None,
        volume_size: 3 * BLOCK_SIZE - 512,
        blocks: BTreeMap::from([(2, BlockKey::of(b"tail"))]),
        ..full.clone()
    };
    let empty = Manifest {
        blocks: BTreeMap::new(),
        volume_size: 0,
        ..root.clone()
    };
    let body = |m: &Manifest| {
        let mut b = m.encode();
        b.truncate(b.len() - 4);
        b
    };
    // Version 1: version 2's layout without the owner string (byte 10 of the header is the
    // version; the owner's empty length byte sits right before the entries).
    let version_1 = {
        let ownerless = Manifest {
            owner_id: String::new(),
            kms_key_id: None,
            ..root.clone()
        };
        let mut b = body(&ownerless);
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        b.remove(b.len() - 40 * ownerless.blocks.len() - 1);
        b
    };
    vec![
        ("incremental", full.encode()),
        ("root", root.encode()),
        ("empty", empty.encode()),
        ("incremental_body", body(&full)),
        ("root_body", body(&root)),
        ("version_1_body", version_1),
    ]
}

/// `snapshot_block` inputs: mode byte, 32-byte key, stored bytes (see [`crate::BlockInput`]).
pub fn blocks() -> Vec<Seed> {
    let input = |mode: u8, key: &BlockKey, stored: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(&key.0);
        v.extend_from_slice(stored);
        v
    };
    // Real stored blocks (zstd: a raw one would be 512 KiB), under their right keys.
    let pattern = plaintext_from(b"EBS snapshot block 0123456789", false);
    let sparse = {
        let mut p = vec![0u8; BLOCK_SIZE as usize];
        p[4096..4096 + 11].copy_from_slice(b"hello block");
        p
    };
    let mut seeds = Vec::new();
    for (name, plain) in [("pattern", pattern), ("mostly_zero", sparse)] {
        let key = BlockKey::of(&plain);
        let stored = block::encode(&plain);
        let name_fix = if name == "pattern" {
            "pattern_fix_crcs"
        } else {
            "mostly_zero_fix_crcs"
        };
        seeds.push((name, input(0, &key, &stored)));
        seeds.push((name_fix, input(BLOCK_FIX_CRCS, &key, &stored)));
    }
    let zero_key = BlockKey([0; 32]);
    seeds.push((
        "round_trip_tiled",
        input(BLOCK_ROUND_TRIP, &zero_key, b"tile me 0123456789abcdef"),
    ));
    seeds.push((
        "round_trip_noise",
        input(
            BLOCK_ROUND_TRIP | BLOCK_NOISE,
            &zero_key,
            b"noise seed 0123456789",
        ),
    ));
    seeds
}
