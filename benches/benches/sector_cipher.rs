//! Encryption at rest (`storage_engine::crypt`): AES-256-XTS of 4 KiB and 1 MiB, encrypt and
//! decrypt, against the `xts-mode` crate (one AES block at a time) on the same key and data.

use std::hint::black_box;

use aes::Aes256;
use aes::cipher::KeyInit;
use aes::cipher::generic_array::GenericArray;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use storage_engine::SectorCipher;
use xts_mode::{Xts128, get_tweak_default};

fn sector_cipher(c: &mut Criterion) {
    let key: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0xa5);
    let ours = SectorCipher::new(&key);
    let reference = Xts128::new(
        Aes256::new(GenericArray::from_slice(&key[..32])),
        Aes256::new(GenericArray::from_slice(&key[32..])),
    );
    let mut g = c.benchmark_group("sector_cipher");
    for len in [4096usize, 1 << 20] {
        let mut buf = benches::random_bytes(len, 3);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("encrypt", len), &len, |b, _| {
            b.iter(|| ours.encrypt(black_box(1 << 20), black_box(&mut buf)))
        });
        g.bench_with_input(BenchmarkId::new("decrypt", len), &len, |b, _| {
            b.iter(|| ours.decrypt(black_box(1 << 20), black_box(&mut buf)))
        });
        g.bench_with_input(BenchmarkId::new("xts-mode encrypt", len), &len, |b, _| {
            b.iter(|| reference.encrypt_area(black_box(&mut buf), 512, 2048, get_tweak_default))
        });
    }
    g.finish();
}

criterion_group!(benches, sector_cipher);
criterion_main!(benches);
