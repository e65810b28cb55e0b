//! The NBD transmission phase of one connection.
//!
//! # Design
//! One task per connection does everything: it parses requests out of a read buffer, starts each
//! I/O as a future in a `FuturesUnordered`, and encodes replies into a write queue as they
//! complete, in completion order (replies go out of order, matched by cookie). There is no task
//! spawn and no channel per request: the only thread hop on the data path is the one to the I/O
//! engine and back.
//!
//! Write payloads are sliced out of the read buffer without copying (`BytesMut::split_to`) and
//! handed to the engine as `Bytes`. A small read that nothing makes wait, all of it in the
//! page cache, is answered as it is parsed: its data is read straight into the write buffer
//! after its reply header, with no future, no buffer of its own and no copy
//! ([`datapath::read_now`]). Other small read replies are copied into the write buffer, so many
//! replies leave in one `write`; large ones are queued as their own segment, and the queue goes
//! out in vectored writes. On plain TCP, a large read whose range is all in the page cache is
//! not read at all: its segment is the file range, and the kernel copies it into the socket
//! straight from a mapping of the volume file when it is sent, or, with `--nbd-sendfile`, hands
//! the page cache pages themselves to the socket (see [`storage_engine::pagecache`]). A file
//! segment keeps its request's gate guard until it is sent, and is sent only under
//! [`Export::access`]; a fence makes the session read the segments still queued into
//! memory and let go of their guards, so replies in flight at a detach complete with the data
//! of before it, and the fence never waits for a client to read. With `sendfile`, bytes already
//! in socket buffers at that moment are the reason the option is off by default (the pages
//! they reference can still change).
//!
//! A large write payload is received in one wake-up rather than in a dozen: while the session
//! waits for the rest of one (64 KiB or more), the socket's `SO_RCVLOWAT` is raised to what is
//! missing (at most [`LOWAT_MAX`]), so readiness is reported once that much has arrived, not for
//! every segment. The session knows exactly how many bytes are coming, so this cannot wait for
//! bytes a client will not send; once a payload is in, the mark drops back to one byte.
//!
//! Write payloads land cache-line aligned, because the kernel copies an aligned buffer into the
//! page cache much faster ([`PAYLOAD_ALIGN`]). A read that starts a request goes into an empty
//! buffer whose start is placed so that a payload after the header is aligned, and is large
//! enough for a write as large as the last large one; a large payload is read up to its end and
//! no further, so the request after it starts such a read.
//!
//! Writing replies is one more branch of the session's `select!`, not a step before it: while a
//! large reply drains into the socket, requests go on being read and started. What a client may
//! have the server hold is bounded by [`BYTE_BUDGET`]: payload bytes of requests in flight plus
//! reply bytes not yet written. Past it the session stops taking requests until replies leave,
//! so a client that sends but never reads cannot grow the server's memory.
//!
//! # Order of one request
//! header → flag/command checks → fencing gate ([`storage_engine::Gate::enter`]) → volume op
//! (bounds, alignment, engine) → reply.
//!
//! The session ends on `NBD_CMD_DISC`, client hang-up, fencing (detach), server shutdown or the
//! idle timeout; in each case in-flight requests finish and get their replies first. A protocol
//! violation (bad magic) is a hard disconnect.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use storage_engine::{Extent, FileRange, GateGuard, ReadData, SendMode, VolumeError, ZeroFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::handshake::{BLOCK_SIZE_MAX, Negotiated};
use super::tls::NbdStream;
use super::wire::*;
use crate::control::ErrorCode;
use crate::datapath::{self, IoError, IoRequest};
use crate::exports::Export;

/// Requests in flight per connection; beyond it the session stops reading until some complete.
const MAX_IN_FLIGHT: usize = 256;
/// Request payloads in flight plus reply bytes queued, at most (one request always proceeds).
const BYTE_BUDGET: u64 = 64 << 20;
/// Slices per vectored write.
const MAX_IOV: usize = 64;
/// A write payload up to this size past the maximum is read and discarded, then answered
/// `EINVAL`; a larger one closes the connection (reading it would take that long).
pub const SKIP_MAX: u32 = 2 * BLOCK_SIZE_MAX;
/// Read replies up to this size are copied into the shared write buffer.
const INLINE_REPLY: usize = 64 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 256 * 1024;
/// Extents per BLOCK_STATUS reply at most (the spec lets servers return fewer than asked).
const MAX_EXTENTS: usize = 1024;
/// The receive low-water mark is raised for a payload only when at least this much is missing.
const LOWAT_MIN: usize = 64 * 1024;
/// The receive low-water mark at most (the kernel grows the receive buffer to fit it).
const LOWAT_MAX: usize = 1 << 20;
/// Alignment of write payloads in the read buffer. The kernel copies a payload into the page
/// cache much faster from a cache-line-aligned buffer: on the benchmark machine a 1 MiB `pwrite`
/// from a source 16 or 48 bytes off a cache line took 1.3-1.8x the CPU of one from an aligned
/// source (`scripts/pwrite_align.py`, BENCHMARKS.md).
const PAYLOAD_ALIGN: usize = 64;
/// The read buffer is kept large enough for a write of up to this many bytes (header included)
/// once the client has sent one, so that the next such payload arrives in place, not copied.
const EXPECT_MAX: usize = 4 << 20;

