//! NBD protocol conformance and bad input, byte by byte against a real `volume-server`:
//! handshake corner cases, malformed and out-of-range requests, pipelining with out-of-order
//! replies, vanishing clients, timeouts, the connection cap and fencing on detach.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
const REP_ERR_TOO_BIG: u32 = (1 << 31) + 9;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_BLOCK_STATUS: u16 = 7;
const SIMPLE_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_MAGIC: u32 = 0x668e_33ef;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const ESHUTDOWN: u32 = 108;
const GIB: u64 = 1 << 30;

mod common;

/// A `volume-server` on ephemeral ports (the shared harness) and its temp dir.
struct Server {
    srv: common::Server,
    _dir: tempfile::TempDir,
}

/// Appends a request header to `b`.
fn put_request(b: &mut Vec<u8>, flags: u16, cmd: u16, cookie: u64, offset: u64, len: u32) {
    b.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&cmd.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server {
            srv: common::Server::start_with_args(dir.path(), extra),
            _dir: dir,
        }
    }

    /// Attaches a new 1 GiB volume: returns (volume id, export name).
    fn attached_volume(&self) -> (String, String) {
        let (volume_id, _, uri) = self.srv.attach_new_volume(1);
        let token = uri.rsplit('/').next().unwrap().to_string();
        (volume_id, token)
    }

    fn detach(&self, volume_id: &str) {
        self.srv.detach(volume_id);
    }

    fn connect(&self) -> Conn {
        let s = TcpStream::connect(self.srv.nbd_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn(s)
    }

    fn assert_alive(&self) {
        let (_, token) = self.attached_volume();
        let mut c = self.connect();
        c.go(&token, true);
        c.request(0, CMD_READ, 1, 0, 4096);
        let (err, data) = c.read_reply(1, true);
        assert_eq!((err, data.len()), (0, 4096), "server still serves");
    }
}

struct Conn(TcpStream);

impl Conn {
    fn u16(&mut self) -> u16 {
        let mut b = [0; 2];
        self.0.read_exact(&mut b).unwrap();
        u16::from_be_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.0.read_exact(&mut b).unwrap();
        u32::from_be_bytes(b)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.0.read_exact(&mut b).unwrap();
        u64::from_be_bytes(b)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.0.read_exact(&mut b).unwrap();
        b
    }

    /// Reads the greeting and sends client flags.
    fn greet(&mut self, client_flags: u32) {
        assert_eq!(self.u64(), NBDMAGIC);
        assert_eq!(self.u64(), IHAVEOPT);
        let hflags = self.u16();
        assert_eq!(hflags & 1, 1, "server must offer fixed newstyle");
        self.0.write_all(&client_flags.to_be_bytes()).unwrap();
    }

    fn option(&mut self, opt: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(&IHAVEOPT.to_be_bytes());
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.0.write_all(&b).unwrap();
    }

    /// Reads one option reply: (reply type, data).
    fn option_reply(&mut self, opt: u32) -> (u32, Vec<u8>) {
        assert_eq!(self.u64(), OPT_REPLY_MAGIC);
        assert_eq!(self.u32(), opt);
        let kind = self.u32();
        let len = self.u32() as usize;
        (kind, self.bytes(len))
    }

