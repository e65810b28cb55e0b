//! What the fuzz targets share: one small real volume served as one NBD export, helpers that run
//! a handshake or a transmission phase on it, and the seed inputs `gen_corpus` writes.
//!
//! # Targets (`fuzz_targets/`)
//! * `nbd_handshake`: the input is everything a client sends, fed to
//!   [`volume_server::nbd::handshake::negotiate`] with TLS off, then with TLS required.
//! * `nbd_request`: one mode byte ([`session_mode`]) then transmission-phase bytes, fed to
//!   [`volume_server::nbd::session::serve`], with the real data path and a real volume file
//!   behind it.
//! * `snapshot_manifest`: [`snapshot::Manifest::decode`], and the canonical round trip.
//! * `snapshot_block`: [`snapshot::block::decode`] under an arbitrary key, and the round trip of
//!   512 KiB plaintexts.
//!
//! Both NBD targets talk over a loopback TCP connection: `negotiate` and `serve` take a
//! `TcpStream` (which TLS may wrap). The volume is shared by every input of a run, so what one
//! input wrote another may read: the replies' framing never depends on it.
//!
//! # Running
//! From `fuzz/`: `cargo +nightly fuzz run <target>` (new inputs are added to
//! `corpus/<target>/`; pass a scratch directory first, then `corpus/<target>`, to keep the seeds
//! as they are). `cargo run --example gen_corpus` rewrites the seeds.
//!
//! Each target must never panic and never hang: a session or handshake that does not end
//! within [`HANG`] of its client hanging up is reported as a crash.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use storage_engine::{Engine, EngineKind, Limits, Throttle, Volume};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use volume_server::config::NbdTlsMode;
use volume_server::exports::{Export, Exports, IoStats, OpenVolume};
use volume_server::nbd::handshake::{self, HandshakeError, Negotiated};
use volume_server::nbd::session::{self, SessionConfig};
use volume_server::nbd::{NbdStream, NbdTls, wire};

pub mod seeds;

/// The export name the harness serves (the seeds ask for it).
pub const EXPORT_NAME: &str = "fuzz";
/// Size of the volume behind the export: small, so most offsets are out of bounds and in-bounds
/// reads stay cheap.
pub const VOLUME_SIZE: u64 = 1 << 20;
/// A handshake or session still running this long after its client hung up is a hang.
pub const HANG: Duration = Duration::from_secs(10);

/// Mode byte of `nbd_request` inputs: structured replies negotiated.
pub const MODE_STRUCTURED: u8 = 1 << 0;
/// Mode byte of `nbd_request` inputs: `base:allocation` negotiated (only with structured).
pub const MODE_BASE_ALLOCATION: u8 = 1 << 1;

/// `(structured, base_allocation)` of a `nbd_request` mode byte, as a handshake could have
/// negotiated them.
pub fn session_mode(mode: u8) -> (bool, bool) {
    let structured = mode & MODE_STRUCTURED != 0;
    (structured, structured && mode & MODE_BASE_ALLOCATION != 0)
}

/// The mode byte of a negotiated session.
pub fn mode_byte(structured: bool, base_allocation: bool) -> u8 {
    let mut mode = 0;
    if structured {
        mode |= MODE_STRUCTURED;
    }
    if base_allocation {
        mode |= MODE_BASE_ALLOCATION;
    }
    mode
}

/// `snapshot_block` mode bit: recompute both CRCs of the stored bytes before decoding, so
/// mutations get past the checksums to the codec and the length checks.
pub const BLOCK_FIX_CRCS: u8 = 1 << 0;
/// `snapshot_block` mode bit: also round-trip a plaintext built from the stored bytes.
pub const BLOCK_ROUND_TRIP: u8 = 1 << 1;
/// `snapshot_block` mode bit: build that plaintext as noise (incompressible: the raw codec)
/// rather than by repeating the bytes (compressible: zstd).
pub const BLOCK_NOISE: u8 = 1 << 2;

/// A `snapshot_block` input: mode byte, 32-byte key, stored bytes (missing bytes read as 0).
#[derive(Debug)]
pub struct BlockInput<'a> {
    /// `BLOCK_*` bits.
    pub mode: u8,
    /// The key the block is decoded under.
    pub key: snapshot::BlockKey,
    /// The stored object.
    pub stored: &'a [u8],
}

