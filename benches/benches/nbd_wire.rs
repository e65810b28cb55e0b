//! NBD request decode and reply encode: the per-request byte work of the NBD session.
//!
//! Everything here goes through the public codec in `volume_server::nbd::wire`. The session's
//! own reply assembly (`Session::encode`) is private, so the reply benchmarks replay its steps
//! with the same public calls: a structured `OFFSET_DATA` chunk header plus the offset, and for
//! small reads (≤ 64 KiB) the payload copied inline into the output buffer.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use volume_server::nbd::wire::{
    CMD_FLAG_FUA, CMD_READ, CMD_WRITE, EINVAL, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA,
    REQUEST_LEN, Request, decode_request, encode_request, put_chunk_header, put_error_chunk,
    put_simple_reply,
};

const PIPELINE: usize = 64;

/// Request `i`: reads and FUA writes alternate.
fn request(i: u64) -> Request {
    let write = i & 1 == 1;
    Request {
        flags: if write { CMD_FLAG_FUA } else { 0 },
        cmd: if write { CMD_WRITE } else { CMD_READ },
        cookie: 0x1000 + i,
        offset: (i * 7919 % 262_144) * 4096,
        len: 4096,
    }
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("nbd_wire");

    let one = encode_request(&request(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_request", |b| {
        b.iter(|| decode_request(black_box(&one)))
    });

    // As the session reads them: headers back to back in the receive buffer, each sliced out
    // and decoded.
    let mut stream = BytesMut::with_capacity(PIPELINE * REQUEST_LEN);
    for i in 0..PIPELINE as u64 {
        stream.put_slice(&encode_request(&request(i)));
    }
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("decode_request_x64", |b| {
        b.iter(|| {
            let buf = black_box(&stream[..]);
            let mut sum = 0u64;
            for chunk in buf.chunks_exact(REQUEST_LEN) {
                let header: &[u8; REQUEST_LEN] = chunk.try_into().expect("whole header");
                let req = decode_request(header).expect("good magic");
                sum = sum.wrapping_add(req.offset ^ req.cookie);
            }
            sum
        })
    });

    let req = request(2);
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_request", |b| {
        b.iter(|| encode_request(black_box(&req)))
    });
    g.finish();
}

fn replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("nbd_wire");
    let mut out = BytesMut::with_capacity(128 * 1024);

    g.throughput(Throughput::Elements(1));
    g.bench_function("simple_reply", |b| {
        b.iter(|| {
            out.clear();
            put_simple_reply(&mut out, 0, black_box(0xdead_beef));
            out.len()
        })
    });

    g.bench_function("read_reply_header", |b| {
        b.iter(|| {
            out.clear();
            put_chunk_header(
                &mut out,
                REPLY_FLAG_DONE,
                REPLY_TYPE_OFFSET_DATA,
                black_box(0xdead_beef),
                8 + 4096,
            );
            out.put_u64(black_box(1 << 30));
            out.len()
        })
    });

    let data = vec![0xa5u8; 4096];
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("read_reply_4k_inline", |b| {
        b.iter(|| {
            out.clear();
            put_chunk_header(
                &mut out,
                REPLY_FLAG_DONE,
                REPLY_TYPE_OFFSET_DATA,
                black_box(0xdead_beef),
                8 + data.len() as u32,
            );
            out.put_u64(black_box(1 << 30));
            out.extend_from_slice(black_box(&data));
            out.len()
        })
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("error_chunk", |b| {
        b.iter(|| {
            out.clear();
            put_error_chunk(
                &mut out,
                black_box(0xdead_beef),
                EINVAL,
                black_box("request of 4097 bytes is not a multiple of 512"),
            );
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
