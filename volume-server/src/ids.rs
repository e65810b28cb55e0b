//! Resource IDs (`vol-`, `i-`, …) and attachment export tokens.

use rand::Rng;

/// A new ID: `prefix-` followed by 17 lowercase hex digits, as AWS issues them.
pub fn new_id(prefix: &str) -> String {
    let n: u128 = rand::rng().random();
    format!("{prefix}-{:017x}", n & ((1u128 << 68) - 1))
}

/// Whether `id` is `prefix-` followed by 8 or 17 lowercase hex digits.
pub fn is_valid_id(id: &str, prefix: &str) -> bool {
    let Some(hex) = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    (hex.len() == 8 || hex.len() == 17)
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An unguessable NBD export name for one attachment: 128 random bits, hex.
///
/// `rand::rng()` is the thread-local ChaCha12 generator seeded (and periodically reseeded) from
/// the OS: a CSPRNG, so tokens cannot be predicted from earlier ones.
pub fn new_export_token() -> String {
    let n: u128 = rand::rng().random();
    format!("{n:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shape() {
        for _ in 0..100 {
            let id = new_id("vol");
            assert_eq!(id.len(), 4 + 17, "{id}");
            assert!(is_valid_id(&id, "vol"), "{id}");
        }
        assert!(is_valid_id("i-1234567890abcdef0", "i"));
        assert!(is_valid_id("vol-12345678", "vol"));
        assert!(!is_valid_id("vol-1234567890ABCDEF0", "vol"));
        assert!(!is_valid_id("vol-123", "vol"));
        assert!(!is_valid_id("snap-1234567890abcdef0", "vol"));
        assert!(!is_valid_id("vol1234567890abcdef0", "vol"));
        assert_ne!(new_export_token(), new_export_token());
    }

    #[test]
    fn export_tokens_carry_128_bits() {
        let tokens: Vec<String> = (0..64).map(|_| new_export_token()).collect();
        for t in &tokens {
            assert_eq!(t.len(), 32, "{t}");
            assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        }
        // Leading zeroes are kept: the width never shrinks the space.
        let mut seen = std::collections::HashSet::new();
        assert!(tokens.iter().all(|t| seen.insert(t)));
    }

    #[test]
    fn ids_never_carry_path_characters() {
        for bad in [
            "vol-../../etc",
            "vol-../x",
            "../x",
            "vol-0123456789abcdef/",
            "vol-1234567/",
            "vol-1234567890abcdef0/..",
            "vol-\u{0}234567890abcdef",
            "vol-12345678\n",
        ] {
            assert!(!is_valid_id(bad, "vol"), "{bad:?}");
        }
    }
}
