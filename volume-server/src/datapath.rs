//! The data path of one block request, shared by NBD and gRPC block I/O.
//!
//! Order: fencing gate (the caller holds its guard) → throttle (the volume's limits and, on a
//! launched instance, its type's EBS cap; waits; ends early if fenced) →
//! reservation check (io2; the read guard is held until the I/O completes) → hydration (a
//! volume restored from a snapshot fetches cold blocks first) → capture-before-write (writes,
//! while a snapshot is being taken) → volume (bounds, alignment, changed-block tracking,
//! engine). Counters are updated here, once, for both protocols.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use storage_engine::{GateGuard, ReadData, SendMode, VolumeError, VolumeErrorKind, ZeroFlags};

use crate::exports::{Export, IoStats};

/// One block request.
#[derive(Debug)]
pub enum IoRequest {
    /// Read `len` bytes.
    Read {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The caller can send a [`ReadData::File`] to its socket this way, so a cached range
        /// may come back as one; `None`: the data in memory.
        to_socket: Option<SendMode>,
    },
    /// Write `data`.
    Write {
        /// Byte offset.
        offset: u64,
        /// Payload.
        data: Bytes,
        /// Durable before completion.
        fua: bool,
    },
    /// Make completed writes durable.
    Flush,
    /// Discard a range.
    Trim {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Durable before completion.
        fua: bool,
    },
    /// Zero a range.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// How it may be zeroed.
        flags: ZeroFlags,
    },
}

impl IoRequest {
    /// Whether the request changes data (for reservation checks).
    pub fn is_write(&self) -> bool {
        !matches!(self, IoRequest::Read { .. } | IoRequest::Flush)
    }

    /// The byte range the request touches, if any.
    fn range(&self) -> Option<(u64, u64)> {
        match *self {
            IoRequest::Read { offset, len, .. }
            | IoRequest::Trim { offset, len, .. }
            | IoRequest::WriteZeroes { offset, len, .. } => Some((offset, len)),
            IoRequest::Write {
                offset, ref data, ..
            } => Some((offset, data.len() as u64)),
            IoRequest::Flush => None,
        }
    }

    /// `(offset, len)` counted by the throttle, if the request is EBS I/O: reads, writes, and
    /// zeroing that allocates.
    fn throttled(&self) -> Option<(u64, u64)> {
        match *self {
            IoRequest::Read { offset, len, .. } => Some((offset, len)),
            IoRequest::Write {
                offset, ref data, ..
            } => Some((offset, data.len() as u64)),
            IoRequest::WriteZeroes { offset, len, flags } if !flags.may_trim => Some((offset, len)),
            _ => None,
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The attachment was fenced (detached) while the request waited.
    #[error("The attachment was detached (fenced)")]
    Fenced,
    /// A reservation forbids this access.
    #[error("Reservation conflict: {0}")]
    Reservation(String),
    /// The volume refused or failed the request.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A block of a volume restored from a snapshot could not be fetched.
    #[error(transparent)]
    Hydrate(#[from] snapshot::hydrate::HydrateError),
}

impl IoError {
    /// Whether the error is about the request's range (past the end).
    pub fn is_out_of_bounds(&self) -> bool {
        matches!(self, IoError::Volume(e) if e.kind() == VolumeErrorKind::OutOfBounds)
    }
}

/// Runs `req` on `export`; the caller's `_guard` keeps the attachment's gate entered until it
/// completes (and, for a [`ReadData::File`], for as long as the caller still has to send it).
/// Returns the data of a read.
pub async fn execute(
    export: &Arc<Export>,
    _guard: &GateGuard,
    req: IoRequest,
) -> Result<Option<ReadData>, IoError> {
    let stats = &export.open.stats;
    let start = Instant::now();
    let _inflight = stats.begin();
    let r = run(export, &req).await;
    let ns = start.elapsed().as_nanos() as u64;
    match (&r, &req) {
        (Err(_), _) => IoStats::add(&stats.errors, 1),
        (Ok(_), IoRequest::Read { len, .. }) => {
            IoStats::add(&stats.read_ops, 1);
            IoStats::add(&stats.read_bytes, *len);
            IoStats::add(&stats.read_time_ns, ns);
        }
        (Ok(_), IoRequest::Write { data, .. }) => {
            IoStats::add(&stats.write_ops, 1);
            IoStats::add(&stats.write_bytes, data.len() as u64);
            IoStats::add(&stats.write_time_ns, ns);
        }
        (Ok(_), IoRequest::WriteZeroes { len, .. }) => {
            IoStats::add(&stats.write_ops, 1);
            IoStats::add(&stats.write_bytes, *len);
            IoStats::add(&stats.write_time_ns, ns);
        }
        (Ok(_), IoRequest::Flush) => IoStats::add(&stats.flush_ops, 1),
        (Ok(_), IoRequest::Trim { .. }) => IoStats::add(&stats.trim_ops, 1),
    }
    r
}

async fn run(export: &Arc<Export>, req: &IoRequest) -> Result<Option<ReadData>, IoError> {
    let stats = &export.open.stats;
    if let Some((offset, len)) = req.throttled() {
        let admission = export.open.throttle.reserve(offset, len);
        IoStats::add(&stats.ebs_ops, admission.ops);
        // The instance's cap is a second budget taken at the same moment: the request waits for
        // whichever of the two is further in debt.
        let waited = match &export.instance_throttle {
            Some(t) => admission.waited.max(t.reserve(offset, len).waited),
            None => admission.waited,
        };
        if !waited.is_zero() {
            IoStats::add(&stats.throttled_ns, waited.as_nanos() as u64);
            tokio::select! {
                () = tokio::time::sleep(waited) => {}
                () = export.fenced() => return Err(IoError::Fenced),
            }
        }
    }
    // Held until the I/O completes, so a reservation change (preempt-and-abort) returns only
    // after this request is done or refused.
    let write = req.is_write();
    let Some(_access) = export.access(write).await else {
        let access = if write { "write" } else { "read" };
        return Err(IoError::Reservation(format!(
            "{} may not {access}",
            export.instance_id
        )));
    };
    let range = req.range();
    if let (Some(h), Some((offset, len))) = (&export.open.hydration, range) {
        if req.is_write() {
            h.ensure_durable(offset, len).await?;
        } else {
            h.ensure(offset, len).await?;
        }
    }
    // Held across the capture and the write, so installing a capture (which takes this lock
    // for writing) waits until no write is between the two.
    let _captures = match range {
        Some((offset, len)) if req.is_write() => {
            Some(export.open.captures.enter_write(offset, len).await)
        }
        _ => None,
    };
    let vol = &export.open.volume;
    match req {
        IoRequest::Read {
            offset,
            len,
            to_socket: Some(mode),
        } => Ok(Some(vol.read_for_send(*offset, *len, *mode).await?)),
        IoRequest::Read { offset, len, .. } => {
            Ok(Some(ReadData::Bytes(vol.read(*offset, *len).await?)))
        }
        IoRequest::Write { offset, data, fua } => Ok(vol
            .write(*offset, data.clone(), *fua)
            .await
            .map(|()| None)?),
        IoRequest::Flush => Ok(vol.flush().await.map(|()| None)?),
        IoRequest::Trim { offset, len, fua } => {
            Ok(vol.trim(*offset, *len, *fua).await.map(|()| None)?)
        }
        IoRequest::WriteZeroes { offset, len, flags } => Ok(vol
            .write_zeroes(*offset, *len, *flags)
            .await
            .map(|()| None)?),
    }
}