    fn go_data(name: &str) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&3u16.to_be_bytes()); // NBD_INFO_BLOCK_SIZE
        d
    }

    /// Full fixed-newstyle handshake; with `structured`, also structured replies and
    /// `base:allocation`. Returns the export size.
    fn go(&mut self, name: &str, structured: bool) -> u64 {
        self.greet(1 | 2);
        if structured {
            self.option(OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(self.option_reply(OPT_STRUCTURED_REPLY).0, REP_ACK);
            let mut d = (name.len() as u32).to_be_bytes().to_vec();
            d.extend_from_slice(name.as_bytes());
            d.extend_from_slice(&1u32.to_be_bytes());
            d.extend_from_slice(&15u32.to_be_bytes());
            d.extend_from_slice(b"base:allocation");
            self.option(OPT_SET_META_CONTEXT, &d);
            let (kind, data) = self.option_reply(OPT_SET_META_CONTEXT);
            assert_eq!(kind, REP_META_CONTEXT);
            assert_eq!(&data[4..], b"base:allocation");
            assert_eq!(self.option_reply(OPT_SET_META_CONTEXT).0, REP_ACK);
        }
        self.option(OPT_GO, &Self::go_data(name));
        let mut size = 0;
        loop {
            let (kind, data) = self.option_reply(OPT_GO);
            match kind {
                REP_INFO if data[..2] == [0, 0] => {
                    size = u64::from_be_bytes(data[2..10].try_into().unwrap())
                }
                REP_INFO => {}
                REP_ACK => return size,
                other => panic!("unexpected GO reply {other:#x}"),
            }
        }
    }

    fn request(&mut self, flags: u16, cmd: u16, cookie: u64, offset: u64, len: u32) {
        let mut b = Vec::with_capacity(28);
        put_request(&mut b, flags, cmd, cookie, offset, len);
        self.0.write_all(&b).unwrap();
    }

    /// Reads one complete reply (simple or structured) for any request: (cookie, errno, data).
    fn any_reply(&mut self, read_len: Option<usize>) -> (u64, u32, Vec<u8>) {
        match self.u32() {
            SIMPLE_MAGIC => {
                let err = self.u32();
                let cookie = self.u64();
                let data = match (err, read_len) {
                    (0, Some(n)) => self.bytes(n),
                    _ => vec![],
                };
                (cookie, err, data)
            }
            STRUCTURED_MAGIC => {
                let flags = self.u16();
                let kind = self.u16();
                let cookie = self.u64();
                let len = self.u32() as usize;
                let payload = self.bytes(len);
                assert_eq!(flags & 1, 1, "single-chunk replies end with DONE");
                match kind {
                    0 => (cookie, 0, vec![]),
                    1 => (cookie, 0, payload[8..].to_vec()),
                    5 => (cookie, 0, payload),
                    k if k & 0x8000 != 0 => (
                        cookie,
                        u32::from_be_bytes(payload[..4].try_into().unwrap()),
                        vec![],
                    ),
                    k => panic!("unexpected chunk type {k}"),
                }
            }
            m => panic!("bad reply magic {m:#x}"),
        }
    }

    fn read_reply(&mut self, cookie: u64, is_read: bool) -> (u32, Vec<u8>) {
        let (c, err, data) = self.any_reply(is_read.then_some(4096));
        assert_eq!(c, cookie);
        (err, data)
    }

    fn expect_error(&mut self, flags: u16, cmd: u16, offset: u64, len: u32, want: u32) {
        self.request(flags, cmd, 77, offset, len);
        let (cookie, err, _) = self.any_reply(None);
        assert_eq!(
            (cookie, err),
            (77, want),
            "cmd {cmd} flags {flags:#x} offset {offset} len {len}"
        );
    }

    fn expect_eof(&mut self) {
        let mut b = [0u8; 1];
        match self.0.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the server to hang up, got {other:?}"),
        }
    }
}

#[test]
fn handshake_corner_cases() {
    let srv = Server::start(&[]);
    let (_, token) = srv.attached_volume();

    // Unknown options are refused and negotiation goes on.
    let mut c = srv.connect();
    c.greet(1);
    c.option(99, b"whatever");
    assert_eq!(c.option_reply(99).0, REP_ERR_UNSUP);
    c.option(5, &[]); // STARTTLS: not offered
    assert_eq!(c.option_reply(5).0, REP_ERR_UNSUP);
    // Unknown export via GO: an error reply, and negotiation goes on.
    c.option(OPT_GO, &Conn::go_data("no-such-export"));
    assert_eq!(c.option_reply(OPT_GO).0, REP_ERR_UNKNOWN);
    // An absurdly long option is skipped without buffering and refused.
    let huge = 8 << 20;
    let mut hdr = IHAVEOPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&42u32.to_be_bytes());
    hdr.extend_from_slice(&(huge as u32).to_be_bytes());
    c.0.write_all(&hdr).unwrap();
    c.0.write_all(&vec![0u8; huge]).unwrap();
    assert_eq!(c.option_reply(42).0, REP_ERR_TOO_BIG);
    // Malformed GO payload.
    c.option(OPT_GO, &[0, 0, 0, 200, 1]);
    assert_eq!(c.option_reply(OPT_GO).0, (1 << 31) + 3);
    // Still negotiable.
    c.option(OPT_GO, &Conn::go_data(&token));
    let mut saw_size = false;
    loop {
        let (kind, data) = c.option_reply(OPT_GO);
        if kind == REP_INFO && data[..2] == [0, 0] {
            assert_eq!(u64::from_be_bytes(data[2..10].try_into().unwrap()), GIB);
            saw_size = true;
        }
        if kind == REP_ACK {
            break;
        }
    }
    assert!(saw_size);

    // A client without the fixed-newstyle flag may only use EXPORT_NAME.
    let mut c = srv.connect();
    c.greet(0);
    c.option(OPT_GO, &Conn::go_data(&token));
    c.expect_eof();
    let mut c = srv.connect();
    c.greet(0);
    c.option(OPT_EXPORT_NAME, token.as_bytes());
    assert_eq!(c.u64(), GIB);
    let _flags = c.u16();
    assert_eq!(
        c.bytes(124),
        vec![0u8; 124],
        "zeroes unless NO_ZEROES was negotiated"
    );

    // Unknown client flags: the server must hang up.
    let mut c = srv.connect();
    c.greet(0x80);
    c.expect_eof();
    // EXPORT_NAME of an unknown export: no way to report it but hanging up.
    let mut c = srv.connect();
    c.greet(1);
    c.option(OPT_EXPORT_NAME, b"nope");
    c.expect_eof();

    srv.assert_alive();
}

