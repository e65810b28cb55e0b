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
    /// The data key's round keys for VAES (four blocks per instruction), where the CPU has it.
    #[cfg(target_arch = "x86_64")]
    wide: Option<std::sync::Arc<wide::Keys>>,
}

impl fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SectorCipher(AES-256-XTS, key redacted)")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// Multiplies a tweak by α in GF(2¹²⁸) (IEEE 1619's little-endian convention).
fn times_alpha(t: u128) -> u128 {
    (t << 1) ^ ((t >> 127) * 0x87)
}

/// What the four bits shifted out by a multiplication by α⁴ fold back in: the carry-less
/// product of those bits with the reduction polynomial's low part (0x87).
const REDUCE4: [u128; 16] = {
    let mut table = [0u128; 16];
    let mut h = 0;
    while h < 16 {
        let mut bit = 0;
        while bit < 4 {
            if h & (1 << bit) != 0 {
                table[h] ^= 0x87 << bit;
            }
            bit += 1;
        }
        h += 1;
    }
    table
};

/// Multiplies a tweak by α⁴: four of [`times_alpha`] in one step.
fn times_alpha4(t: u128) -> u128 {
    (t << 4) ^ REDUCE4[(t >> 124) as usize]
}

/// A sector's 32 tweaks from its first: four independent chains stepping by α⁴, so the CPU
/// overlaps them rather than waiting on one chain of 31 dependent steps.
fn tweaks(t0: u128) -> [u128; BLOCKS] {
    let mut t = [0u128; BLOCKS];
    t[0] = t0;
    for j in 1..4 {
        t[j] = times_alpha(t[j - 1]);
    }
    for j in 4..BLOCKS {
        t[j] = times_alpha4(t[j - 4]);
    }
    t
}

/// Sectors whose first tweaks are encrypted together.
const GROUP: usize = 8;

impl SectorCipher {
    /// Key length in bytes.
    pub const KEY_LEN: usize = 64;

    /// A cipher under `key` (the first half encrypts data, the second the tweaks; they must
    /// differ, which a randomly drawn key does).
    pub fn new(key: &[u8; Self::KEY_LEN]) -> SectorCipher {
        let mut c = SectorCipher::portable(key);
        #[cfg(target_arch = "x86_64")]
        {
            c.wide = wide::Keys::new(key[..32].try_into().expect("32 bytes")).map(Into::into);
        }
        c
    }

    /// A cipher that never uses VAES (the `aes` crate's AES-NI or software rounds only).
    fn portable(key: &[u8; Self::KEY_LEN]) -> SectorCipher {
        SectorCipher {
            data: Aes256::new(GenericArray::from_slice(&key[..32])),
            tweak: Aes256Enc::new(GenericArray::from_slice(&key[32..])),
            #[cfg(target_arch = "x86_64")]
            wide: None,
        }
    }

    /// Encrypts `buf`, which starts at byte `offset` of the volume. Both are whole sectors.
    pub fn encrypt(&self, offset: u64, buf: &mut [u8]) {
        self.each_sector(offset, buf, Direction::Encrypt);
    }

    /// The ciphertext of `plain`, which starts at byte `offset` of the volume (whole sectors),
    /// in a buffer of its own: with VAES, read from `plain` and written to the new buffer in
    /// one pass (no copy of the plaintext first); otherwise copied a group of sectors at a time
    /// and encrypted there while the copy is in the cache.
    pub fn encrypt_to_vec(&self, offset: u64, plain: &[u8]) -> Vec<u8> {
        debug_assert!(offset.is_multiple_of(SECTOR as u64) && plain.len().is_multiple_of(SECTOR));
        let first = offset / SECTOR as u64;
        let mut out: Vec<u8> = Vec::with_capacity(plain.len());
        #[cfg(target_arch = "x86_64")]
        if let Some(w) = &self.wide {
            let (src, dst) = (plain.as_ptr(), out.as_mut_ptr());
            for (g, group) in plain.chunks(SECTOR * GROUP).enumerate() {
                let t = self.first_tweaks(first + (g * GROUP) as u64, group.len() / SECTOR);
                for (i, t0) in t.iter().enumerate().take(group.len() / SECTOR) {
                    let at = (g * GROUP + i) * SECTOR;
                    // SAFETY: the CPU has VAES, VPCLMULQDQ and AVX-512F (`wide` exists); `at + 512` is
                    // within `plain` and within `out`'s capacity (`plain.len()`), and the two
                    // do not overlap.
                    unsafe { w.sector(src.add(at), dst.add(at), *t0, true) };
                }
            }
            // SAFETY: every byte up to `plain.len()` (the capacity) was written above.
            unsafe { out.set_len(plain.len()) };
            return out;
        }
        for group in plain.chunks(SECTOR * GROUP) {
            let at = out.len();
            out.extend_from_slice(group);
            self.each_sector(offset + at as u64, &mut out[at..], Direction::Encrypt);
        }
        out
    }

