//! I/O engines: io_uring (primary) and a sync thread pool (fallback), behind one interface.
//!
//! # Design
//! An [`Op`] owns everything the kernel touches while it is in flight: the file (an `Arc`), the
//! read buffer or the write payload. It is handed to an engine by value and comes back, with its
//! result, through a oneshot channel. Ownership is what keeps buffers alive and unaliased while the
//! kernel uses them, so no lifetimes cross the engine boundary.
//!
//! Both engines complete every op exactly once, including when the engine shuts down (ops still
//! queued then fail with [`std::io::ErrorKind::BrokenPipe`]), so no caller waits forever.
//!
//! Short reads and writes are resubmitted for the remainder by the engine: callers see a full
//! transfer or an error.

mod engine_sync;
mod engine_uring;

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

/// Which engine to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// One io_uring per engine thread.
    IoUring,
    /// A pool of threads doing `pread`/`pwrite`/`fdatasync`/`fallocate`.
    Sync,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::IoUring => "io_uring",
            EngineKind::Sync => "sync",
        })
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "io_uring" | "io-uring" | "uring" => Ok(EngineKind::IoUring),
            "sync" => Ok(EngineKind::Sync),
            other => Err(format!(
                "unknown I/O engine '{other}' (expected io_uring or sync)"
            )),
        }
    }
}

/// Errors starting an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The kernel refused to set up an io_uring (old kernel, seccomp, `io_uring_disabled`).
    #[error("io_uring is unavailable")]
    UringUnavailable(#[source] io::Error),
    /// A worker thread could not be spawned.
    #[error("Cannot spawn an engine thread")]
    Spawn(#[source] io::Error),
}

/// What an op does.
#[derive(Debug)]
pub(crate) enum OpKind {
    /// Fill `buf` (capacity = length, initial len 0) from `offset`.
    Read { offset: u64, buf: Vec<u8> },
    /// Write `data` at `offset`; `dsync` makes it durable before completion (FUA).
    Write {
        offset: u64,
        data: Bytes,
        dsync: bool,
    },
    /// `fdatasync` the file.
    Fsync,
    /// `fallocate(mode, offset, len)`.
    Fallocate { offset: u64, len: u64, mode: i32 },
}

/// The result of an op: the read buffer (for reads) and the outcome.
#[derive(Debug)]
pub(crate) struct Completion {
    pub result: io::Result<()>,
    /// For reads: the buffer, with `len()` equal to the requested length on success.
    pub buf: Option<Vec<u8>>,
}

/// One I/O in flight. Owns the file and buffers until completion.
#[derive(Debug)]
pub(crate) struct Op {
    pub file: Arc<File>,
    pub kind: OpKind,
    pub done: oneshot::Sender<Completion>,
}

impl Op {
    /// Completes the op with `result`, handing back its read buffer if any.
    pub(crate) fn complete(self, result: io::Result<()>) {
        let buf = match self.kind {
            OpKind::Read { buf, .. } => Some(buf),
            _ => None,
        };
        // The receiver may have gone (caller cancelled): the op still ran, nothing to report.
        let _ = self.done.send(Completion { result, buf });
    }
}

/// A running engine. Cheap to clone; the engine stops when the last clone is dropped, after
/// completing everything in flight.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    Uring(engine_uring::UringEngine),
    Sync(engine_sync::SyncEngine),
    /// Test-only: passes ops to `engine` until `ops_left` reaches zero, then fails every
    /// write-side op with EIO (reads still pass), like a disk that went bad.
    #[cfg(test)]
    Faulty {
        engine: Engine,
        ops_left: std::sync::atomic::AtomicU64,
        errno: i32,
    },
}

impl Engine {
    /// Starts an engine of `kind` with `threads` worker threads (io_uring: rings; sync: workers).
    pub fn start(kind: EngineKind, threads: usize) -> Result<Engine, EngineError> {
        let threads = threads.max(1);
        let inner = match kind {
            EngineKind::IoUring => Inner::Uring(engine_uring::UringEngine::start(threads)?),
            EngineKind::Sync => Inner::Sync(engine_sync::SyncEngine::start(threads)?),
        };
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }

    /// Starts io_uring if the kernel allows it, else the sync engine. Logs the choice.
    pub fn start_preferred(threads: usize) -> Result<Engine, EngineError> {
        match Engine::start(EngineKind::IoUring, threads) {
            Ok(engine) => {
                tracing::info!(engine = "io_uring", threads, "I/O engine started");
                Ok(engine)
            }
            Err(err) => {
                tracing::warn!(error = %err, "io_uring unavailable; falling back to the sync engine");
                let engine = Engine::start(EngineKind::Sync, threads.max(4))?;
                tracing::info!(
                    engine = "sync",
                    threads = threads.max(4),
                    "I/O engine started"
                );
                Ok(engine)
            }
        }
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        match &*self.inner {
            Inner::Uring(_) => EngineKind::IoUring,
            Inner::Sync(_) => EngineKind::Sync,
            #[cfg(test)]
            Inner::Faulty { engine, .. } => engine.kind(),
        }
    }

    /// Test-only: wraps `engine` so that write-side ops fail with EIO after `ops` ops.
    #[cfg(test)]
    pub(crate) fn faulty(engine: Engine, ops: u64) -> Engine {
        Engine::faulty_with(engine, ops, libc::EIO)
    }

    /// Test-only: wraps `engine` so that write-side ops fail with `errno` after `ops` ops.
    #[cfg(test)]
    pub(crate) fn faulty_with(engine: Engine, ops: u64, errno: i32) -> Engine {
        let ops_left = std::sync::atomic::AtomicU64::new(ops);
        Engine {
            inner: Arc::new(Inner::Faulty {
                engine,
                ops_left,
                errno,
            }),
        }
    }

    /// Queues `op`; its completion arrives on `op.done`.
    pub(crate) fn submit(&self, op: Op) {
        match &*self.inner {
            Inner::Uring(e) => e.submit(op),
            Inner::Sync(e) => e.submit(op),
            #[cfg(test)]
            Inner::Faulty {
                engine,
                ops_left,
                errno,
            } => {
                use std::sync::atomic::Ordering;
                let left = ops_left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                if left.is_err() && !matches!(op.kind, OpKind::Read { .. }) {
                    op.complete(Err(io::Error::from_raw_os_error(*errno)));
                } else {
                    engine.submit(op);
                }
            }
        }
    }

    /// Runs `kind` on `file` and waits for it.
    pub(crate) async fn run(&self, file: &Arc<File>, kind: OpKind) -> Completion {
        let (done, rx) = oneshot::channel();
        self.submit(Op {
            file: Arc::clone(file),
            kind,
            done,
        });
        match rx.await {
            Ok(c) => c,
            // Unreachable by the engine contract (every op completes), but never hang or panic.
            Err(_) => Completion {
                result: Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "I/O engine stopped",
                )),
                buf: None,
            },
        }
    }
}

/// The error every op still queued gets when its engine stops.
pub(crate) fn engine_stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "I/O engine stopped")
}