#[test]
fn bad_requests_get_spec_errors() {
    let srv = Server::start(&[]);
    let (_, token) = srv.attached_volume();
    for structured in [false, true] {
        let mut c = srv.connect();
        assert_eq!(c.go(&token, structured), GIB);
        c.expect_error(0, CMD_READ, GIB - 512, 1024, EINVAL); // past the end
        c.expect_error(0, CMD_READ, 1, 512, EINVAL); // unaligned
        c.expect_error(0, CMD_READ, 0, 0, EINVAL); // zero length
        c.expect_error(0, CMD_READ, 0, (32 << 20) + 512, EINVAL); // over 32 MiB
        c.expect_error(0, 42, 0, 512, EINVAL); // unknown command
        c.expect_error(0x40, CMD_READ, 0, 512, EINVAL); // unknown flag
        c.expect_error(1 << 3, CMD_READ, 0, 512, EINVAL); // REQ_ONE on READ
        if !structured {
            c.expect_error(0, CMD_BLOCK_STATUS, 0, 512, EINVAL); // no context negotiated
            c.expect_error(1 << 2, CMD_READ, 0, 512, EINVAL); // DF without structured replies
        }
        // A write past the end: ENOSPC, and its payload is consumed.
        c.request(0, CMD_WRITE, 5, GIB, 512);
        c.0.write_all(&[0u8; 512]).unwrap();
        assert_eq!(c.read_reply(5, false).0, ENOSPC);
        // An oversized write: EINVAL, payload discarded, stream stays in sync.
        let big = (32 << 20) + 4096;
        c.request(0, CMD_WRITE, 6, 0, big);
        c.0.write_all(&vec![0xeeu8; big as usize]).unwrap();
        assert_eq!(c.read_reply(6, false).0, EINVAL);
        c.request(0, CMD_READ, 7, 0, 4096);
        let (err, data) = c.read_reply(7, true);
        assert_eq!(err, 0);
        assert_eq!(
            data,
            vec![0u8; 4096],
            "the discarded payload was not written"
        );
        // Answered only once its payload is in: a client still sending gets no reply yet.
        c.request(0, CMD_WRITE, 8, 0, big);
        c.0.write_all(&vec![0xeeu8; 1 << 20]).unwrap();
        c.0.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let early = c.0.read(&mut [0u8; 1]);
        assert!(
            early.as_ref().is_err_and(|e| matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
            "a reply came before the oversized write's payload was sent: {early:?}"
        );
        c.0.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.0.write_all(&vec![0xeeu8; big as usize - (1 << 20)])
            .unwrap();
        assert_eq!(c.read_reply(8, false).0, EINVAL);
        c.request(0, CMD_DISC, 9, 0, 0);
        c.expect_eof();
    }
    srv.assert_alive();
}

#[test]
fn pipelined_requests_complete_with_matching_cookies() {
    let srv = Server::start(&[]);
    let (_, token) = srv.attached_volume();
    let mut c = srv.connect();
    c.go(&token, true);
    let n = 200u64;
    // Writes of distinct patterns, all sent before any reply is read.
    let mut batch = Vec::new();
    for i in 0..n {
        put_request(&mut batch, 0, CMD_WRITE, 1000 + i, i * 8192, 4096);
        batch.extend_from_slice(&[i as u8; 4096]);
    }
    c.0.write_all(&batch).unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n {
        let (cookie, err, _) = c.any_reply(None);
        assert_eq!(err, 0);
        assert!(
            (1000..1000 + n).contains(&cookie) && seen.insert(cookie),
            "cookie {cookie}"
        );
    }
    c.request(1, CMD_FLUSH, 1, 0, 0);
    assert_eq!(c.read_reply(1, false).0, 0);
    for i in 0..n {
        c.request(0, CMD_READ, 5000 + i, i * 8192, 4096);
    }
    let mut got = std::collections::HashMap::new();
    for _ in 0..n {
        let (cookie, err, data) = c.any_reply(Some(4096));
        assert_eq!(err, 0);
        got.insert(cookie, data);
    }
    for i in 0..n {
        assert_eq!(got[&(5000 + i)], vec![i as u8; 4096], "block {i}");
    }
    // base:allocation reports what was written.
    c.request(0, CMD_BLOCK_STATUS, 9, 0, 4 << 20);
    let (_, err, payload) = c.any_reply(None);
    assert_eq!(err, 0);
    let first_len = u32::from_be_bytes(payload[4..8].try_into().unwrap());
    let first_flags = u32::from_be_bytes(payload[8..12].try_into().unwrap());
    assert_eq!(first_flags, 0, "written data is allocated");
    assert!(first_len >= 4096);
}

/// Large write payloads are waited for with a raised receive low-water mark: a payload that
/// trickles in, in pieces with pauses, still completes (the mark never waits for more than is
/// missing), pipelined small requests behind it are served, and a client that hangs up halfway
/// through a payload leaves nothing of it written.
#[test]
fn large_payloads_that_trickle_in_complete() {
    let srv = Server::start(&[]);
    let (_, token) = srv.attached_volume();
    const MIB: usize = 1 << 20;
    let mut c = srv.connect();
    c.go(&token, true);
    c.0.set_nodelay(true).unwrap();
    let data: Vec<u8> = (0..3 * MIB / 2).map(|i| (i % 253) as u8).collect();
    c.request(0, CMD_WRITE, 1, 0, data.len() as u32);
    for piece in data.chunks(100_000) {
        c.0.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(15));
    }
    // A small write right behind it, in the same segment as the big one's last bytes would be.
    c.request(0, CMD_WRITE, 2, 4 * MIB as u64, 4096);
    c.0.write_all(&[7u8; 4096]).unwrap();
    let mut cookies = [c.any_reply(None), c.any_reply(None)];
    cookies.sort();
    assert_eq!(
        cookies.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(1, 0), (2, 0)]
    );
    c.request(0, CMD_READ, 3, 0, data.len() as u32);
    let (err, got) = c.read_reply(3, true);
    assert_eq!(err, 0);
    assert!(got == data, "the trickled payload reads back whole");

    // Half a payload, then the client is gone.
    let mut c = srv.connect();
    c.go(&token, true);
    c.request(0, CMD_WRITE, 4, 8 * MIB as u64, MIB as u32);
    c.0.write_all(&vec![9u8; MIB / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(c);
    let mut c = srv.connect();
    c.go(&token, true);
    c.request(0, CMD_READ, 5, 8 * MIB as u64, MIB as u32);
    let (err, got) = c.read_reply(5, true);
    assert_eq!(err, 0);
    assert!(
        got.iter().all(|&b| b == 0),
        "nothing of a cut payload is written"
    );
    srv.assert_alive();
}

/// Large writes of mixed sizes, pipelined back to back in one stream with small ones between
/// them, all land whole: the session reads each large payload up to its end, keeps its buffer
/// as large as the last large write (up to a cap, which one of these exceeds), and realigns it
/// between requests.
#[test]
fn pipelined_large_writes_of_mixed_sizes_land_whole() {
    let srv = Server::start(&[]);
    let (_, token) = srv.attached_volume();
    let mut c = srv.connect();
    c.go(&token, true);
    const KIB: u32 = 1024;
    let sizes = [
        1024 * KIB,
        4 * KIB,
        3072 * KIB,
        64 * KIB,
        5120 * KIB,
        8 * KIB,
        2052 * KIB,
        1024 * KIB,
    ];
    let mut batch = Vec::new();
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for (i, &len) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..len as usize)
            .map(|b| (b % 251) as u8 ^ i as u8)
            .collect();
        put_request(&mut batch, 0, CMD_WRITE, 100 + i as u64, offset, len);
        batch.extend_from_slice(&data);
        regions.push((offset, data));
        offset += u64::from(len) + 4096;
    }
    c.0.write_all(&batch).unwrap();
    let mut cookies: Vec<u64> = (0..sizes.len())
        .map(|_| {
            let (cookie, err, _) = c.any_reply(None);
            assert_eq!(err, 0, "write {cookie}");
            cookie
        })
        .collect();
    cookies.sort();
    assert_eq!(cookies, (100..100 + sizes.len() as u64).collect::<Vec<_>>());
    for (i, (offset, data)) in regions.iter().enumerate() {
        c.request(0, CMD_READ, 200 + i as u64, *offset, data.len() as u32);
        let (err, got) = c.read_reply(200 + i as u64, true);
        assert_eq!(err, 0);
        assert!(
            &got == data,
            "write {i} ({} bytes) reads back whole",
            data.len()
        );
    }
    srv.assert_alive();
}

