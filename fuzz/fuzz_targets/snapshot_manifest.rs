//! `snapshot::Manifest::decode` on arbitrary bytes, as they are and with a valid CRC appended
//! (so mutations get past the checksum). Whatever decodes must be canonical: encoding it gives
//! back the same bytes (but for the ignored reserved field; a version-1 manifest, which has no
//! owner, comes back as version 2), and those decode to the same manifest. Version 3 (an
//! encrypted snapshot's) always names its KMS key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use snapshot::manifest::Manifest;

/// Offset and length of the reserved field, which decoding ignores.
const RESERVED: std::ops::Range<usize> = 10..12;

fn check(bytes: &[u8]) {
    let Ok(m) = Manifest::decode(bytes) else {
        return;
    };
    assert!(
        m.blocks.keys().all(|&i| i < m.block_count()),
        "index past the end"
    );
    assert_ne!(
        m.parent_id.as_deref(),
        Some(""),
        "an empty parent is no parent"
    );
    let encoded = m.encode();
    assert_eq!(Manifest::decode(&encoded), Ok(m.clone()), "round trip");
    if bytes[8..10] == [3, 0] {
        assert!(m.kms_key_id.is_some(), "version 3 names a KMS key");
    }
    if bytes[8..10] == [1, 0] {
        // Version 1 (no owner) decodes with an empty owner and re-encodes as version 2.
        assert_eq!(m.owner_id, "", "version 1 records no owner");
        return;
    }
    assert_eq!(encoded.len(), bytes.len(), "re-encoded length");
    let body = bytes.len() - 4;
    assert_eq!(encoded[..RESERVED.start], bytes[..RESERVED.start]);
    assert_eq!(encoded[RESERVED.end..body], bytes[RESERVED.end..body]);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut with_crc = data.to_vec();
    with_crc.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    check(&with_crc);
});
