//! The data path of one block request, shared by NBD and gRPC block I/O.
//!
//! Order: fencing gate (the caller holds its guard) → throttle (the volume's limits and, on a
//! launched instance, its type's EBS cap; waits; ends early if fenced) →
//! reservation check (io2; the read guard is held until the I/O completes) → hydration (a
//! volume restored from a snapshot fetches cold blocks first) → capture-before-write (writes,
//! while a snapshot is being taken) → volume (bounds, alignment, changed-block tracking,
//! engine). Counters are updated here, once, for both protocols.
//!
//! A small read that nothing makes wait (no throttle delay, the reservation free to take, no
//! cold blocks, all of it in the page cache) can instead be answered at once, on the caller's
//! thread, into the caller's buffer ([`read_now`]); the same steps in the same order, with
//! nothing to wait for. One clock read starts a request and one ends it: they serve its
//! throttles, its latency and the volume's busy time.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use storage_engine::{GateGuard, ReadData, SendMode, VolumeError, VolumeErrorKind, ZeroFlags};

use crate::control::ErrorCode;
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
    /// The code every protocol reports this failure with (see [`ErrorCode`]'s table).
    pub fn code(&self) -> ErrorCode {
        match self {
            IoError::Fenced => ErrorCode::IncorrectState,
            IoError::Reservation(_) => ErrorCode::ReservationConflict,
            IoError::Hydrate(_) => ErrorCode::InternalError,
            IoError::Volume(v) => match v.kind() {
                VolumeErrorKind::Invalid => ErrorCode::InvalidParameterValue,
                VolumeErrorKind::OutOfBounds => ErrorCode::BlockOutOfRange,
                VolumeErrorKind::NotSupported => ErrorCode::UnsupportedOperation,
                VolumeErrorKind::NoSpace => ErrorCode::InsufficientVolumeCapacity,
                VolumeErrorKind::Shutdown => ErrorCode::ServiceUnavailable,
                _ => ErrorCode::InternalError,
            },
        }
    }

    /// Whether the error is about the request's range (past the end).
    pub fn is_out_of_bounds(&self) -> bool {
        matches!(self, IoError::Volume(e) if e.kind() == VolumeErrorKind::OutOfBounds)
    }
}

/// Throttle tokens taken for a request, and when: a request admitted but not yet run.
#[derive(Debug)]
pub struct Admitted {
    start: Instant,
    wait: Duration,
}

/// Takes `req`'s tokens, now, from the volume's throttle and, on a launched instance, from its
/// type's cap: a second budget taken at the same moment, so the request waits for whichever of
/// the two is further in debt.
pub fn admit(export: &Export, req: &IoRequest) -> Admitted {
    let start = Instant::now();
    let mut wait = Duration::ZERO;
    if let Some((offset, len)) = req.throttled() {
        let admission = export.open.throttle.reserve_at(start, offset, len);
        IoStats::add(&export.open.stats.ebs_ops, admission.ops);
        wait = match &export.instance_throttle {
            Some(t) => admission
                .waited
                .max(t.reserve_at(start, offset, len).waited),
            None => admission.waited,
        };
    }
    Admitted { start, wait }
}

/// Runs `req` on `export`, its tokens taken by [`admit`] (or by [`read_now`], which could not
/// answer it at once); the caller's `_guard` keeps the attachment's gate entered until it
/// completes (and, for a [`ReadData::File`], for as long as the caller still has to send it).
/// Returns the data of a read.
pub async fn execute(
    export: &Arc<Export>,
    _guard: &GateGuard,
    req: IoRequest,
    admitted: Admitted,
) -> Result<Option<ReadData>, IoError> {
    let stats = &export.open.stats;
    let inflight = stats.begin_at(admitted.start.into_std());
    let r = run(export, &req, admitted.wait).await;
    let end = Instant::now();
    inflight.end(end.into_std());
    count(stats, &req, r.is_ok(), end - admitted.start);
    r
}