#[test]
fn vanishing_clients_and_limits() {
    let srv = Server::start(&[
        "--nbd-handshake-timeout",
        "1s",
        "--nbd-max-connections",
        "4",
    ]);
    let (_, token) = srv.attached_volume();
    // A client that vanishes mid-payload.
    {
        let mut c = srv.connect();
        c.go(&token, false);
        c.request(0, CMD_WRITE, 1, 0, 1 << 20);
        c.0.write_all(&[1u8; 1000]).unwrap();
    }
    // A client that connects and never speaks is dropped after the handshake timeout.
    let mut silent = srv.connect();
    let mut b = [0u8; 18];
    silent.0.read_exact(&mut b).unwrap();
    silent.expect_eof();
    // The connection cap: beyond it, connections are closed at once.
    let held: Vec<Conn> = (0..4).map(|_| srv.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = srv.connect();
    let mut buf = [0u8; 1];
    let r = extra.0.read(&mut buf);
    assert!(
        matches!(r, Ok(0)) || r.is_err(),
        "over the cap: closed, got {r:?}"
    );
    drop(held);
    // Other connections are unaffected.
    std::thread::sleep(Duration::from_millis(200));
    let mut c = srv.connect();
    c.go(&token, true);
    c.request(0, CMD_READ, 3, 0, 4096);
    let (err, data) = c.read_reply(3, true);
    assert_eq!(err, 0);
    assert_eq!(data, vec![0u8; 4096], "the half-sent write never landed");
}

#[test]
fn detach_fences_open_sessions() {
    let srv = Server::start(&[]);
    let (volume_id, token) = srv.attached_volume();
    let mut c = srv.connect();
    c.go(&token, true);
    c.request(0, CMD_READ, 1, 0, 4096);
    assert_eq!(c.read_reply(1, true).0, 0);
    srv.detach(&volume_id);
    // The session is closed; if a request slips in first it gets ESHUTDOWN.
    c.request(0, CMD_WRITE, 2, 0, 512);
    let _ = c.0.write_all(&[9u8; 512]);
    let mut b = [0u8; 4];
    match c.0.read(&mut b) {
        Ok(0) | Err(_) => {}
        Ok(_) => {
            let magic = u32::from_be_bytes(b);
            assert!(magic == SIMPLE_MAGIC || magic == STRUCTURED_MAGIC);
            // Structured error chunk: flags(2) type(2) cookie(8) len(4) errno(4).
            let rest = c.bytes(if magic == SIMPLE_MAGIC { 12 } else { 20 });
            let errno = if magic == SIMPLE_MAGIC {
                u32::from_be_bytes(rest[0..4].try_into().unwrap())
            } else {
                u32::from_be_bytes(rest[16..20].try_into().unwrap())
            };
            assert_eq!(errno, ESHUTDOWN);
        }
    }
    // The old export name no longer opens.
    let mut c = srv.connect();
    c.greet(1);
    c.option(OPT_GO, &Conn::go_data(&token));
    assert_eq!(c.option_reply(OPT_GO).0, REP_ERR_UNKNOWN);
}

/// With `--nbd-sendfile`, large reads of cached data are sent from the page cache; holes, partly
/// cached ranges and small reads take the copying path. Replies of both kinds, pipelined and in
/// any order, must carry exactly the bytes written, with simple and with structured replies
/// (and without the option, through the copying path alone).
#[test]
fn large_reads_from_the_page_cache_interleave_with_small_ones() {
    for args in [&["--nbd-sendfile"][..], &[]] {
        large_reads_round_trip(args);
    }
}

fn large_reads_round_trip(args: &[&str]) {
    let srv = Server::start(args);
    let (_, token) = srv.attached_volume();
    const MIB: u64 = 1 << 20;
    let pattern = |i: u64| -> Vec<u8> {
        (0..MIB)
            .map(|b| (b.wrapping_mul(31) ^ i.wrapping_mul(7919)) as u8)
            .collect()
    };
    let mut c = srv.connect();
    c.go(&token, true);
    // MiB 0..4 written (cached); MiB 4..6 never written (a hole, not cached).
    for i in 0..4u64 {
        c.request(0, CMD_WRITE, 100 + i, i * MIB, MIB as u32);
        c.0.write_all(&pattern(i)).unwrap();
        assert_eq!(c.read_reply(100 + i, false).0, 0);
    }
    let mut expect = pattern(0);
    for i in 1..4 {
        expect.extend(pattern(i));
    }
    expect.extend(vec![0u8; 2 * MIB as usize]);
    for structured in [true, false] {
        let mut c = srv.connect();
        c.go(&token, structured);
        // (offset, len): whole MiBs, an unaligned span across two, one across data and hole,
        // a hole, and small reads between them.
        let reads: Vec<(u64, u32)> = vec![
            (0, MIB as u32),
            (512, 4096),
            (MIB - 512 * 3, (2 * MIB) as u32),
            (3 * MIB + 4096, MIB as u32),
            (4 * MIB, MIB as u32),
            (2 * MIB + 8192, 65536 + 512),
            (5 * MIB, 4096),
        ];
        for (k, (off, len)) in reads.iter().enumerate() {
            c.request(0, CMD_READ, 1 + k as u64, *off, *len);
        }
        let mut got = std::collections::HashMap::new();
        for _ in 0..reads.len() {
            // Simple replies carry no length: read the length of the request with that cookie,
            // which arrives in request order here only by chance, so peek at the cookie first.
            let (cookie, err, data) = if structured {
                c.any_reply(None)
            } else {
                assert_eq!(c.u32(), SIMPLE_MAGIC);
                let err = c.u32();
                let cookie = c.u64();
                let len = reads[(cookie - 1) as usize].1 as usize;
                (cookie, err, if err == 0 { c.bytes(len) } else { vec![] })
            };
            assert_eq!(err, 0, "read {cookie}");
            got.insert(cookie, data);
        }
        for (k, (off, len)) in reads.iter().enumerate() {
            let want = &expect[*off as usize..(*off + u64::from(*len)) as usize];
            assert!(
                got[&(1 + k as u64)] == want,
                "read {k} at {off}+{len} (structured: {structured})"
            );
        }
    }
}

/// Replies still queued when the attachment is detached must never carry what the volume's next
/// attachment writes afterwards. This is the test `--nbd-sendfile` fails (its replies take their
/// data when the client receives them), and the reason that option is off by default.
#[test]
fn replies_queued_at_a_detach_never_carry_the_next_attachments_writes() {
    let srv = Server::start(&[]);
    let (volume_id, token) = srv.attached_volume();
    const MIB: usize = 1 << 20;
    const READS: u64 = 16;
    let mut c = srv.connect();
    c.go(&token, true);
    c.request(0, CMD_WRITE, 1, 0, MIB as u32);
    c.0.write_all(&vec![0xAA; MIB]).unwrap();
    assert_eq!(c.read_reply(1, false).0, 0);
    // Reads of that MiB whose replies are not read yet: the sockets fill, and the rest of the
    // replies wait in the session as page-cache segments.
    for k in 0..READS {
        c.request(0, CMD_READ, 100 + k, 0, MIB as u32);
    }
    std::thread::sleep(Duration::from_millis(500));
    srv.detach(&volume_id);
    // The next attachment writes over the MiB.
    let host = srv.srv.register_host("next-host");
    let uri = srv.srv.attach(&volume_id, &host.instance_id).nbd_uri;
    let mut c2 = srv.connect();
    c2.go(uri.rsplit('/').next().unwrap(), true);
    c2.request(0, CMD_WRITE, 1, 0, MIB as u32);
    c2.0.write_all(&vec![0xBB; MIB]).unwrap();
    assert_eq!(c2.read_reply(1, false).0, 0);
    // What the first connection still gets is old data (or an error), then the connection ends.
    let mut complete = 0;
    let mut data_bytes = 0usize;
    'replies: loop {
        let mut head = [0u8; 20];
        if c.0.read_exact(&mut head).is_err() {
            break;
        }
        assert_eq!(
            u32::from_be_bytes(head[0..4].try_into().unwrap()),
            STRUCTURED_MAGIC
        );
        let kind = u16::from_be_bytes(head[6..8].try_into().unwrap());
        let len = u32::from_be_bytes(head[16..20].try_into().unwrap()) as usize;
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = 0;
        while left > 0 {
            let n = match c.0.read(&mut buf[..left.min(64 * 1024)]) {
                Ok(0) | Err(_) => break 'replies,
                Ok(n) => n,
            };
            if kind == 1 {
                // OFFSET_DATA: 8 bytes of offset, then data.
                for (i, b) in buf[..n].iter().enumerate() {
                    if pos + i >= 8 {
                        assert_eq!(*b, 0xAA, "reply data written after the detach leaked");
                        data_bytes += 1;
                    }
                }
            }
            pos += n;
            left -= n;
        }
        complete += 1;
    }
    // Requests in flight at a detach finish and get their replies; here every one of them,
    // with the data as it was.
    assert_eq!(complete, READS as usize);
    assert_eq!(data_bytes, READS as usize * MIB);
}

