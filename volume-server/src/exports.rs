//! The export registry: which NBD export name (an attachment's secret token) serves which open
//! volume, through which fencing gate. The control plane adds and removes entries; NBD sessions
//! look them up at handshake and hold their `Arc<Export>` for the session's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use storage_engine::{Gate, Throttle, Volume};
use tokio::sync::watch;

/// I/O counters of one volume, shared by all its attachments and sessions.
#[derive(Debug, Default)]
pub struct IoStats {
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

impl IoStats {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
            fenced: watch::channel(false).0,
        }
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

    /// Fences the attachment: tells sessions to close, refuses new I/O and waits until no I/O of
    /// it is in flight.
    pub async fn fence(&self) {
        self.fenced.send_replace(true);
        self.gate.fence().await;
    }
}

/// Export name → export.
#[derive(Debug, Default)]
pub struct Exports {
    by_token: RwLock<HashMap<String, Arc<Export>>>,
}

impl Exports {
    /// Serves `export` under `token`.
    pub fn insert(&self, token: String, export: Arc<Export>) {
        self.write().insert(token, export);
    }

    /// Stops serving `token` to new sessions; returns the export so the caller can fence it.
    pub fn remove(&self, token: &str) -> Option<Arc<Export>> {
        self.write().remove(token)
    }

    /// The export named `token`, if attached.
    pub fn get(&self, token: &str) -> Option<Arc<Export>> {
        self.by_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// Removes every export (shutdown).
    pub fn drain(&self) -> Vec<Arc<Export>> {
        self.write().drain().map(|(_, e)| e).collect()
    }

    // The lock guards a plain map; a panic while holding it cannot leave it half-updated, so a
    // poisoned lock is safe to keep using.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Export>>> {
        self.by_token.write().unwrap_or_else(|p| p.into_inner())
    }
}
