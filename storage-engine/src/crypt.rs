//! Encryption at rest of a volume's sectors: AES-256-XTS (IEEE 1619) over each 512-byte sector,
//! tweaked by its sector number, as dm-crypt's `aes-xts-plain64` does.
//!
//! # Invariants
//! * Only ciphertext reaches the volume file (and so its page cache): a write is encrypted into
//!   a buffer of its own before it is handed to the kernel.
//! * A sector whose stored bytes are all zero reads as zeros. Holes (never written, trimmed,
//!   zeroed by `fallocate`) keep reading as zeros without the file having to store encrypted
//!   zeros; a real ciphertext sector is all zero with probability 2⁻⁴⁰⁹⁶.
//!
//! The XTS loop is written here on the `aes` block cipher so that a sector's 32 blocks go
//! through AES-NI together (`encrypt_blocks` pipelines them); `xts-mode`, which encrypts one
//! block at a time, checks it in the tests.

use std::fmt;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes256, Aes256Enc};

/// Sector size the tweak counts in.
const SECTOR: usize = 512;
/// AES blocks per sector.
const BLOCKS: usize = SECTOR / 16;

/// The key of one volume: AES-256-XTS, 64 bytes (data key, then tweak key).
#[derive(Clone)]
pub struct SectorCipher {
    data: Aes256,
    tweak: Aes256Enc,
}

impl fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SectorCipher(AES-256-XTS, key redacted)")
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// Multiplies a tweak by α in GF(2¹²⁸) (IEEE 1619's little-endian convention).
fn times_alpha(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

impl SectorCipher {
    /// Key length in bytes.
    pub const KEY_LEN: usize = 64;

    /// A cipher under `key` (the first half encrypts data, the second the tweaks; they must
    /// differ, which a randomly drawn key does).
    pub fn new(key: &[u8; Self::KEY_LEN]) -> SectorCipher {
        SectorCipher {
            data: Aes256::new(GenericArray::from_slice(&key[..32])),
            tweak: Aes256Enc::new(GenericArray::from_slice(&key[32..])),
        }
    }

    /// Encrypts `buf`, which starts at byte `offset` of the volume. Both are whole sectors.
    pub fn encrypt(&self, offset: u64, buf: &mut [u8]) {
        debug_assert!(offset.is_multiple_of(SECTOR as u64) && buf.len().is_multiple_of(SECTOR));
        let first = offset / SECTOR as u64;
        for (i, sector) in buf.chunks_exact_mut(SECTOR).enumerate() {
            self.sector(sector, first + i as u64, Direction::Encrypt);
        }
    }

    /// Decrypts `buf`, which was read at byte `offset` of the volume; all-zero sectors are holes
    /// and stay zero.
    pub fn decrypt(&self, offset: u64, buf: &mut [u8]) {
        debug_assert!(offset.is_multiple_of(SECTOR as u64) && buf.len().is_multiple_of(SECTOR));
        let first = offset / SECTOR as u64;
        for (i, sector) in buf.chunks_exact_mut(SECTOR).enumerate() {
            if !is_zero(sector) {
                self.sector(sector, first + i as u64, Direction::Decrypt);
            }
        }
    }

    fn sector(&self, sector: &mut [u8], index: u64, dir: Direction) {
        let mut t = GenericArray::from(u128::from(index).to_le_bytes());
        self.tweak.encrypt_block(&mut t);
        let mut tweak = u128::from_le_bytes(t.into());
        let mut tweaks = [0u128; BLOCKS];
        let mut blocks = [GenericArray::from([0u8; 16]); BLOCKS];
        for ((b, tw), chunk) in blocks
            .iter_mut()
            .zip(tweaks.iter_mut())
            .zip(sector.chunks_exact(16))
        {
            *tw = tweak;
            let v = u128::from_le_bytes(chunk.try_into().expect("16-byte chunk")) ^ tweak;
            *b = GenericArray::from(v.to_le_bytes());
            tweak = times_alpha(tweak);
        }
        match dir {
            Direction::Encrypt => self.data.encrypt_blocks(&mut blocks),
            Direction::Decrypt => self.data.decrypt_blocks(&mut blocks),
        }
        for ((b, tw), chunk) in blocks
            .iter()
            .zip(tweaks.iter())
            .zip(sector.chunks_exact_mut(16))
        {
            let v = u128::from_le_bytes((*b).into()) ^ tw;
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Whether every byte of a sector is zero.
fn is_zero(sector: &[u8]) -> bool {
    sector
        .chunks_exact(16)
        .all(|c| u128::from_le_bytes(c.try_into().expect("16-byte chunk")) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xts_mode::{Xts128, get_tweak_default};

    fn key() -> [u8; 64] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
    }

    #[test]
    fn matches_xts_mode_sector_by_sector() {
        let k = key();
        let ours = SectorCipher::new(&k);
        let reference = Xts128::new(
            Aes256::new(GenericArray::from_slice(&k[..32])),
            Aes256::new(GenericArray::from_slice(&k[32..])),
        );
        let plain: Vec<u8> = (0..8 * SECTOR).map(|i| (i * 7 + 3) as u8).collect();
        let offset = 1_000_000 * SECTOR as u64;
        let mut a = plain.clone();
        ours.encrypt(offset, &mut a);
        let mut b = plain.clone();
        reference.encrypt_area(&mut b, SECTOR, 1_000_000, get_tweak_default);
        assert_eq!(a, b);
        assert_ne!(a, plain);
        ours.decrypt(offset, &mut a);
        assert_eq!(a, plain);
    }

    /// IEEE 1619-2007 vector 10 (XTS-AES-256, data unit sequence number 0xff, first sector).
    #[test]
    fn ieee_1619_vector_10() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let k1 = "2718281828459045235360287471352662497757247093699959574966967627";
        let k2 = "3141592653589793238462643383279502884197169399375105820974944592";
        let key: [u8; 64] = [hex(k1), hex(k2)].concat().try_into().unwrap();
        let plain: Vec<u8> = (0..SECTOR).map(|i| i as u8).collect();
        let mut buf = plain.clone();
        SectorCipher::new(&key).encrypt(0xff * SECTOR as u64, &mut buf);
        assert_eq!(
            &buf[..32],
            &hex("1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b")[..]
        );
        SectorCipher::new(&key).decrypt(0xff * SECTOR as u64, &mut buf);
        assert_eq!(buf, plain);
    }

    #[test]
    fn zero_sectors_read_as_zero_and_position_matters() {
        let c = SectorCipher::new(&key());
        let mut buf = vec![0u8; 3 * SECTOR];
        buf[SECTOR..2 * SECTOR].fill(0xab);
        let mut enc = buf.clone();
        c.encrypt(0, &mut enc);
        // Zeros encrypt to something that is not zero...
        assert!(!is_zero(&enc[..SECTOR]));
        // ...and the same plaintext at another sector encrypts differently.
        let mut moved = buf[SECTOR..2 * SECTOR].to_vec();
        c.encrypt(SECTOR as u64 * 9, &mut moved);
        assert_ne!(moved, enc[SECTOR..2 * SECTOR]);
        // A hole (stored zeros) between ciphertext sectors reads as zeros.
        enc[2 * SECTOR..].fill(0);
        c.decrypt(0, &mut enc);
        assert_eq!(enc, buf);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = format!("{:?}", SectorCipher::new(&key()));
        assert!(s.contains("redacted"));
    }
}