/// A connection keeps the size it was told: after ModifyVolume grows the volume from 1 to
/// 2 GiB, a connection opened before refuses I/O at 1 GiB (EINVAL, ENOSPC for writes and
/// zeroing, as the spec asks) while one opened after serves it.
#[test]
fn a_connection_keeps_the_size_it_negotiated_after_a_resize() {
    const CMD_TRIM: u16 = 4;
    const CMD_WRITE_ZEROES: u16 = 6;
    let srv = Server::start(&[]);
    let (volume_id, token) = srv.attached_volume();
    let olds: Vec<(bool, Conn)> = [false, true]
        .into_iter()
        .map(|structured| {
            let mut c = srv.connect();
            assert_eq!(c.go(&token, structured), GIB);
            (structured, c)
        })
        .collect();
    let mut client = srv.srv.client();
    srv.srv.ok(
        "ModifyVolume",
        srv.srv
            .block_on(client.modify_volume(proto::ebs::v1::ModifyVolumeRequest {
                volume_id: volume_id.clone(),
                size: Some(2),
                ..Default::default()
            })),
    );
    for (structured, mut old) in olds {
        let mut new = srv.connect();
        assert_eq!(new.go(&token, structured), 2 * GIB);
        old.expect_error(0, CMD_READ, GIB, 4096, EINVAL);
        old.expect_error(0, CMD_READ, GIB - 4096, 8192, EINVAL);
        old.expect_error(0, CMD_TRIM, GIB, 4096, EINVAL);
        old.expect_error(0, CMD_WRITE_ZEROES, GIB, 4096, ENOSPC);
        if structured {
            old.expect_error(0, CMD_BLOCK_STATUS, GIB, 4096, EINVAL);
        }
        old.request(0, CMD_WRITE, 3, GIB, 512);
        old.0.write_all(&[0xabu8; 512]).unwrap();
        assert_eq!(old.read_reply(3, false).0, ENOSPC);
        // Below the old size it still serves.
        old.request(0, CMD_READ, 4, GIB - 4096, 4096);
        assert_eq!(old.read_reply(4, true).0, 0);
        // The new connection reads the grown part, and the refused write never landed.
        new.request(0, CMD_READ, 5, GIB, 4096);
        let (err, data) = new.read_reply(5, true);
        assert_eq!((err, data), (0, vec![0u8; 4096]));
    }
    srv.assert_alive();
}