/// How a request ended.
struct Done {
    cookie: u64,
    offset: u64,
    /// Payload bytes of the request (read length or write payload), released from the budget.
    bytes: u64,
    result: Result<Payload, Failure>,
}

enum Payload {
    None,
    Read(ReadReply),
}

/// The data of a read.
enum ReadReply {
    Mem(Vec<u8>),
    /// Left in the page cache, with the gate guard of its request: a fence waits for it until
    /// the data is sent or read into memory ([`OutQueue::materialize`]).
    Cached(FileRange, GateGuard),
}

struct Failure {
    errno: u32,
    message: String,
}

type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A queued piece of reply stream.
enum Segment {
    Mem(Bytes),
    /// Read data still in the volume file's page cache, sent from there (copied from a mapping
    /// of the file, or with `sendfile`). The guard keeps the attachment's gate entered, so a
    /// fence cannot complete, and the volume's next attachment cannot write, while the data is
    /// still to be taken from the file.
    File(
        FileRange,
        #[allow(dead_code, reason = "held, not read")] GateGuard,
    ),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Mem(b) => b.len() as u64,
            Segment::File(r, _) => r.len(),
        }
    }
}

/// Replies waiting to be written, in order: `segments`, then `cur`.
#[derive(Default)]
struct OutQueue {
    cur: BytesMut,
    segments: VecDeque<Segment>,
    /// Bytes in `segments`.
    segment_bytes: u64,
    /// Bytes went to the writer since its last flush.
    unflushed: bool,
}

impl OutQueue {
    fn is_empty(&self) -> bool {
        self.cur.is_empty() && self.segments.is_empty()
    }

    /// Bytes waiting to be written.
    fn queued(&self) -> u64 {
        self.segment_bytes + self.cur.len() as u64
    }

    /// Queues `seg` after everything so far, without copying it.
    fn push_segment(&mut self, seg: Segment) {
        if !self.cur.is_empty() {
            let head = self.cur.split().freeze();
            self.segment_bytes += head.len() as u64;
            self.segments.push_back(Segment::Mem(head));
        }
        self.segment_bytes += seg.len();
        self.segments.push_back(seg);
    }

    /// One write of as much of the queue as the socket takes: a vectored write of the memory
    /// before the first file segment, or a send of that segment when it comes first. Once
    /// the queue is empty, a flush (TLS may hold its last record until then). Cancel-safe: the
    /// queue advances only by what a completed write took.
    async fn write_some<W: ReplyWriter>(
        &mut self,
        wr: &mut W,
        export: &Export,
    ) -> std::io::Result<()> {
        if self.is_empty() {
            wr.flush().await?;
            self.unflushed = false;
            return Ok(());
        }
        let n = match self.segments.front() {
            Some(Segment::File(range, _)) => loop {
                wr.writable().await?;
                // The data leaves the page cache now: only while the reservation lets the
                // attachment read, and not once a fence has begun (the fence waits for this
                // segment's gate guard: read the data now, send it later).
                let Some(_access) = export.access(false).await else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "a reservation no longer lets the attachment read; its reply is not sent",
                    ));
                };
                if export.gate.is_fenced() {
                    return self.materialize();
                }
                match wr.try_send_file(range) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    r => break r?,
                }
            },
            _ => {
                let mut iov: Vec<std::io::IoSlice<'_>> = Vec::new();
                let mut all = true;
                for seg in &self.segments {
                    match seg {
                        Segment::Mem(b) if iov.len() < MAX_IOV => {
                            iov.push(std::io::IoSlice::new(b));
                        }
                        _ => {
                            all = false;
                            break;
                        }
                    }
                }
                if all && iov.len() < MAX_IOV && !self.cur.is_empty() {
                    iov.push(std::io::IoSlice::new(&self.cur));
                }
                wr.write_vectored(&iov).await?
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.unflushed = true;
        let mut left = n as u64;
        while left > 0 {
            match self.segments.front_mut() {
                Some(seg) if seg.len() <= left => {
                    left -= seg.len();
                    self.segment_bytes -= seg.len();
                    self.segments.pop_front();
                }
                Some(Segment::Mem(b)) => {
                    b.advance(left as usize);
                    self.segment_bytes -= left;
                    left = 0;
                }
                Some(Segment::File(r, _)) => {
                    r.advance(left);
                    self.segment_bytes -= left;
                    left = 0;
                }
                None => {
                    self.cur.advance(left as usize);
                    left = 0;
                }
            }
        }
        Ok(())
    }

    /// Reads every queued file segment into memory and lets go of its gate guard: on a fence,
    /// which must not wait for a client to read its replies, and after which the file must not
    /// be read for this attachment.
    fn materialize(&mut self) -> std::io::Result<()> {
        for seg in &mut self.segments {
            if let Segment::File(range, _) = seg {
                *seg = Segment::Mem(Bytes::from(range.read_to_vec()?));
            }
        }
        Ok(())
    }
}

