//! `snapshot::block::decode` under an arbitrary key, and the block round trip.
//!
//! Input (`ebs_fuzz::BlockInput`): a mode byte, a 32-byte key, the stored bytes. With
//! `BLOCK_FIX_CRCS` the stored bytes' checksums are made valid first, so mutations reach the
//! codec (zstd) and the length checks. With `BLOCK_ROUND_TRIP` a 512 KiB plaintext is built from
//! the stored bytes (repeated, or noise with `BLOCK_NOISE`) and must survive
//! `decode(key_of(x), encode(x)) == x`, plain and sealed (an encrypted snapshot's block, under
//! a fixed [`BlockSeal`]). Every input is also opened under that seal: a sealed block must only
//! ever decode to the plaintext its HMAC address names.

#![no_main]

use ebs_fuzz::plaintext_from;
use ebs_fuzz::{BLOCK_FIX_CRCS, BLOCK_NOISE, BLOCK_ROUND_TRIP, BlockInput, fix_block_crcs};
use libfuzzer_sys::fuzz_target;
use snapshot::block::{self, BLOCK_SIZE, BlockKey, BlockSeal};

fuzz_target!(|data: &[u8]| {
    let input = BlockInput::parse(data);
    let mut stored = input.stored.to_vec();
    if input.mode & BLOCK_FIX_CRCS != 0 {
        fix_block_crcs(&mut stored);
    }
    if let Ok(plain) = block::decode(&input.key, &stored) {
        assert_eq!(plain.len() as u64, BLOCK_SIZE);
        assert_eq!(BlockKey::of(&plain), input.key);
    }
    let seal = BlockSeal::new("arn:aws:kms:us-east-1:000000000000:key/fuzz", &[7; 32]);
    if let Ok(plain) = block::decode_with(Some(&seal), &input.key, &stored) {
        assert_eq!(plain.len() as u64, BLOCK_SIZE);
        assert_eq!(block::key_of(Some(&seal), &plain), input.key);
    }

    if input.mode & BLOCK_ROUND_TRIP != 0 {
        let x = plaintext_from(input.stored, input.mode & BLOCK_NOISE != 0);
        let encoded = block::encode(&x);
        assert!(encoded.len() <= x.len() + 28, "stored form larger than raw");
        let decoded = block::decode(&BlockKey::of(&x), &encoded);
        assert!(
            decoded.as_deref() == Ok(&x[..]),
            "round trip: {:?}",
            decoded.err()
        );
        let key = block::key_of(Some(&seal), &x);
        let sealed = block::encode_with(Some(&seal), &key, &x);
        let opened = block::decode_with(Some(&seal), &key, &sealed);
        assert!(
            opened.as_deref() == Ok(&x[..]),
            "sealed round trip: {:?}",
            opened.err()
        );
        assert!(
            block::decode(&key, &sealed).is_err(),
            "a sealed block opened without its seal"
        );
    }
});