impl<'a> BlockInput<'a> {
    /// Splits `data`.
    pub fn parse(data: &'a [u8]) -> BlockInput<'a> {
        let mode = data.first().copied().unwrap_or(0);
        let mut key = [0u8; 32];
        let k = data.get(1..).unwrap_or_default();
        let n = k.len().min(32);
        key[..n].copy_from_slice(&k[..n]);
        BlockInput {
            mode,
            key: snapshot::BlockKey(key),
            stored: data.get(33..).unwrap_or_default(),
        }
    }
}

/// Rewrites the header and payload CRCs of a stored block (as far as the bytes go).
pub fn fix_block_crcs(stored: &mut [u8]) {
    const HEADER_LEN: usize = 28;
    if stored.len() < HEADER_LEN {
        return;
    }
    let payload_len = u32::from_le_bytes(stored[16..20].try_into().expect("4 bytes")) as usize;
    let end = HEADER_LEN.saturating_add(payload_len).min(stored.len());
    let crc = crc32fast::hash(&stored[HEADER_LEN..end]);
    stored[20..24].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&stored[..24]);
    stored[24..28].copy_from_slice(&crc.to_le_bytes());
}

/// A 512 KiB plaintext made from `seed`: repeated (zeros if empty), or noise seeded by it.
pub fn plaintext_from(seed: &[u8], noise: bool) -> Vec<u8> {
    let len = snapshot::BLOCK_SIZE as usize;
    if !noise {
        if seed.is_empty() {
            return vec![0; len];
        }
        return seed.iter().copied().cycle().take(len).collect();
    }
    // FNV-1a of the seed, then xorshift64*.
    let mut x = seed.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out
}

/// One runtime, one volume, one export, one loopback listener: built once per process.
#[derive(Debug)]
pub struct Harness {
    /// Single-threaded: deterministic scheduling of the session's tasks.
    pub rt: Runtime,
    /// Holds [`EXPORT_NAME`] → [`Harness::export`].
    pub exports: Arc<Exports>,
    /// The export.
    pub export: Arc<Export>,
    /// TLS off: `STARTTLS` is unsupported.
    pub tls_off: NbdTls,
    /// TLS required (with the throwaway certificate in `tls/`): nothing but `STARTTLS` and
    /// `ABORT` may succeed in plaintext.
    pub tls_required: NbdTls,
    /// Where [`Harness::connect`] gets its server side from.
    listener: TcpListener,
}

/// The process's harness.
pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(Harness::new)
}