/// The sending half of a connection.
pub(crate) trait ReplyWriter: AsyncWrite + Unpin + Send {
    /// Whether [`ReplyWriter::try_send_file`] works here (plain TCP; not TLS, whose records are
    /// encrypted in user space).
    fn sends_files(&self) -> bool;

    /// Waits until the socket may take more bytes.
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Sends as much of `range` as the socket takes now, without waiting, as the range's
    /// [`SendMode`] says; `WouldBlock` if it takes nothing.
    fn try_send_file(&self, range: &FileRange) -> std::io::Result<usize>;
}

impl ReplyWriter for tokio::net::tcp::OwnedWriteHalf {
    fn sends_files(&self) -> bool {
        true
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        let tcp: &tokio::net::TcpStream = self.as_ref();
        tcp.writable()
    }

    fn try_send_file(&self, range: &FileRange) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let tcp: &tokio::net::TcpStream = self.as_ref();
        tcp.try_io(tokio::io::Interest::WRITABLE, || {
            range.send_to(tcp.as_raw_fd())
        })
    }
}

impl<S: AsyncWrite + Send> ReplyWriter for tokio::io::WriteHalf<S> {
    fn sends_files(&self) -> bool {
        false
    }

    // Never called: reads ask for file ranges only where `sends_files` is true.
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Err(std::io::ErrorKind::Unsupported.into()))
    }

    fn try_send_file(&self, _range: &FileRange) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// The `SO_RCVLOWAT` of a plain TCP connection, as last set.
struct LowWater {
    /// The connection's socket; the session owns both halves, so it stays open.
    fd: std::os::fd::RawFd,
    mark: usize,
}

impl LowWater {
    fn new(tcp: &tokio::net::TcpStream) -> LowWater {
        use std::os::fd::AsRawFd;
        LowWater {
            fd: tcp.as_raw_fd(),
            mark: 1,
        }
    }