    /// E(K2, sector number) of the `n` (at most [`GROUP`]) sectors from `base`, in one
    /// pipelined AES call rather than `n` dependent ones.
    fn first_tweaks(&self, base: u64, n: usize) -> [u128; GROUP] {
        let mut t = [GenericArray::from([0u8; 16]); GROUP];
        for (i, b) in t.iter_mut().enumerate().take(n) {
            *b = GenericArray::from(u128::from(base + i as u64).to_le_bytes());
        }
        self.tweak.encrypt_blocks(&mut t[..n]);
        t.map(|b| u128::from_le_bytes(b.into()))
    }

    /// Decrypts `buf`, which was read at byte `offset` of the volume; all-zero sectors are holes
    /// and stay zero.
    pub fn decrypt(&self, offset: u64, buf: &mut [u8]) {
        self.each_sector(offset, buf, Direction::Decrypt);
    }

    /// Runs every sector of `buf` (at byte `offset` of the volume) through the cipher, eight
    /// sectors' first tweaks at a time (one pipelined AES call rather than eight dependent
    /// ones). Decrypting leaves all-zero sectors (holes) alone.
    fn each_sector(&self, offset: u64, buf: &mut [u8], dir: Direction) {
        debug_assert!(offset.is_multiple_of(SECTOR as u64) && buf.len().is_multiple_of(SECTOR));
        let first = offset / SECTOR as u64;
        for (g, group) in buf.chunks_mut(SECTOR * GROUP).enumerate() {
            let t = self.first_tweaks(first + (g * GROUP) as u64, group.len() / SECTOR);
            for (sector, t0) in group.chunks_exact_mut(SECTOR).zip(t) {
                if dir == Direction::Decrypt && is_zero(sector) {
                    continue;
                }
                self.in_place(sector, t0, dir);
            }
        }
    }

