//! The export registry: which NBD export name (an attachment's secret token) serves which open
//! volume, through which fencing gate. The control plane adds and removes entries; NBD sessions
//! look them up at handshake and hold their `Arc<Export>` for the session's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use snapshot::{Capture, Hydration};
use storage_engine::{Gate, Throttle, Volume};

use crate::reservation::ReservationRecord;
use tokio::sync::watch;

/// I/O counters of one volume, shared by all its attachments and sessions.
#[derive(Debug)]
pub struct IoStats {
    /// When the volume was opened: the origin of the busy/idle clock.
    pub opened: Instant,
    /// Requests in flight, throttle waits included (CloudWatch `VolumeQueueLength`).
    pub inflight: AtomicU64,
    /// Nanoseconds with at least one request in flight.
    pub busy_ns: AtomicU64,
    /// When the current busy period began (nanoseconds since `opened`).
    busy_start_ns: AtomicU64,
    /// Completed reads.
    pub read_ops: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Completed writes (including write-zeroes).
    pub write_ops: AtomicU64,
    /// Bytes written (including zeroed ranges).
    pub write_bytes: AtomicU64,
    /// Completed flushes.
    pub flush_ops: AtomicU64,
    /// Completed trims.
    pub trim_ops: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
    /// Total nanoseconds spent in reads (for average latency).
    pub read_time_ns: AtomicU64,
    /// Total nanoseconds spent in writes.
    pub write_time_ns: AtomicU64,
    /// EBS operations counted (256 KiB / 1 MiB units, sequential I/O merged).
    pub ebs_ops: AtomicU64,
    /// Total nanoseconds requests were held by the throttle.
    pub throttled_ns: AtomicU64,
}

impl Default for IoStats {
    fn default() -> Self {
        IoStats {
            opened: Instant::now(),
            inflight: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            busy_start_ns: AtomicU64::new(0),
            read_ops: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            write_ops: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
            flush_ops: AtomicU64::new(0),
            trim_ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            read_time_ns: AtomicU64::new(0),
            write_time_ns: AtomicU64::new(0),
            ebs_ops: AtomicU64::new(0),
            throttled_ns: AtomicU64::new(0),
        }
    }
}

/// Counts one request as in flight until ended (or dropped).
#[derive(Debug)]
pub struct InFlight<'a> {
    stats: &'a IoStats,
    ended: bool,
}

impl IoStats {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn ns_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.opened).as_nanos() as u64
    }

    /// Marks a request in flight (for queue length and idle time) from `now`.
    pub fn begin_at(&self, now: Instant) -> InFlight<'_> {
        if self.inflight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.busy_start_ns.store(self.ns_at(now), Ordering::Release);
        }
        InFlight {
            stats: self,
            ended: false,
        }
    }

    /// Seconds since opening with nothing in flight (CloudWatch `VolumeIdleTime`). Approximate
    /// to a request's length when busy periods start and end concurrently.
    pub fn idle_seconds(&self) -> f64 {
        let now = self.ns_at(Instant::now());
        let mut busy = self.busy_ns.load(Ordering::Acquire);
        if self.inflight.load(Ordering::Acquire) > 0 {
            busy += now.saturating_sub(self.busy_start_ns.load(Ordering::Acquire));
        }
        now.saturating_sub(busy) as f64 / 1e9
    }

    fn leave(&self, now: Instant) {
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let start = self.busy_start_ns.load(Ordering::Acquire);
            IoStats::add(&self.busy_ns, self.ns_at(now).saturating_sub(start));
        }
    }
}

impl InFlight<'_> {
    /// Ends the request at `now`, a moment the caller has just read from the clock.
    pub fn end(mut self, now: Instant) {
        self.ended = true;
        self.stats.leave(now);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.stats.leave(Instant::now());
        }
    }
}

/// An open volume and its counters.
#[derive(Debug, Clone)]
pub struct OpenVolume {
    /// The volume.
    pub volume: Arc<Volume>,
    /// Its counters.
    pub stats: Arc<IoStats>,
    /// Its IOPS/throughput throttle, shared by every attachment and connection.
    pub throttle: Arc<Throttle>,
    /// io2: the reservation state every I/O is checked against, held (read) for the I/O's
    /// duration; see [`crate::reservation`].
    pub reservation: Option<Arc<tokio::sync::RwLock<ReservationRecord>>>,
    /// Captures of the snapshots being taken (see [`CaptureSet`]).
    pub captures: Arc<CaptureSet>,
    /// Volumes restored from a snapshot: which blocks are local yet.
    pub hydration: Option<Arc<Hydration>>,
}