fn scratch_dir() -> PathBuf {
    // tmpfs when there is one: flushes and FUA writes cost nothing there.
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

impl Harness {
    fn new() -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let engine = Engine::start(EngineKind::Sync, 1).expect("sync I/O engine");
        let dir = tempfile::Builder::new()
            .prefix("ebs-fuzz-")
            .tempdir_in(scratch_dir())
            .expect("temp dir");
        let path = dir.path().join("vol-fuzz");
        Volume::create(&path, VOLUME_SIZE).expect("create volume");
        let volume = Volume::open(&path, engine).expect("open volume");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, include_str!("../tls/cert.pem")).expect("write cert");
        std::fs::write(&key, include_str!("../tls/key.pem")).expect("write key");
        let tls_required = NbdTls::load(NbdTlsMode::Require, &cert, &key).expect("TLS config");
        // The open files outlive their names: nothing is left behind when libFuzzer exits
        // (it never runs destructors of statics).
        drop(dir);
        let open = OpenVolume {
            volume: Arc::new(volume),
            stats: Arc::new(IoStats::default()),
            throttle: Arc::new(Throttle::new(Limits::UNLIMITED)),
            reservation: None,
            captures: Arc::default(),
            hydration: None,
        };
        let export = Arc::new(Export::new(
            "vol-fuzz".into(),
            "i-fuzz".into(),
            1,
            open,
            false,
        ));
        let exports = Arc::new(Exports::default());
        exports.insert(EXPORT_NAME.into(), Arc::clone(&export));
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("loopback listener");
        Harness {
            rt,
            exports,
            export,
            tls_off: NbdTls::off(),
            tls_required,
            listener,
        }
    }

    /// A connected loopback pair: `(client, server)`.
    pub async fn connect(&self) -> (TcpStream, TcpStream) {
        let addr = self.listener.local_addr().expect("listener address");
        let (client, server) = tokio::join!(TcpStream::connect(addr), self.listener.accept());
        let (client, server) = (client.expect("connect"), server.expect("accept").0);
        let _ = server.set_nodelay(true);
        (client, server)
    }

    /// What a handshake negotiating `structured` and `base_allocation` hands the session.
    pub fn negotiated(&self, structured: bool, base_allocation: bool) -> Negotiated {
        Negotiated {
            export: Arc::clone(&self.export),
            structured,
            base_allocation,
            flags: handshake::transmission_flags(&self.export, structured),
            size: self.export.open.volume.size(),
        }
    }

    /// Runs the handshake under `tls` with `client` as everything the client sends (then it
    /// hangs up its sending side). Returns the outcome (what was negotiated, and whether TLS is
    /// active) and every byte the server sent. Panics on a hang.
    pub fn handshake(&self, tls: &NbdTls, client: &[u8]) -> (Outcome, Vec<u8>) {
        self.rt.block_on(async {
            let (client_end, server) = self.connect().await;
            let negotiate = async {
                let r = tokio::time::timeout(
                    HANG,
                    handshake::negotiate(NbdStream::Plain(server), &self.exports, tls, || false),
                )
                .await;
                // The stream is dropped here: the client's reader sees the end.
                r.map(|r| r.map(|(neg, stream)| (neg, stream.is_tls())))
            };
            let (replies, outcome) = tokio::join!(play_client(client_end, client), negotiate);
            let outcome = outcome.expect("the handshake hung after the client hung up");
            (outcome, replies)
        })
    }

    /// Runs a transmission phase negotiated as `structured`/`base_allocation`, `client` being
    /// everything the client sends after the handshake. Returns every byte the server sent.
    /// Panics on a hang.
    pub fn session(&self, structured: bool, base_allocation: bool, client: &[u8]) -> Vec<u8> {
        self.rt.block_on(async {
            let (client_end, server) = self.connect().await;
            let neg = self.negotiated(structured, base_allocation);
            // Kept alive: a dropped sender reads as "shutting down".
            let (_stop, stop_rx) = watch::channel(false);
            let cfg = SessionConfig {
                idle_timeout: None,
                sendfile: false,
            };
            let (replies, served) = tokio::join!(
                play_client(client_end, client),
                tokio::time::timeout(
                    HANG,
                    session::serve(NbdStream::Plain(server), neg, cfg, stop_rx)
                ),
            );
            // A socket error is a client's doing (e.g. a reset); only a hang is a finding.
            let _ = served.expect("the session hung after the client hung up");
            replies
        })
    }
}

/// How a handshake ended: what was negotiated and whether over TLS.
pub type Outcome = Result<(Negotiated, bool), HandshakeError>;

/// Sends `input` on `io`, half-closes it, and reads everything the server sends until it
/// closes. Both at once, so neither side can block on a full buffer.
async fn play_client(io: TcpStream, input: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = io.into_split();
    let send = async {
        // The server may stop reading (violation, or done): a failed write is expected.
        if wr.write_all(input).await.is_ok() {
            let _ = wr.shutdown().await;
        }
        drop(wr);
    };
    let recv = async {
        let mut out = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        // Bounded: a server that never closes is caught by the caller's timeout.
        loop {
            match tokio::time::timeout(HANG, rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    };
    let ((), out) = tokio::join!(send, recv);
    out
}

/// Where the handshake in `client` (what a client sent) ends: after its first `OPT_GO` or
/// `OPT_EXPORT_NAME` (for streams of clients that asked for the right export), or `None`.
pub fn handshake_end(client: &[u8]) -> Option<usize> {
    let mut at = 4;
    loop {
        let header = client.get(at..at + 16)?;
        let opt = u32::from_be_bytes(header[8..12].try_into().ok()?);
        let len = u32::from_be_bytes(header[12..16].try_into().ok()?) as usize;
        at += 16 + len;
        if opt == wire::OPT_GO || opt == wire::OPT_EXPORT_NAME {
            return (at <= client.len()).then_some(at);
        }
    }
}