/// Reads `len` bytes at `offset` into the end of `out` at once, if nothing would make the read
/// wait: the throttle lets it through now, the reservation (io2) can be had without waiting
/// and allows it, no block of it is still to be fetched from a snapshot, and all of it is in
/// the page cache. Otherwise `out` is left as it was and the request, its tokens taken, is to
/// be run with [`execute`], which also reports anything wrong with it. `_guard` is the caller's
/// entry through the attachment's gate, as for [`execute`].
pub fn read_now(
    export: &Arc<Export>,
    _guard: &GateGuard,
    offset: u64,
    len: u64,
    out: &mut BytesMut,
) -> Result<(), Admitted> {
    let req = IoRequest::Read {
        offset,
        len,
        to_socket: None,
    };
    let admitted = admit(export, &req);
    let start = admitted.start;
    let cold = export
        .open
        .hydration
        .as_ref()
        .is_some_and(|h| !h.is_complete());
    if !admitted.wait.is_zero() || cold {
        return Err(admitted);
    }
    let Some(access) = export.access_now(false) else {
        return Err(admitted);
    };
    let stats = &export.open.stats;
    let inflight = stats.begin_at(start.into_std());
    let read = export.open.volume.try_read_cached_into(offset, len, out);
    drop(access);
    if !read {
        // Not started after all: in flight for no time; `execute` counts it from `start` again.
        inflight.end(start.into_std());
        return Err(admitted);
    }
    let end = Instant::now();
    inflight.end(end.into_std());
    count(stats, &req, true, end - start);
    Ok(())
}

/// Reads `[offset, offset + len)` of `export` as a client would see it (the blocks of a lazily
/// restored volume are fetched first), for the server's own use, such as finding the filesystem
/// on a root volume: not throttled and not counted.
pub async fn read_for_server(export: &Export, offset: u64, len: u64) -> Result<Vec<u8>, IoError> {
    if let Some(h) = &export.open.hydration {
        h.ensure(offset, len).await?;
    }
    Ok(export.open.volume.read(offset, len).await?)
}

/// Counts a finished request in the volume's counters.
fn count(stats: &IoStats, req: &IoRequest, ok: bool, took: Duration) {
    let ns = took.as_nanos() as u64;
    match req {
        _ if !ok => IoStats::add(&stats.errors, 1),
        IoRequest::Read { len, .. } => {
            IoStats::add(&stats.read_ops, 1);
            IoStats::add(&stats.read_bytes, *len);
            IoStats::add(&stats.read_time_ns, ns);
        }
        IoRequest::Write { data, .. } => {
            IoStats::add(&stats.write_ops, 1);
            IoStats::add(&stats.write_bytes, data.len() as u64);
            IoStats::add(&stats.write_time_ns, ns);
        }
        IoRequest::WriteZeroes { len, .. } => {
            IoStats::add(&stats.write_ops, 1);
            IoStats::add(&stats.write_bytes, *len);
            IoStats::add(&stats.write_time_ns, ns);
        }
        IoRequest::Flush => IoStats::add(&stats.flush_ops, 1),
        IoRequest::Trim { .. } => IoStats::add(&stats.trim_ops, 1),
    }
}

