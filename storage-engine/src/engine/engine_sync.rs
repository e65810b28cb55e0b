//! The sync engine: a pool of threads doing positional syscalls, for kernels without io_uring.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::{EngineError, Op, OpKind};

/// Worker threads sharing one queue. Dropping it closes the queue; workers finish what is queued
/// and exit, and the drop joins them.
#[derive(Debug)]
pub(crate) struct SyncEngine {
    tx: Option<Sender<Op>>,
    workers: Vec<JoinHandle<()>>,
}

impl SyncEngine {
    pub(crate) fn start(threads: usize) -> Result<Self, EngineError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Op>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx: Receiver<Op> = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("io-sync-{i}"))
                .spawn(move || {
                    for mut op in rx {
                        let result = execute(&mut op);
                        op.complete(result);
                    }
                })
                .map_err(EngineError::Spawn)?;
            workers.push(handle);
        }
        Ok(SyncEngine {
            tx: Some(tx),
            workers,
        })
    }

    pub(crate) fn submit(&self, op: Op) {
        let Some(tx) = &self.tx else {
            op.complete(Err(super::engine_stopped()));
            return;
        };
        if let Err(crossbeam_channel::SendError(op)) = tx.send(op) {
            op.complete(Err(super::engine_stopped()));
        }
    }
}

impl Drop for SyncEngine {
    fn drop(&mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Runs one op to completion on the calling thread.
pub(crate) fn execute(op: &mut Op) -> io::Result<()> {
    let file = &*op.file;
    match &mut op.kind {
        OpKind::Read { offset, buf } => {
            let len = buf.capacity();
            buf.resize(len, 0);
            file.read_exact_at(buf, *offset)
        }
        OpKind::Write {
            offset,
            data,
            dsync,
        } => {
            file.write_all_at(data, *offset)?;
            if *dsync {
                file.sync_data()?;
            }
            Ok(())
        }
        OpKind::Fsync => file.sync_data(),
        OpKind::Fallocate { offset, len, mode } => {
            let (Ok(off), Ok(len)) = (i64::try_from(*offset), i64::try_from(*len)) else {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            };
            // SAFETY: fallocate takes a valid open fd (kept alive by `op.file`) and plain integers.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), *mode, off, len) };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    }
}