    /// Sets the mark to `mark` bytes if it is not already. A failure only costs wake-ups, so it
    /// is ignored (and not retried).
    fn set(&mut self, mark: usize) {
        if mark == self.mark {
            return;
        }
        self.mark = mark;
        // At most LOWAT_MAX, so it fits.
        let value = mark as libc::c_int;
        // SAFETY: setsockopt reads one c_int from a live local; the socket is open (see `fd`).
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

/// Session settings.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Close a connection with nothing in flight after this long without a request.
    pub idle_timeout: Option<Duration>,
    /// Send large cached reads as page references (`--nbd-sendfile`) rather than copied from a
    /// mapping of the file (plain TCP only, either way).
    pub sendfile: bool,
}

struct Session {
    export: Arc<Export>,
    /// The size negotiated: requests past it are refused even if the volume has grown since.
    size: u64,
    structured: bool,
    base_allocation: bool,
    rbuf: BytesMut,
    out: OutQueue,
    inflight: FuturesUnordered<Pending>,
    /// Bytes of an oversized write payload still to discard.
    skip: u64,
    /// The oversized write being discarded: answered `EINVAL` once its payload is consumed,
    /// so the client never gets a reply to a request it is still sending.
    skipped: Option<Request>,
    /// Payload bytes of the requests in flight (see [`BYTE_BUDGET`]).
    inflight_bytes: u64,
    /// `parse` stopped at the byte budget: read no more until replies leave.
    over_budget: bool,
    /// No more requests are read; the session ends once `inflight` drains.
    closing: bool,
    /// Bytes of a write payload still to arrive (0: none is being received).
    missing: usize,
    /// Header plus payload of the last large write (at most [`EXPECT_MAX`]; 0 before one): the
    /// read buffer is kept this large, so that the next one arrives in place.
    expect: usize,
    /// How large cached reads are sent from the page cache (see
    /// [`ReplyWriter::try_send_file`]); `None`: they are read into memory.
    sends_files: Option<SendMode>,
}

/// Serves requests on `stream` until the session ends.
pub async fn serve(
    stream: NbdStream,
    neg: Negotiated,
    cfg: SessionConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    match stream {
        // TCP splits into owned halves without a lock; TLS state is shared by both directions.
        NbdStream::Plain(tcp) => {
            let lowat = LowWater::new(&tcp);
            let (rd, wr) = tcp.into_split();
            serve_halves(rd, wr, neg, cfg, shutdown, Some(lowat)).await
        }
        NbdStream::Tls(tls) => {
            let (rd, wr) = tokio::io::split(*tls);
            // The low-water mark would count ciphertext, and TLS reads ahead: not worth it.
            serve_halves(rd, wr, neg, cfg, shutdown, None).await
        }
        // A Unix socket takes the generic path: no sendfile, no low-water mark.
        NbdStream::Unix(unix) => {
            let (rd, wr) = tokio::io::split(unix);
            serve_halves(rd, wr, neg, cfg, shutdown, None).await
        }
    }
}

async fn serve_halves<R, W>(
    mut rd: R,
    mut wr: W,
    neg: Negotiated,
    cfg: SessionConfig,
    mut shutdown: watch::Receiver<bool>,
    mut lowat: Option<LowWater>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: ReplyWriter,
{
    let mut fence = neg.export.fence_signal();
    let mut s = Session {
        export: neg.export,
        size: neg.size,
        structured: neg.structured,
        base_allocation: neg.base_allocation,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        out: OutQueue::default(),
        inflight: FuturesUnordered::new(),
        skip: 0,
        skipped: None,
        missing: 0,
        expect: 0,
        inflight_bytes: 0,
        over_budget: false,
        closing: false,
        sends_files: wr.sends_files().then_some(if cfg.sendfile {
            SendMode::PageRefs
        } else {
            SendMode::Copy
        }),
    };
    // A fence seen: replies go on being sent, but none from the page cache.
    let mut fence_seen = *fence.borrow();
    if fence_seen || *shutdown.borrow() {
        s.closing = true;
    }
    loop {
        if let Err(violation) = s.parse() {
            tracing::debug!(volume_id = %s.export.volume_id, "{violation}; disconnecting");
            // Hard disconnect, but let in-flight I/O finish (their guards keep fencing exact).
            while s.inflight.next().await.is_some() {}
            return Ok(());
        }
        let writing = !s.out.is_empty() || s.out.unflushed;
        if s.closing && s.inflight.is_empty() && !writing {
            break;
        }
        // The rest of a large payload still to come: the low-water mark waits for it, and the
        // read stops at its end, so that the request after it starts a read of its own, into
        // an empty buffer that `prepare_read` aligns.
        let payload_left = (s.missing >= LOWAT_MIN).then_some(s.missing);
        if let Some(lw) = &mut lowat {
            lw.set(payload_left.map_or(1, |m| m.min(LOWAT_MAX)));
        }
        let reading = !s.closing && !s.over_budget && s.inflight.len() < MAX_IN_FLIGHT;
        let limit = payload_left.unwrap_or(usize::MAX);
        let (rbuf, expect) = (&mut s.rbuf, s.expect);
        // The buffer is readied only when the read is about to happen: by then an inline write
        // has released its payload, and an empty buffer can be reused in place.
        let read = async {
            prepare_read(rbuf, expect);
            rd.read_buf(&mut rbuf.limit(limit)).await
        };
        let idle = async {
            match cfg.idle_timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(done) = s.inflight.next(), if !s.inflight.is_empty() => {
                s.encode(done);
                // Batch every other reply that is already done into the same write.
                while let Some(Some(done)) = s.inflight.next().now_or_never() {
                    s.encode(done);
                }
            }
            r = s.out.write_some(&mut wr, &s.export), if writing => r?,
            r = read, if reading => {
                if r? == 0 {
                    s.closing = true;
                }
            }
            _ = fence.changed(), if !fence_seen => {
                tracing::info!(volume_id = %s.export.volume_id, instance_id = %s.export.instance_id, "attachment fenced; closing NBD session");
                fence_seen = true;
                s.closing = true;
                s.out.materialize()?;
            }
            _ = shutdown.changed(), if !s.closing => s.closing = true,
            () = idle, if reading && s.inflight.is_empty() => {
                tracing::info!(volume_id = %s.export.volume_id, "NBD session idle; closing");
                s.closing = true;
            }
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

/// Readies the read buffer for a read: room for at least `READ_CHUNK / 4` more bytes, and when
/// it is empty (the read starts a request), room for a write of `expect` bytes whose payload
/// lands aligned.
fn prepare_read(rbuf: &mut BytesMut, expect: usize) {
    if rbuf.is_empty() {
        if rbuf.capacity() < expect.max(READ_CHUNK / 4) + PAYLOAD_ALIGN {
            // With nothing else referring to its memory (payloads split off it are written and
            // let go), an empty buffer is reused without a copy.
            rbuf.reserve(expect.max(READ_CHUNK) + PAYLOAD_ALIGN);
        }
        align_payload(rbuf);
    } else if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
        rbuf.reserve(READ_CHUNK);
    }
}

/// Moves the start of the empty read buffer forward so that the payload of a write whose header
/// is the next thing read starts on a [`PAYLOAD_ALIGN`] boundary. Costs less than
/// `PAYLOAD_ALIGN` bytes of capacity; with too little capacity left, leaves the buffer as it is.
fn align_payload(rbuf: &mut BytesMut) {
    debug_assert!(rbuf.is_empty());
    // Where the payload after a header read into this empty buffer would start.
    let payload = rbuf.as_ptr() as usize + REQUEST_LEN;
    let pad = payload.wrapping_neg() % PAYLOAD_ALIGN;
    if pad > 0 && rbuf.capacity() >= pad + READ_CHUNK / 4 {
        rbuf.put_bytes(0, pad);
        rbuf.advance(pad);
    }
}

impl Session {
    /// Consumes every complete request in the read buffer.
    fn parse(&mut self) -> Result<(), &'static str> {
        self.missing = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.rbuf.len() as u64) as usize;
                self.rbuf.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(());
                }
                if let Some(req) = self.skipped.take() {
                    self.fail(
                        &req,
                        EINVAL,
                        format!("write of {} bytes exceeds the 32 MiB maximum", req.len),
                    );
                }
            }
            self.over_budget = false;
            if self.closing || self.inflight.len() >= MAX_IN_FLIGHT || self.rbuf.len() < REQUEST_LEN
            {
                return Ok(());
            }
            let header: &[u8; REQUEST_LEN] = self.rbuf[..REQUEST_LEN]
                .try_into()
                .map_err(|_| "short header")?;
            let req = decode_request(header).ok_or("bad request magic")?;
            // The budget holds back a request until replies leave; one request always runs,
            // however large (sizes are capped at BLOCK_SIZE_MAX below).
            let held = self.inflight_bytes + self.out.queued();
            let cost = match req.cmd {
                CMD_READ | CMD_WRITE if req.len <= BLOCK_SIZE_MAX => u64::from(req.len),
                _ => 0,
            };
            if held > 0 && held + cost > BYTE_BUDGET {
                self.over_budget = true;
                return Ok(());
            }
            let mut payload = Bytes::new();
            if req.cmd == CMD_WRITE {
                if req.len > SKIP_MAX {
                    // Far past the maximum: not worth reading. The spec lets a server close
                    // the connection on an oversized write; in-flight requests still finish.
                    tracing::debug!(volume_id = %self.export.volume_id, len = req.len, "write far past the 32 MiB maximum; disconnecting");
                    self.closing = true;
                    return Ok(());
                }
                if req.len > BLOCK_SIZE_MAX {
                    // Stay in sync with the stream: discard the payload as it arrives.
                    self.rbuf.advance(REQUEST_LEN);
                    self.skip = u64::from(req.len);
                    self.skipped = Some(req);
                    continue;
                }
                let need = REQUEST_LEN + req.len as usize;
                if req.len as usize >= LOWAT_MIN {
                    self.expect = need.min(EXPECT_MAX);
                }
                if self.rbuf.len() < need {
                    self.missing = need - self.rbuf.len();
                    if self.rbuf.capacity() < need {
                        // A buffer of its own, in which the payload keeps its alignment.
                        let mut fresh = BytesMut::with_capacity(need + PAYLOAD_ALIGN + READ_CHUNK);
                        align_payload(&mut fresh);
                        fresh.extend_from_slice(&self.rbuf);
                        self.rbuf = fresh;
                    }
                    return Ok(());
                }
                self.rbuf.advance(REQUEST_LEN);
                payload = self.rbuf.split_to(req.len as usize).freeze();
            } else {
                self.rbuf.advance(REQUEST_LEN);
            }
            self.dispatch(req, payload);
        }
    }

    fn fail(&mut self, req: &Request, errno: u32, message: String) {
        self.encode(Done {
            cookie: req.cookie,
            offset: req.offset,
            bytes: 0,
            result: Err(Failure { errno, message }),
        });
    }

    /// Checks a request and starts it.
    fn dispatch(&mut self, req: Request, payload: Bytes) {
        const KNOWN: u16 =
            CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE | CMD_FLAG_FAST_ZERO;
        let f = req.flags;
        let bad_flags = f & !KNOWN != 0
            || (f & CMD_FLAG_DF != 0 && (req.cmd != CMD_READ || !self.structured))
            || (f & CMD_FLAG_REQ_ONE != 0 && req.cmd != CMD_BLOCK_STATUS)
            || (f & (CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO) != 0 && req.cmd != CMD_WRITE_ZEROES);
        match req.cmd {
            CMD_DISC => {
                self.closing = true;
                return;
            }
            CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_CACHE | CMD_WRITE_ZEROES
            | CMD_BLOCK_STATUS => {}
            other => return self.fail(&req, EINVAL, format!("unknown command {other}")),
        }
        if bad_flags {
            return self.fail(
                &req,
                EINVAL,
                format!("flags {f:#x} are not valid for command {}", req.cmd),
            );
        }
        if req.cmd == CMD_READ && req.len > BLOCK_SIZE_MAX {
            return self.fail(
                &req,
                EINVAL,
                format!("read of {} bytes exceeds the 32 MiB maximum", req.len),
            );
        }
        let end = req.offset.checked_add(u64::from(req.len));
        if req.cmd != CMD_FLUSH && end.is_none_or(|end| end > self.size) {
            let errno = match req.cmd {
                // The spec: ENOSPC for writes (zeroing included), EINVAL for reads and trims.
                CMD_WRITE | CMD_WRITE_ZEROES => ENOSPC,
                _ => EINVAL,
            };
            return self.fail(
                &req,
                errno,
                format!(
                    "{} bytes at {} go past the {} bytes negotiated for this connection",
                    req.len, req.offset, self.size
                ),
            );
        }
        if req.cmd == CMD_BLOCK_STATUS && !self.base_allocation {
            return self.fail(&req, EINVAL, "no metadata context was negotiated".into());
        }
        let Some(guard) = self.export.gate.enter() else {
            self.closing = true;
            return self.fail(
                &req,
                ESHUTDOWN,
                "the attachment was detached (fenced)".into(),
            );
        };
        let vol = &self.export.open.volume;
        let (offset, len) = (req.offset, u64::from(req.len));
        match req.cmd {
            // Synchronous metadata operations: answered inline.
            CMD_BLOCK_STATUS => {
                let max = if f & CMD_FLAG_REQ_ONE != 0 {
                    1
                } else {
                    MAX_EXTENTS
                };
                // A restoring volume's cold blocks are holes in its file but hold snapshot
                // data: until it is fully local, report everything as data.
                let restoring = self
                    .export
                    .open
                    .hydration
                    .as_ref()
                    .is_some_and(|h| !h.is_complete());
                let status = vol.block_status(offset, len, max).map(|extents| {
                    if restoring {
                        let total = extents.iter().map(|e| e.length).sum();
                        vec![Extent {
                            length: total,
                            hole: false,
                        }]
                    } else {
                        extents
                    }
                });
                match status {
                    Ok(extents) => self.encode_block_status(req.cookie, &extents),
                    Err(e) => {
                        let e = IoError::Volume(e);
                        self.fail(&req, errno(req.cmd, &e), e.to_string())
                    }
                }
                drop(guard);
            }
            CMD_CACHE => {
                let r = vol.cache(offset, len).map(|()| Payload::None);
                drop(guard);
                self.encode(done(req, r));
            }
            _ => {
                let mut admitted = None;
                if req.cmd == CMD_READ && len <= INLINE_REPLY as u64 {
                    match self.read_now(&req, &guard) {
                        Ok(()) => return,
                        Err(a) => admitted = Some(a),
                    }
                }
                let bytes = match req.cmd {
                    CMD_READ => len,
                    _ => payload.len() as u64,
                };
                self.inflight_bytes += bytes;
                // Reads too large to copy into the shared write buffer may stay in the page cache.
                let to_socket = self.sends_files.filter(|_| len > INLINE_REPLY as u64);
                let fut = run(
                    Arc::clone(&self.export),
                    guard,
                    req,
                    payload,
                    bytes,
                    to_socket,
                    admitted,
                );
                self.inflight.push(Box::pin(fut));
            }
        }
    }

    /// Answers a small read at once, its data read straight into the reply buffer after its
    /// reply header, if nothing makes it wait ([`datapath::read_now`]); otherwise leaves the
    /// buffer as it was and returns the request's throttle tokens, taken.
    fn read_now(&mut self, req: &Request, guard: &GateGuard) -> Result<(), datapath::Admitted> {
        let (offset, len) = (req.offset, u64::from(req.len));
        let cur = &mut self.out.cur;
        let mark = cur.len();
        put_read_header(cur, self.structured, req.cookie, offset, len);
        datapath::read_now(&self.export, guard, offset, len, cur).inspect_err(|_| {
            cur.truncate(mark);
        })
    }

    /// Encodes the reply of a finished request.
    fn encode(&mut self, d: Done) {
        self.inflight_bytes -= d.bytes;
        let out = &mut self.out;
        match d.result {
            Ok(Payload::Read(read)) => {
                let len = match &read {
                    ReadReply::Mem(data) => data.len() as u64,
                    ReadReply::Cached(range, _) => range.len(),
                };
                put_read_header(&mut out.cur, self.structured, d.cookie, d.offset, len);
                match read {
                    ReadReply::Mem(data) if data.len() <= INLINE_REPLY => {
                        out.cur.extend_from_slice(&data);
                    }
                    ReadReply::Mem(data) => out.push_segment(Segment::Mem(Bytes::from(data))),
                    ReadReply::Cached(range, guard) => {
                        out.push_segment(Segment::File(range, guard));
                    }
                }
            }
            // Simple replies are allowed for payload-less success even with structured replies.
            Ok(Payload::None) => put_simple_reply(&mut out.cur, 0, d.cookie),
            Err(f) => {
                if self.structured {
                    put_error_chunk(&mut out.cur, d.cookie, f.errno, &f.message);
                } else {
                    put_simple_reply(&mut out.cur, f.errno, d.cookie);
                }
            }
        }
    }

    fn encode_block_status(&mut self, cookie: u64, extents: &[Extent]) {
        let cur = &mut self.out.cur;
        put_chunk_header(
            cur,
            REPLY_FLAG_DONE,
            REPLY_TYPE_BLOCK_STATUS,
            cookie,
            4 + 8 * extents.len() as u32,
        );
        cur.put_u32(META_BASE_ALLOCATION_ID);
        for e in extents {
            // The request length is a u32, so every extent within it fits.
            cur.put_u32(e.length as u32);
            cur.put_u32(if e.hole { STATE_HOLE | STATE_ZERO } else { 0 });
        }
    }
}

