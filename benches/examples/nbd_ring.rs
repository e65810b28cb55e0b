//! Measurement spike: the server CPU a small cached NBD read costs when the socket is driven by
//! epoll (`epoll_wait`, `recv`, `writev`: what volume-server's runtime does) or by io_uring
//! (one `io_uring_enter` sends the replies and waits for the next request). Not a server: it
//! serves one read-only connection to one file, simple replies only, reads only, and exists to
//! decide whether moving the NBD session onto a ring would pay (BENCHMARKS.md, "A ring for the
//! socket").
//!
//! ```sh
//! cargo run --release -p benches --example nbd_ring -- FILE PORT epoll|ring
//! fio --name=r --ioengine=nbd --uri=nbd://127.0.0.1:PORT/ --rw=randread --bs=4k --iodepth=32 ...
//! ```
//!
//! Both drivers read the file with the same synchronous `pread` into the reply buffer, so the
//! only difference is how the socket is waited on, read and written.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

use bytes::{BufMut, BytesMut};
use io_uring::{IoUring, opcode, types};
use volume_server::nbd::wire::{
    CMD_DISC, CMD_READ, EINVAL, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO_EXPORT,
    NBDMAGIC, OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, REP_ACK, REP_ERR_UNSUP, REP_INFO,
    REQUEST_LEN, TF_HAS_FLAGS, decode_request, put_option_reply, put_simple_reply,
};

/// Transmission flag: the export is read-only.
const TF_READ_ONLY: u16 = 1 << 1;
const READ_CHUNK: usize = 256 * 1024;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, port, driver] = args.as_slice() else {
        eprintln!("usage: nbd_ring FILE PORT epoll|ring");
        std::process::exit(2);
    };
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("a port")))?;
    println!("listening");
    // fio connects once per job; serve connections one after another until killed.
    for conn in listener.incoming() {
        let mut sock = conn?;
        sock.set_nodelay(true)?;
        if !handshake(&mut sock, size)? {
            continue;
        }
        let served = match driver.as_str() {
            "epoll" => serve_epoll(&sock, &file),
            "ring" => serve_ring(&sock, &file),
            other => panic!("unknown driver {other}"),
        };
        if let Err(e) = served {
            eprintln!("connection ended: {e}");
        }
    }
    Ok(())
}

/// Fixed newstyle negotiation: `NBD_OPT_GO`/`INFO` and `EXPORT_NAME` for the one export, every
/// other option refused (so libnbd falls back to simple replies). Whether transmission began.
fn handshake(s: &mut TcpStream, size: u64) -> io::Result<bool> {
    let mut out = BytesMut::new();
    out.put_u64(NBDMAGIC);
    out.put_u64(IHAVEOPT);
    out.put_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    s.write_all(&out)?;
    let mut client_flags = [0u8; 4];
    s.read_exact(&mut client_flags)?;
    let tflags = TF_HAS_FLAGS | TF_READ_ONLY;
    loop {
        let mut head = [0u8; 16];
        s.read_exact(&mut head)?;
        let option = u32::from_be_bytes(head[8..12].try_into().unwrap());
        let len = u32::from_be_bytes(head[12..16].try_into().unwrap()) as usize;
        let mut data = vec![0u8; len];
        s.read_exact(&mut data)?;
        out.clear();
        match option {
            // No reply header: straight into transmission.
            OPT_EXPORT_NAME => {
                out.put_u64(size);
                out.put_u16(tflags);
                s.write_all(&out)?;
                return Ok(true);
            }
            OPT_ABORT => return Ok(false),
            OPT_INFO | OPT_GO => {
                let mut info = BytesMut::new();
                info.put_u16(INFO_EXPORT);
                info.put_u64(size);
                info.put_u16(tflags);
                put_option_reply(&mut out, option, REP_INFO, &info);
                put_option_reply(&mut out, option, REP_ACK, &[]);
                s.write_all(&out)?;
                if option == OPT_GO {
                    return Ok(true);
                }
            }
            _ => {
                put_option_reply(&mut out, option, REP_ERR_UNSUP, &[]);
                s.write_all(&out)?;
            }
        }
    }
}

/// Parses every whole request in `rbuf[*start..end]` and appends its reply to `out`. Whether
/// the connection ends (the client asked to disconnect, or sent garbage).
fn answer(rbuf: &[u8], start: &mut usize, end: usize, file: &File, out: &mut BytesMut) -> bool {
    while end - *start >= REQUEST_LEN {
        let head: &[u8; REQUEST_LEN] = rbuf[*start..*start + REQUEST_LEN].try_into().unwrap();
        *start += REQUEST_LEN;
        let Some(req) = decode_request(head) else {
            eprintln!("bad request magic; disconnecting");
            return true;
        };
        if req.cmd == CMD_DISC {
            return true;
        }
        let mark = out.len();
        put_simple_reply(out, 0, req.cookie);
        let at = out.len();
        out.resize(at + req.len as usize, 0);
        let ok = req.cmd == CMD_READ && file.read_exact_at(&mut out[at..], req.offset).is_ok();
        if !ok {
            out.truncate(mark);
            put_simple_reply(out, EINVAL, req.cookie);
        }
    }
    false
}