/// Waits `wait` (the throttle's delay; ended early by a fence), then runs `req`.
async fn run(
    export: &Arc<Export>,
    req: &IoRequest,
    wait: Duration,
) -> Result<Option<ReadData>, IoError> {
    if !wait.is_zero() {
        IoStats::add(&export.open.stats.throttled_ns, wait.as_nanos() as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = export.fenced() => return Err(IoError::Fenced),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exports::{CaptureSet, OpenVolume};
    use crate::reservation::{ReservationRecord, ReservationType};
    use storage_engine::{BucketConfig, Engine, Limits, Throttle, Volume};

    const AT: u64 = 8192;
    const LEN: u64 = 4096;

    /// An attachment of `i-test` to a 1 MiB volume in `dir`, its block at `AT` written.
    async fn export(
        dir: &tempfile::TempDir,
        limits: Limits,
        reservation: Option<ReservationRecord>,
    ) -> Arc<Export> {
        let path = dir.path().join("vol");
        Volume::create(&path, 1 << 20).unwrap();
        let volume = Volume::open(&path, Engine::start_preferred(1).unwrap()).unwrap();
        volume
            .write(AT, Bytes::from(vec![0xab; LEN as usize]), false)
            .await
            .unwrap();
        let open = OpenVolume {
            volume: Arc::new(volume),
            stats: Arc::new(IoStats::default()),
            throttle: Arc::new(Throttle::new(limits)),
            reservation: reservation.map(|r| Arc::new(tokio::sync::RwLock::new(r))),
            captures: Arc::new(CaptureSet::default()),
            hydration: None,
        };
        Arc::new(Export::new(
            "vol-test".into(),
            "i-test".into(),
            0,
            open,
            false,
        ))
    }

    fn read_at(offset: u64) -> IoRequest {
        IoRequest::Read {
            offset,
            len: LEN,
            to_socket: None,
        }
    }

    fn ops(export: &Export) -> (u64, u64, u64) {
        let s = &export.open.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (get(&s.read_ops), get(&s.ebs_ops), get(&s.errors))
    }

    #[tokio::test]
    async fn a_cached_read_lands_after_what_the_buffer_held_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let export = export(&dir, Limits::UNLIMITED, None).await;
        let guard = export.gate.enter().unwrap();
        let mut out = BytesMut::from(&b"header"[..]);
        // Just written through the page cache, so cached.
        read_now(&export, &guard, AT, LEN, &mut out).unwrap();
        assert_eq!(&out[..6], b"header");
        assert_eq!(&out[6..], &[0xab; LEN as usize][..]);
        assert_eq!(ops(&export), (1, 1, 0));
        let s = &export.open.stats;
        assert_eq!(s.inflight.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(s.read_bytes.load(std::sync::atomic::Ordering::Relaxed), LEN);
    }

    #[tokio::test]
    async fn a_read_past_the_end_is_left_to_execute_which_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let export = export(&dir, Limits::UNLIMITED, None).await;
        let guard = export.gate.enter().unwrap();
        let mut out = BytesMut::from(&b"header"[..]);
        let end = 1 << 20;
        let admitted = read_now(&export, &guard, end, LEN, &mut out).unwrap_err();
        assert_eq!(&out[..], b"header", "the buffer is left as it was");
        let err = execute(&export, &guard, read_at(end), admitted)
            .await
            .unwrap_err();
        assert!(err.is_out_of_bounds(), "{err}");
        assert_eq!(ops(&export), (0, 1, 1), "tokens taken once, one error");
    }

    #[tokio::test]
    async fn a_read_the_throttle_holds_back_waits_with_the_tokens_it_took() {
        let dir = tempfile::tempdir().unwrap();
        // One operation of burst, then one per 10 ms.
        let limits = Limits {
            ops: Some(BucketConfig::smooth(100, Duration::from_millis(10))),
            io_unit: 256 * 1024,
            ..Limits::UNLIMITED
        };
        let export = export(&dir, limits, None).await;
        let guard = export.gate.enter().unwrap();
        let mut out = BytesMut::new();
        read_now(&export, &guard, AT, LEN, &mut out).unwrap();
        out.clear();
        let admitted = read_now(&export, &guard, AT, LEN, &mut out).unwrap_err();
        assert!(out.is_empty());
        let data = execute(&export, &guard, read_at(AT), admitted)
            .await
            .unwrap();
        assert!(matches!(data, Some(ReadData::Bytes(v)) if v == vec![0xab; LEN as usize]));
        assert_eq!(ops(&export), (2, 2, 0), "two reads, two operations taken");
        let held = export
            .open
            .stats
            .throttled_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(held > 0, "the second read waited");
    }

    #[tokio::test]
    async fn a_read_the_reservation_refuses_is_refused_by_execute() {
        let dir = tempfile::tempdir().unwrap();
        let other = "i-other".to_string();
        let reservation = ReservationRecord {
            generation: 1,
            registrants: [(other.clone(), 7)].into(),
            holder: Some(other),
            rtype: Some(ReservationType::ExclusiveAccess),
        };
        let export = export(&dir, Limits::UNLIMITED, Some(reservation)).await;
        let guard = export.gate.enter().unwrap();
        let mut out = BytesMut::new();
        let admitted = read_now(&export, &guard, AT, LEN, &mut out).unwrap_err();
        assert!(out.is_empty());
        let err = execute(&export, &guard, read_at(AT), admitted)
            .await
            .unwrap_err();
        assert!(matches!(err, IoError::Reservation(_)), "{err}");
        assert_eq!(ops(&export), (0, 1, 1));
    }

    #[tokio::test]
    async fn a_request_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let export = export(&dir, Limits::UNLIMITED, None).await;
        let guard = export.gate.enter().unwrap();
        let admitted = admit(&export, &read_at(AT));
        let fut = execute(&export, &guard, read_at(AT), admitted);
        // Every NBD request's future is built and moved into a box of its own: rarely taken
        // branches with large futures (copy-before-write, fetching snapshot blocks) are boxed
        // where they are taken, so that this stays well under the 1.8 KB it was with them.
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 1024, "a request's future is {size} bytes");
    }
}