/// The captures of the snapshots being taken of one volume, oldest first.
///
/// # Point in time
/// A write passes [`CaptureSet::enter_write`] before it touches the volume and holds the guard
/// until it completes; a snapshot installs its capture under [`CaptureSet::install`]. Either
/// the write completed before the install (and tracking counted it), or it passes through the
/// capture's copy-before-write.
///
/// # Fast path
/// With no snapshot in progress a write takes no lock: it counts itself in `unlocked` and
/// checks `active`; an install raises `active`, then waits for `unlocked` to drain before it
/// takes the lock. Both sides write, then read (`SeqCst`), so one always sees the other.
#[derive(Debug, Default)]
pub struct CaptureSet {
    active: AtomicUsize,
    unlocked: AtomicUsize,
    list: tokio::sync::RwLock<Vec<Arc<Capture>>>,
}

/// Held by a write from its capture check until it completes.
#[derive(Debug)]
pub enum CaptureGuard<'a> {
    /// No capture was active: the write is counted in `unlocked`.
    Unlocked(&'a CaptureSet),
    /// Captures were active: their read lock.
    Locked(tokio::sync::RwLockReadGuard<'a, Vec<Arc<Capture>>>),
}

impl Drop for CaptureGuard<'_> {
    fn drop(&mut self) {
        if let CaptureGuard::Unlocked(set) = self {
            set.unlocked.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl CaptureSet {
    /// Before a write to `[offset, offset + len)`: saves what active captures need.
    pub async fn enter_write(&self, offset: u64, len: u64) -> CaptureGuard<'_> {
        self.unlocked.fetch_add(1, Ordering::SeqCst);
        if self.active.load(Ordering::SeqCst) == 0 {
            return CaptureGuard::Unlocked(self);
        }
        self.unlocked.fetch_sub(1, Ordering::SeqCst);
        // Boxed: the copy-before-write is a large future (about 1.5 KB), and it would otherwise
        // make every write's future that large, to be moved at each step, snapshot or not.
        Box::pin(self.enter_write_captured(offset, len)).await
    }

    /// [`CaptureSet::enter_write`] while captures are active.
    async fn enter_write_captured(&self, offset: u64, len: u64) -> CaptureGuard<'_> {
        let list = self.list.read().await;
        for c in list.iter() {
            c.before_write(offset, len).await;
        }
        CaptureGuard::Locked(list)
    }

    /// Pauses writes to install a capture: returns once no write is in flight. Call
    /// [`CaptureSet::installed`] or [`CaptureSet::abandoned`] after.
    pub async fn install(&self) -> tokio::sync::RwLockWriteGuard<'_, Vec<Arc<Capture>>> {
        self.active.fetch_add(1, Ordering::SeqCst);
        // Writes that skipped the lock before they could see `active` finish quickly; new
        // ones take the lock.
        while self.unlocked.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.list.write().await
    }

    /// Undoes [`CaptureSet::install`] when no capture was pushed.
    pub fn abandoned(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Removes `capture` (its snapshot has read everything it needs).
    pub async fn remove(&self, capture: &Arc<Capture>) {
        let mut list = self.list.write().await;
        let before = list.len();
        list.retain(|c| !Arc::ptr_eq(c, capture));
        if list.len() < before {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Every capture installed now.
    pub async fn all(&self) -> Vec<Arc<Capture>> {
        self.list.read().await.clone()
    }
}

/// One attachment, as NBD serves it.
#[derive(Debug)]
pub struct Export {
    /// `vol-…`.
    pub volume_id: String,
    /// `i-…` of the attachment.
    pub instance_id: String,
    /// Fencing generation of the attachment.
    pub generation: u64,
    /// The volume and counters.
    pub open: OpenVolume,
    /// Every I/O of this attachment enters here.
    pub gate: Arc<Gate>,
    /// HDD types are advertised as rotational.
    pub rotational: bool,
    /// The EBS cap of the instance's type, shared by all its volumes (instances launched by
    /// RunInstances only).
    pub instance_throttle: Option<Arc<Throttle>>,
    fenced: watch::Sender<bool>,
}

impl Export {
    /// A live export for one attachment.
    pub fn new(
        volume_id: String,
        instance_id: String,
        generation: u64,
        open: OpenVolume,
        rotational: bool,
    ) -> Export {
        Export {
            volume_id,
            instance_id,
            generation,
            open,
            gate: Gate::new(),
            rotational,
            instance_throttle: None,
            fenced: watch::channel(false).0,
        }
    }

    /// The export, with its I/O also counted against an instance's EBS cap.
    pub fn with_instance_throttle(mut self, throttle: Option<Arc<Throttle>>) -> Export {
        self.instance_throttle = throttle;
        self
    }

    /// Notified (value `true`) when the export is fenced: sessions close.
    pub fn fence_signal(&self) -> watch::Receiver<bool> {
        self.fenced.subscribe()
    }

    /// Completes once the export is fenced.
    pub async fn fenced(&self) {
        let mut rx = self.fenced.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Leave from the volume's reservation (io2) for this attachment to read, or with `write`
    /// to change data; `None` if the reservation does not allow it. Held while the access runs,
    /// so a reservation change (preempt-and-abort) waits for it. Asked by every request, and
    /// again by a reply sent from the page cache, which takes its data only when it is sent.
    pub async fn access(&self, write: bool) -> Option<Access<'_>> {
        match &self.open.reservation {
            Some(lock) => {
                let guard = lock.read().await;
                guard
                    .allows(&self.instance_id, write)
                    .then_some(Access(Some(guard)))
            }
            None => Some(Access(None)),
        }
    }

    /// [`Export::access`] if it can be had without waiting; `None` if it is refused or the
    /// reservation is being changed, which [`Export::access`] then tells apart.
    pub fn access_now(&self, write: bool) -> Option<Access<'_>> {
        match &self.open.reservation {
            Some(lock) => {
                let guard = lock.try_read().ok()?;
                guard
                    .allows(&self.instance_id, write)
                    .then_some(Access(Some(guard)))
            }
            None => Some(Access(None)),
        }
    }

    /// Fences the attachment: tells sessions to close, refuses new I/O and waits until no I/O of
    /// it is in flight.
    pub async fn fence(&self) {
        self.fenced.send_replace(true);
        self.gate.fence().await;
    }
}

/// See [`Export::access`]. Holds the reservation (if the volume has one) for reading.
#[derive(Debug)]
pub struct Access<'a>(
    #[allow(dead_code, reason = "held, not read")]
    Option<tokio::sync::RwLockReadGuard<'a, ReservationRecord>>,
);

/// Export name → export.
///
/// # Timing
/// The map is keyed by the SHA-256 of the name, never the name itself, so a lookup's time
/// (hashing, bucket probing, the final equality check) depends only on digests: a client probing
/// names learns nothing about how much of a live token it guessed right.
#[derive(Debug, Default)]
pub struct Exports {
    by_token: RwLock<HashMap<TokenKey, Arc<Export>>>,
}

/// SHA-256 of an export name.
type TokenKey = [u8; 32];

fn token_key(token: &str) -> TokenKey {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Exports {
    /// Serves `export` under `token`.
    pub fn insert(&self, token: String, export: Arc<Export>) {
        self.write().insert(token_key(&token), export);
    }

    /// Stops serving `token` to new sessions; returns the export so the caller can fence it.
    pub fn remove(&self, token: &str) -> Option<Arc<Export>> {
        self.write().remove(&token_key(token))
    }

    /// The export named `token`, if attached.
    pub fn get(&self, token: &str) -> Option<Arc<Export>> {
        let key = token_key(token);
        self.by_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }

    /// Removes every export (shutdown).
    pub fn drain(&self) -> Vec<Arc<Export>> {
        self.write().drain().map(|(_, e)| e).collect()
    }

    // The lock guards a plain map; a panic while holding it cannot leave it half-updated, so a
    // poisoned lock is safe to keep using.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TokenKey, Arc<Export>>> {
        self.by_token.write().unwrap_or_else(|p| p.into_inner())
    }
}
