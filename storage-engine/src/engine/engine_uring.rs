//! The io_uring engine: each ring is driven by one thread that submits and reaps.
//!
//! # Design
//! Callers push [`Op`]s into the ring thread's channel. The thread keeps a read of an eventfd armed
//! in the ring, so a single `io_uring_enter` wait wakes it for a completion *or* for new work. To
//! keep the eventfd write (a syscall) off the submit path when the thread is busy, the thread
//! publishes `sleeping` before it waits and submitters only ring the eventfd when it is set; the
//! two `SeqCst` fences make "push, then check sleeping" and "set sleeping, then check queue" a
//! Dekker pair, so a submission is never missed.
//!
//! In-flight ops live in a slab indexed by the SQE's `user_data`; each holds its buffers until
//! its completion, which is what makes the raw pointers handed to the kernel valid.
//!
//! # Limitations
//! At most [`MAX_IN_FLIGHT`] ops per ring are in the kernel at once; the rest wait in the
//! channel. Buffered I/O only (no `O_DIRECT`, no registered buffers).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use io_uring::{IoUring, opcode, squeue, types};

use super::{EngineError, Op, OpKind};

/// Ring size; also bounds the SQ so it can never overflow (one SQE per op, plus the wake read).
const RING_ENTRIES: u32 = 512;
/// Ops in the kernel at once, per ring.
const MAX_IN_FLIGHT: usize = RING_ENTRIES as usize - 1;
/// `user_data` of the eventfd read.
const WAKE_TOKEN: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct UringEngine {
    rings: Vec<RingHandle>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct RingHandle {
    shared: Arc<Shared>,
    tx: Option<Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

/// State shared between submitters and one ring thread.
#[derive(Debug)]
struct Shared {
    eventfd: OwnedFd,
    /// Set by the ring thread just before it blocks in the kernel.
    sleeping: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. A failure can only be
        // EAGAIN (counter saturated), which still leaves the eventfd readable: the thread wakes.
        unsafe {
            libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }
}

impl UringEngine {
    pub(crate) fn start(threads: usize) -> Result<Self, EngineError> {
        let mut rings = Vec::with_capacity(threads);
        for i in 0..threads {
            // SAFETY: plain syscall; the result is checked before use.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if efd < 0 {
                return Err(EngineError::UringUnavailable(io::Error::last_os_error()));
            }
            // SAFETY: `efd` is a fresh descriptor that nothing else owns.
            let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
            let shared = Arc::new(Shared {
                eventfd,
                sleeping: AtomicBool::new(false),
            });
            let (tx, rx) = crossbeam_channel::unbounded();
            let thread_shared = Arc::clone(&shared);
            // The ring is built on its own thread: with SINGLE_ISSUER only the creating thread
            // may submit to it.
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("io-uring-{i}"))
                .spawn(move || match build_ring() {
                    Ok(ring) => {
                        let _ = ready_tx.send(Ok(()));
                        RingThread::new(ring, rx, thread_shared).run();
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                })
                .map_err(EngineError::Spawn)?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(EngineError::UringUnavailable(err)),
                Err(_) => {
                    return Err(EngineError::UringUnavailable(io::Error::other(
                        "ring thread died",
                    )));
                }
            }
            rings.push(RingHandle {
                shared,
                tx: Some(tx),
                thread: Some(thread),
            });
        }
        Ok(UringEngine {
            rings,
            next: AtomicUsize::new(0),
        })
    }

    pub(crate) fn submit(&self, op: Op) {
        let i = if self.rings.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.rings.len()
        };
        let ring = &self.rings[i];
        let Some(tx) = &ring.tx else {
            op.complete(Err(super::engine_stopped()));
            return;
        };
        if let Err(crossbeam_channel::SendError(op)) = tx.send(op) {
            op.complete(Err(super::engine_stopped()));
            return;
        }
        fence(Ordering::SeqCst);
        if ring.shared.sleeping.load(Ordering::SeqCst) {
            ring.shared.wake();
        }
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        for ring in &mut self.rings {
            // Closing the channel tells the thread to finish in-flight ops and exit.
            ring.tx.take();
            ring.shared.wake();
            if let Some(t) = ring.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn build_ring() -> io::Result<IoUring> {
    // Newer setup flags cut kernel overhead; older kernels reject them with EINVAL.
    IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::builder().setup_coop_taskrun().build(RING_ENTRIES))
        .or_else(|_| IoUring::new(RING_ENTRIES))
}

/// An op in the kernel and how much of it is done (for short reads/writes).
struct InFlight {
    op: Op,
    done: usize,
}

struct RingThread {
    ring: IoUring,
    rx: Receiver<Op>,
    shared: Arc<Shared>,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    in_flight: usize,
    /// Target of the armed eventfd read; boxed so its address is stable.
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
}

impl RingThread {
    fn new(ring: IoUring, rx: Receiver<Op>, shared: Arc<Shared>) -> Self {
        RingThread {
            ring,
            rx,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
        }
    }

    fn run(mut self) {
        let mut closed = false;
        loop {
            if !self.wake_armed && !closed {
                let entry = opcode::Read::new(
                    types::Fd(self.shared.eventfd.as_raw_fd()),
                    self.wake_buf.as_mut_ptr(),
                    8,
                )
                .build()
                .user_data(WAKE_TOKEN);
                self.push(&entry);
                self.wake_armed = true;
            }
            while self.in_flight < MAX_IN_FLIGHT {
                match self.rx.try_recv() {
                    Ok(op) => self.start(op),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed && self.in_flight == 0 {
                return;
            }
            if let Err(err) = self.enter(closed) {
                // Submission itself failed (ENOMEM, …): fail everything in flight rather than
                // leave callers waiting, and keep serving.
                tracing::error!(error = %err, "io_uring_enter failed");
                self.fail_all(&err);
                // Don't spin if the failure persists.
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            self.reap();
        }
    }

    /// Submits queued SQEs; blocks for a completion unless there is already something to do.
    fn enter(&mut self, closed: bool) -> io::Result<()> {
        let ready = !self.ring.completion().is_empty();
        if ready || (closed && self.in_flight == 0) {
            self.ring.submit()?;
            return Ok(());
        }
        self.shared.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let result = if !self.rx.is_empty() && self.in_flight < MAX_IN_FLIGHT {
            self.ring.submit()
        } else {
            self.ring.submit_and_wait(1)
        };
        self.shared.sleeping.store(false, Ordering::Relaxed);
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reap(&mut self) {
        // Collect first: completing may push resubmissions into the SQ.
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (token, res) in cqes {
            if token == WAKE_TOKEN {
                self.wake_armed = false;
                continue;
            }
            let Ok(idx) = usize::try_from(token) else {
                continue;
            };
            let Some(mut inflight) = self.slots.get_mut(idx).and_then(Option::take) else {
                continue;
            };
            self.free.push(idx);
            self.in_flight -= 1;
            if res < 0 {
                inflight
                    .op
                    .complete(Err(io::Error::from_raw_os_error(-res)));
                continue;
            }
            let n = usize::try_from(res).unwrap_or(0);
            match progress(&mut inflight, n) {
                Progress::Done => {
                    if let OpKind::Read { buf, .. } = &mut inflight.op.kind {
                        // SAFETY: the kernel filled bytes [0, capacity) across this op's
                        // completions (`progress` counted them), so they are initialised.
                        unsafe { buf.set_len(buf.capacity()) };
                    }
                    inflight.op.complete(Ok(()));
                }
                Progress::Partial => self.resubmit(inflight),
                Progress::Failed(err) => inflight.op.complete(Err(err)),
            }
        }
    }

    fn start(&mut self, op: Op) {
        self.resubmit(InFlight { op, done: 0 });
    }

    /// Puts `inflight` in a slot and pushes its (next) SQE.
    fn resubmit(&mut self, mut inflight: InFlight) {
        let fd = types::Fd(inflight.op.file.as_raw_fd());
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let entry = match build_sqe(fd, &mut inflight) {
            Ok(e) => e.user_data(idx as u64),
            Err(err) => {
                self.free.push(idx);
                inflight.op.complete(Err(err));
                return;
            }
        };
        self.slots[idx] = Some(inflight);
        self.in_flight += 1;
        self.push(&entry);
    }

    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every pointer in `entry` refers to memory owned by an `InFlight` in
            // `self.slots` (or `self.wake_buf`), which stays alive and untouched until the
            // matching completion is reaped.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            // SQ full (only possible transiently with resubmissions): flush it to the kernel.
            if let Err(err) = self.ring.submit() {
                tracing::error!(error = %err, "io_uring submit failed while draining the SQ");
            }
        }
    }

    fn fail_all(&mut self, err: &io::Error) {
        for slot in &mut self.slots {
            if let Some(inflight) = slot.take() {
                inflight
                    .op
                    .complete(Err(io::Error::new(err.kind(), err.to_string())));
            }
        }
        self.free = (0..self.slots.len()).collect();
        self.in_flight = 0;
        self.wake_armed = false;
    }
}

enum Progress {
    Done,
    Partial,
    Failed(io::Error),
}

/// Accounts `n` transferred bytes to `inflight`.
fn progress(inflight: &mut InFlight, n: usize) -> Progress {
    let total = match &inflight.op.kind {
        OpKind::Read { buf, .. } => buf.capacity(),
        OpKind::Write { data, .. } => data.len(),
        OpKind::Fsync | OpKind::Fallocate { .. } => return Progress::Done,
    };
    if n == 0 && total > inflight.done {
        let kind = match inflight.op.kind {
            OpKind::Read { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::WriteZero,
        };
        return Progress::Failed(io::Error::new(kind, "short transfer made no progress"));
    }
    inflight.done += n;
    if inflight.done >= total {
        Progress::Done
    } else {
        Progress::Partial
    }
}

/// Builds the SQE for the remaining part of `inflight`.
fn build_sqe(fd: types::Fd, inflight: &mut InFlight) -> io::Result<squeue::Entry> {
    let done = inflight.done;
    let entry = match &mut inflight.op.kind {
        OpKind::Read { offset, buf } => {
            let remaining = u32::try_from(buf.capacity() - done).map_err(|_| einval())?;
            // SAFETY: `done <= capacity`, so the pointer stays inside the allocation.
            let ptr = unsafe { buf.as_mut_ptr().add(done) };
            opcode::Read::new(fd, ptr, remaining)
                .offset(*offset + done as u64)
                .build()
        }
        OpKind::Write {
            offset,
            data,
            dsync,
        } => {
            let rest = &data[done..];
            let len = u32::try_from(rest.len()).map_err(|_| einval())?;
            let flags = if *dsync { libc::RWF_DSYNC } else { 0 };
            opcode::Write::new(fd, rest.as_ptr(), len)
                .offset(*offset + done as u64)
                .rw_flags(flags)
                .build()
        }
        OpKind::Fsync => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
        OpKind::Fallocate { offset, len, mode } => opcode::Fallocate::new(fd, *len)
            .offset(*offset)
            .mode(*mode)
            .build(),
    };
    Ok(entry)
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}