/// Moves an unparsed tail to the front of the read buffer once it is past half of it.
fn compact(rbuf: &mut [u8], start: &mut usize, end: &mut usize) {
    if *start == *end {
        (*start, *end) = (0, 0);
    } else if *start > rbuf.len() / 2 {
        rbuf.copy_within(*start..*end, 0);
        (*end, *start) = (*end - *start, 0);
    }
}

fn check(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// What volume-server's runtime does per wake-up: `epoll_wait` (edge-triggered), `recv` until
/// a read comes back short, the replies, one write.
fn serve_epoll(sock: &TcpStream, file: &File) -> io::Result<()> {
    sock.set_nonblocking(true)?;
    let fd = sock.as_raw_fd();
    // SAFETY: plain system calls on descriptors this function owns or borrows for its duration;
    // the event structure is a live local.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as isize)? as RawFd;
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: as above.
    check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } as isize)?;
    let mut rbuf = vec![0u8; READ_CHUNK];
    let (mut start, mut end) = (0, 0);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let result = loop {
        // SAFETY: recv writes at most the length given into the buffer's tail.
        let n = unsafe {
            libc::recv(
                fd,
                rbuf[end..].as_mut_ptr().cast(),
                rbuf.len() - end,
                libc::MSG_DONTWAIT,
            )
        };
        let room = rbuf.len() - end;
        match check(n) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                end += n;
                let disc = answer(&rbuf, &mut start, end, file, &mut out);
                compact(&mut rbuf, &mut start, &mut end);
                write_all_nonblocking(fd, &out)?;
                out.clear();
                if disc {
                    break Ok(());
                }
                if n == room {
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(e),
        }
        let mut got = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: epoll_wait writes at most one event into a live local.
        check(unsafe { libc::epoll_wait(ep, &mut got, 1, -1) } as isize)?;
    };
    // SAFETY: closes the epoll descriptor this function created.
    unsafe { libc::close(ep) };
    result
}

fn write_all_nonblocking(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: send reads at most buf.len() bytes of a live slice.
        match check(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) }) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: poll reads and writes one live pollfd.
                check(unsafe { libc::poll(&mut p, 1, -1) } as isize)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

const RECV: u64 = 1;
const SEND: u64 = 2;

/// One ring per connection: a `recv` always posted; the replies of each batch of requests go
/// out in one `send` submitted together with the wait for the next completion.
fn serve_ring(sock: &TcpStream, file: &File) -> io::Result<()> {
    let fd = types::Fd(sock.as_raw_fd());
    let mut ring = IoUring::new(8)?;
    let mut rbuf = vec![0u8; READ_CHUNK];
    let (mut start, mut end) = (0, 0);
    // `sending` is owned by the kernel while a send is in flight; replies gather in `next`.
    let mut sending = BytesMut::with_capacity(READ_CHUNK);
    let mut sent = 0;
    let mut next = BytesMut::with_capacity(READ_CHUNK);
    let (mut recv_posted, mut send_posted, mut closing) = (false, false, false);
    loop {
        if !send_posted {
            if sent == sending.len() && !next.is_empty() {
                std::mem::swap(&mut sending, &mut next);
                next.clear();
                sent = 0;
            }
            if sent < sending.len() {
                let rest = &sending[sent..];
                let sqe = opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
                    .build()
                    .user_data(SEND);
                // SAFETY: `sending` is neither touched nor moved until this send completes.
                unsafe { ring.submission().push(&sqe).expect("room for a send") };
                send_posted = true;
            }
        }
        if closing && !send_posted {
            return Ok(());
        }
        if !recv_posted && !closing {
            let tail = &mut rbuf[end..];
            let sqe = opcode::Recv::new(fd, tail.as_mut_ptr(), tail.len() as u32)
                .build()
                .user_data(RECV);
            // SAFETY: `rbuf` is neither touched nor moved until this receive completes.
            unsafe { ring.submission().push(&sqe).expect("room for a receive") };
            recv_posted = true;
        }
        // Wait for everything in flight: in the steady state that is the send of the last
        // replies (done at once) and the receive of the next request, in one system call.
        ring.submit_and_wait(usize::from(recv_posted) + usize::from(send_posted))?;
        let mut done = [(0u64, 0i32); 16];
        let mut count = 0;
        for c in ring.completion() {
            done[count] = (c.user_data(), c.result());
            count += 1;
        }
        for &(what, res) in &done[..count] {
            if res < 0 {
                return Err(io::Error::from_raw_os_error(-res));
            }
            let n = res as usize;
            match what {
                RECV => {
                    recv_posted = false;
                    if n == 0 {
                        closing = true;
                        continue;
                    }
                    end += n;
                    closing |= answer(&rbuf, &mut start, end, file, &mut next);
                    compact(&mut rbuf, &mut start, &mut end);
                }
                _ => {
                    send_posted = false;
                    sent += n;
                }
            }
        }
    }
}