/// The reply header of a successful read of `len` bytes at `offset`, which its data follows:
/// one structured data chunk, or a simple reply.
fn put_read_header(cur: &mut BytesMut, structured: bool, cookie: u64, offset: u64, len: u64) {
    if structured {
        put_chunk_header(
            cur,
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            cookie,
            // Reads are at most BLOCK_SIZE_MAX (32 MiB).
            8 + len as u32,
        );
        cur.put_u64(offset);
    } else {
        put_simple_reply(cur, 0, cookie);
    }
}

fn done(req: Request, r: Result<Payload, VolumeError>) -> Done {
    Done {
        cookie: req.cookie,
        offset: req.offset,
        bytes: 0,
        result: r.map_err(|e| {
            let e = IoError::Volume(e);
            Failure {
                errno: errno(req.cmd, &e),
                message: e.to_string(),
            }
        }),
    }
}

/// Runs one I/O request through the shared data path (its throttle tokens already taken if
/// `admitted`); `guard` keeps the attachment's gate entered until it completes, or, for read
/// data left in the page cache, until that is sent.
async fn run(
    export: Arc<Export>,
    guard: GateGuard,
    req: Request,
    payload: Bytes,
    bytes: u64,
    to_socket: Option<SendMode>,
    admitted: Option<datapath::Admitted>,
) -> Done {
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let (offset, len) = (req.offset, u64::from(req.len));
    let io = match req.cmd {
        CMD_READ => IoRequest::Read {
            offset,
            len,
            to_socket,
        },
        CMD_WRITE => IoRequest::Write {
            offset,
            data: payload,
            fua,
        },
        CMD_FLUSH => IoRequest::Flush,
        CMD_TRIM => IoRequest::Trim { offset, len, fua },
        // `dispatch` sends only READ, WRITE, FLUSH, TRIM and WRITE_ZEROES here.
        _ => IoRequest::WriteZeroes {
            offset,
            len,
            flags: ZeroFlags {
                may_trim: req.flags & CMD_FLAG_NO_HOLE == 0,
                fast_only: req.flags & CMD_FLAG_FAST_ZERO != 0,
                fua,
            },
        },
    };
    // One call, not one per case: each would be a future of its own in this one's state.
    let admitted = admitted.unwrap_or_else(|| datapath::admit(&export, &io));
    let result = datapath::execute(&export, &guard, io, admitted).await;
    Done {
        cookie: req.cookie,
        offset: req.offset,
        bytes,
        result: result
            .map(|data| match data {
                None => Payload::None,
                Some(ReadData::Bytes(v)) => Payload::Read(ReadReply::Mem(v)),
                Some(ReadData::File(range)) => Payload::Read(ReadReply::Cached(range, guard)),
            })
            .map_err(|e| Failure {
                errno: errno(req.cmd, &e),
                message: e.to_string(),
            }),
    }
}