    /// Encrypts or decrypts one 512-byte sector where it is, its first tweak `t0` (E(K2, its
    /// number)).
    fn in_place(&self, sector: &mut [u8], t0: u128, dir: Direction) {
        #[cfg(target_arch = "x86_64")]
        if let Some(w) = &self.wide {
            assert_eq!(sector.len(), SECTOR, "a whole sector");
            let p = sector.as_mut_ptr();
            // SAFETY: `wide` is only made where the CPU has VAES, VPCLMULQDQ and AVX-512F
            // (checked at run time in `wide::Keys::new`); `p` is valid for the sector's 512
            // bytes, read and written in place.
            unsafe { w.sector(p, p, t0, dir == Direction::Encrypt) };
            return;
        }
        let tweaks = tweaks(t0);
        let mut blocks = [GenericArray::from([0u8; 16]); BLOCKS];
        for ((b, tw), chunk) in blocks.iter_mut().zip(&tweaks).zip(sector.chunks_exact(16)) {
            let v = u128::from_le_bytes(chunk.try_into().expect("16-byte chunk")) ^ tw;
            *b = GenericArray::from(v.to_le_bytes());
        }
        match dir {
            Direction::Encrypt => self.data.encrypt_blocks(&mut blocks),
            Direction::Decrypt => self.data.decrypt_blocks(&mut blocks),
        }
        for ((b, tw), chunk) in blocks.iter().zip(&tweaks).zip(sector.chunks_exact_mut(16)) {
            let v = u128::from_le_bytes((*b).into()) ^ tw;
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// AES-256 on VAES: the 32 blocks of a sector as eight 512-bit registers of four blocks, each
/// round one instruction per register. The rounds are the CPU's; here are only the key
/// schedule (AES-NI's key-generation assist, as Intel's white paper lays it out) and the XTS
/// whitening around them.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    use super::{SECTOR, times_alpha};

    /// Four tweaks (one per 128-bit lane) each times α⁴: the lane shifted left by four bits,
    /// the low half's top four bits carried into the high half, and the high half's top four
    /// bits folded back into the low half as their carry-less product with 0x87 (the
    /// reduction polynomial's low part).
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn times_alpha4(x: __m512i) -> __m512i {
        let top = _mm512_srli_epi64::<60>(x);
        let shifted = _mm512_slli_epi64::<4>(x);
        // Each lane's low half (`top`'s low 64 bits) into its high half, the low half zeroed.
        let carry = _mm512_maskz_unpacklo_epi64(0xaa, top, top);
        // 0x01: the high 64 bits of `top`'s lane times the low 64 bits of the polynomial's.
        let fold = _mm512_clmulepi64_epi128::<0x01>(top, _mm512_set1_epi64(0x87));
        // 0x96: three-way exclusive or.
        _mm512_ternarylogic_epi64::<0x96>(shifted, carry, fold)
    }

    /// Round keys, each broadcast to the four lanes: for encryption, and for the equivalent
    /// inverse cipher (decryption).
    pub(super) struct Keys {
        enc: [__m512i; 15],
        dec: [__m512i; 15],
    }

    impl Keys {
        /// The round keys of a 32-byte AES key, or `None` where the CPU lacks VAES,
        /// VPCLMULQDQ, AVX-512F or AES-NI.
        pub(super) fn new(key: &[u8; 32]) -> Option<Keys> {
            if !(is_x86_feature_detected!("vaes")
                && is_x86_feature_detected!("vpclmulqdq")
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("aes"))
            {
                return None;
            }
            // SAFETY: the features the functions enable were just detected.
            Some(unsafe { Keys::expand(key) })
        }

        #[target_feature(enable = "aes,avx512f")]
        unsafe fn expand(key: &[u8; 32]) -> Keys {
            /// The next round key: `k` with its words folded in, XORed with `t`'s chosen word.
            #[target_feature(enable = "aes")]
            fn mix(k: __m128i, t: __m128i) -> __m128i {
                let mut k = k;
                let mut s = _mm_slli_si128::<4>(k);
                k = _mm_xor_si128(k, s);
                s = _mm_slli_si128::<4>(s);
                k = _mm_xor_si128(k, s);
                s = _mm_slli_si128::<4>(s);
                k = _mm_xor_si128(k, s);
                _mm_xor_si128(k, t)
            }
            // SAFETY: the loads read the 32 bytes of `key`, unaligned loads allowed.
            let (mut a, mut b) = unsafe {
                (
                    _mm_loadu_si128(key.as_ptr().cast()),
                    _mm_loadu_si128(key.as_ptr().add(16).cast()),
                )
            };
            let mut rk = [a; 15];
            rk[1] = b;
            macro_rules! round {
                ($i:expr, $rcon:expr) => {
                    a = mix(
                        a,
                        _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(b)),
                    );
                    rk[2 * $i] = a;
                    b = mix(
                        b,
                        _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a)),
                    );
                    rk[2 * $i + 1] = b;
                };
            }
            round!(1, 0x01);
            round!(2, 0x02);
            round!(3, 0x04);
            round!(4, 0x08);
            round!(5, 0x10);
            round!(6, 0x20);
            // The fifteenth round key: the first half of a seventh round.
            a = mix(
                a,
                _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<0x40>(b)),
            );
            rk[14] = a;
            let mut dec = [rk[14]; 15];
            for i in 1..14 {
                dec[i] = _mm_aesimc_si128(rk[14 - i]);
            }
            dec[14] = rk[0];
            Keys {
                enc: rk.map(|k| _mm512_broadcast_i32x4(k)),
                dec: dec.map(|k| _mm512_broadcast_i32x4(k)),
            }
        }

        /// XTS of one sector, read at `src` and written at `dst`, its first tweak `t0` (E(K2,
        /// its number)). The other 31 tweaks are made in registers, four at a time.
        ///
        /// # Safety
        /// The CPU must have VAES, VPCLMULQDQ and AVX-512F (as it does wherever [`Keys::new`]
        /// made `self`). `src` must be valid for reading 512 bytes and `dst` for writing 512
        /// bytes (it may be uninitialised); they are either the same address or do not
        /// overlap.
        #[target_feature(enable = "avx512f,vaes,vpclmulqdq")]
        pub(super) unsafe fn sector(&self, src: *const u8, dst: *mut u8, t0: u128, encrypt: bool) {
            const REGS: usize = SECTOR / 64;
            // The first register's lanes are t0·α⁰..α³; each next register is the one before
            // times α⁴ (lane by lane).
            let t1 = times_alpha(t0);
            let t2 = times_alpha(t1);
            let first = [t0, t1, t2, times_alpha(t2)];
            let mut t = [_mm512_setzero_si512(); REGS];
            // SAFETY: `first` is 64 bytes (u128s stored little-endian, as XTS takes them);
            // unaligned loads are allowed.
            t[0] = unsafe { _mm512_loadu_si512(first.as_ptr().cast()) };
            for j in 1..REGS {
                t[j] = times_alpha4(t[j - 1]);
            }
            // SAFETY: register `j` covers bytes 64j..64j+64 of the 512 at `src` (valid, by the
            // contract); unaligned loads are allowed.
            let mut x: [__m512i; REGS] =
                std::array::from_fn(|j| unsafe { _mm512_loadu_si512(src.add(64 * j).cast()) });
            let keys = if encrypt { &self.enc } else { &self.dec };
            for j in 0..REGS {
                x[j] = _mm512_xor_si512(_mm512_xor_si512(x[j], t[j]), keys[0]);
            }
            for k in &keys[1..14] {
                for r in x.iter_mut() {
                    *r = if encrypt {
                        _mm512_aesenc_epi128(*r, *k)
                    } else {
                        _mm512_aesdec_epi128(*r, *k)
                    };
                }
            }
            for j in 0..REGS {
                let last = if encrypt {
                    _mm512_aesenclast_epi128(x[j], keys[14])
                } else {
                    _mm512_aesdeclast_epi128(x[j], keys[14])
                };
                // SAFETY: `dst` is valid for 512 bytes (the contract); every load from `src`
                // is done before the first store, so writing in place is sound.
                unsafe {
                    _mm512_storeu_si512(dst.add(64 * j).cast(), _mm512_xor_si512(last, t[j]))
                };
            }
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
        assert_eq!(ours.encrypt_to_vec(offset, &plain), a);
        let mut b = plain.clone();
        reference.encrypt_area(&mut b, SECTOR, 1_000_000, get_tweak_default);
        assert_eq!(a, b);
        assert_ne!(a, plain);
        ours.decrypt(offset, &mut a);
        assert_eq!(a, plain);
    }

    /// More than one group of first tweaks, ending in a partial one, at a sector number that
    /// is not a multiple of the group: the same as `xts-mode`, on both paths.
    #[test]
    fn groups_and_a_partial_group_match_xts_mode() {
        let k = key();
        let reference = Xts128::new(
            Aes256::new(GenericArray::from_slice(&k[..32])),
            Aes256::new(GenericArray::from_slice(&k[32..])),
        );
        let plain: Vec<u8> = (0..21 * SECTOR).map(|i| (i * 29 + 7) as u8).collect();
        let mut expected = plain.clone();
        reference.encrypt_area(&mut expected, SECTOR, 1_000_003, get_tweak_default);
        for c in [SectorCipher::new(&k), SectorCipher::portable(&k)] {
            assert_eq!(
                c.encrypt_to_vec(1_000_003 * SECTOR as u64, &plain),
                expected
            );
            let mut got = plain.clone();
            c.encrypt(1_000_003 * SECTOR as u64, &mut got);
            assert_eq!(got, expected);
            c.decrypt(1_000_003 * SECTOR as u64, &mut got);
            assert_eq!(got, plain);
        }
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

    /// The VAES path (where this CPU has it) and the portable one agree, both ways.
    #[test]
    fn wide_and_portable_paths_agree() {
        let k = key();
        let (wide, portable) = (SectorCipher::new(&k), SectorCipher::portable(&k));
        let plain: Vec<u8> = (0..16 * SECTOR).map(|i| (i * 13 + 5) as u8).collect();
        let (mut a, mut b) = (plain.clone(), plain.clone());
        wide.encrypt(SECTOR as u64 * 77, &mut a);
        portable.encrypt(SECTOR as u64 * 77, &mut b);
        assert_eq!(a, b);
        assert_eq!(wide.encrypt_to_vec(SECTOR as u64 * 77, &plain), a);
        assert_eq!(portable.encrypt_to_vec(SECTOR as u64 * 77, &plain), a);
        wide.decrypt(SECTOR as u64 * 77, &mut a);
        assert_eq!(a, plain);
        portable.decrypt(SECTOR as u64 * 77, &mut b);
        assert_eq!(b, plain);
    }

    #[test]
    fn alpha4_is_four_alphas() {
        let mut t = 0x8000_0000_0000_0000_0000_0000_0000_0001u128;
        for i in 0..1000u128 {
            t = t.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ i;
            let four = times_alpha(times_alpha(times_alpha(times_alpha(t))));
            assert_eq!(times_alpha4(t), four, "{t:x}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = format!("{:?}", SectorCipher::new(&key()));
        assert!(s.contains("redacted"));
    }
}
