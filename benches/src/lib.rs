//! Benchmarks of the emulator's hot paths.
//!
//! This crate owns the criterion micro-benchmarks, one group per file in `benches/`:
//! * `nbd_wire`: NBD request-header decode and reply-header encode (`volume_server::nbd::wire`);
//! * `throttle`: one `storage_engine::Throttle::reserve` decision under io2 and gp3 limits, sequential and
//!   random, 4 KiB and 1 MiB;
//! * `snapshot_block`: a 512 KiB snapshot block's SHA-256 key, zstd encode, checked decode and
//!   zero test, on random, text-like and zero data;
//! * `engine`: a 4 KiB `Volume::read` / `Volume::write` through the io_uring and sync engines.
//!
//! Run them with `cargo bench -p benches` (a quick pass:
//! `cargo bench -p benches -- --warm-up-time 0.2 --measurement-time 0.5`). End-to-end numbers
//! against peer servers come from the fio comparison harness, `scripts/bench_compare.py`.
//!
//! The library itself only makes deterministic benchmark data.

/// A small deterministic generator (SplitMix64): the same data on every run, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `len` bytes of incompressible random data.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes that look like a text file or log: words from a small vocabulary with random
/// numbers and line breaks, so zstd finds repeats but not one long run.
pub fn text_like_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "volume", "snapshot", "attach", "the", "block", "write", "read", "io2", "gp3", "request",
        "offset", "length", "ok", "error", "flush", "status",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let r = rng.next_u64();
        out.extend_from_slice(WORDS[(r & 15) as usize].as_bytes());
        match (r >> 4) & 7 {
            0 => out.extend_from_slice(format!(" {}", (r >> 8) % 100_000).as_bytes()),
            1 => out.push(b'\n'),
            _ => {}
        }
        out.push(b' ');
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic_and_sized() {
        assert_eq!(random_bytes(1000, 7), random_bytes(1000, 7));
        assert_ne!(random_bytes(1000, 7), random_bytes(1000, 8));
        assert_eq!(random_bytes(1001, 1).len(), 1001);
        let text = text_like_bytes(4096, 1);
        assert_eq!(text.len(), 4096);
        assert!(text.iter().all(|b| b.is_ascii()));
    }
}