/// The NBD errno of a failed request: its code's (see [`ErrorCode`]'s table), except that a
/// write or zeroing past the end is `ENOSPC`, as the spec asks (a read or trim past it is
/// `EINVAL`).
fn errno(cmd: u16, e: &IoError) -> u32 {
    match e.code() {
        ErrorCode::BlockOutOfRange if matches!(cmd, CMD_WRITE | CMD_WRITE_ZEROES) => ENOSPC,
        code => code.nbd_errno(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the payload of a write whose header is read next into `rbuf` would start.
    fn payload_addr(rbuf: &BytesMut) -> usize {
        rbuf.as_ptr() as usize + rbuf.len() + REQUEST_LEN
    }

    #[test]
    fn an_empty_read_buffer_lands_the_next_payload_aligned() {
        for start in 0..PAYLOAD_ALIGN {
            let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
            // Any starting position, as consumed requests leave it.
            rbuf.put_bytes(0, start);
            rbuf.advance(start);
            align_payload(&mut rbuf);
            assert!(rbuf.is_empty());
            assert_eq!(payload_addr(&rbuf) % PAYLOAD_ALIGN, 0, "start {start}");
        }
    }

    #[test]
    fn preparing_a_read_makes_room_for_the_expected_write() {
        let expect = REQUEST_LEN + (1 << 20);
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        rbuf.put_bytes(0, 3);
        rbuf.advance(3);
        prepare_read(&mut rbuf, expect);
        assert!(rbuf.capacity() >= expect);
        assert_eq!(payload_addr(&rbuf) % PAYLOAD_ALIGN, 0);
        // Once a payload has been split off and let go, the same memory is used again.
        rbuf.put_bytes(7, expect);
        let addr = rbuf.as_ptr() as usize;
        drop(rbuf.split_to(expect).freeze());
        prepare_read(&mut rbuf, expect);
        assert!(rbuf.capacity() >= expect);
        assert!(
            (rbuf.as_ptr() as usize).abs_diff(addr) < PAYLOAD_ALIGN,
            "the buffer was reallocated"
        );
        assert_eq!(payload_addr(&rbuf) % PAYLOAD_ALIGN, 0);
        // A buffer holding part of a request only gets room to read more.
        rbuf.put_bytes(1, 10);
        prepare_read(&mut rbuf, expect);
        assert_eq!(rbuf.len(), 10);
        assert!(rbuf.capacity() - rbuf.len() >= READ_CHUNK / 4);
    }

    #[test]
    fn errnos_follow_the_spec() {
        let oob = || {
            IoError::Volume(VolumeError::OutOfBounds {
                offset: 0,
                len: 512,
                size: 0,
            })
        };
        assert_eq!(errno(CMD_WRITE, &oob()), ENOSPC);
        assert_eq!(errno(CMD_WRITE_ZEROES, &oob()), ENOSPC);
        assert_eq!(errno(CMD_TRIM, &oob()), EINVAL);
        assert_eq!(errno(CMD_READ, &oob()), EINVAL);
        assert_eq!(errno(CMD_BLOCK_STATUS, &oob()), EINVAL);
        let vol = |e| IoError::Volume(e);
        assert_eq!(errno(CMD_READ, &vol(VolumeError::ZeroLength)), EINVAL);
        assert_eq!(
            errno(CMD_WRITE_ZEROES, &vol(VolumeError::FastZeroUnsupported)),
            ENOTSUP
        );
        assert_eq!(errno(CMD_WRITE, &vol(VolumeError::Failed)), EIO);
        assert_eq!(errno(CMD_READ, &vol(VolumeError::EngineStopped)), ESHUTDOWN);
        assert_eq!(errno(CMD_READ, &IoError::Fenced), ESHUTDOWN);
        assert_eq!(errno(CMD_WRITE, &IoError::Reservation("x".into())), EPERM);
    }
}
