//! The fencing gate on the I/O path: one per attachment.
//!
//! Every I/O enters the gate before it touches the volume and leaves it when it completes.
//! [`Gate::fence`] closes the gate and returns only once every I/O that entered has left, so when
//! a detach returns, no I/O of the fenced attachment can still reach the disk.
//!
//! # Design
//! One `AtomicU64` holds a "fenced" bit and the count of I/Os inside, so entering is a single
//! `fetch_add` on the hot path. An I/O that enters after the bit is set backs out at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

const FENCED: u64 = 1 << 63;
const COUNT: u64 = FENCED - 1;

/// The gate of one attachment.
#[derive(Debug, Default)]
pub struct Gate {
    state: AtomicU64,
    drained: Notify,
}

/// Proof that an I/O is inside the gate; leaving happens on drop.
#[derive(Debug)]
pub struct GateGuard {
    gate: Arc<Gate>,
}

impl Gate {
    /// A new, open gate.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Enters the gate, or returns `None` if it has been fenced.
    pub fn enter(self: &Arc<Self>) -> Option<GateGuard> {
        let prev = self.state.fetch_add(1, Ordering::Acquire);
        if prev & FENCED != 0 {
            self.leave();
            return None;
        }
        Some(GateGuard {
            gate: Arc::clone(self),
        })
    }

    /// Whether the gate has been fenced.
    pub fn is_fenced(&self) -> bool {
        self.state.load(Ordering::Acquire) & FENCED != 0
    }

    /// Closes the gate and waits until no I/O is inside. Idempotent.
    pub async fn fence(&self) {
        self.state.fetch_or(FENCED, Ordering::AcqRel);
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Register before checking, so a leave between the check and the await is not lost.
            notified.as_mut().enable();
            if self.state.load(Ordering::Acquire) & COUNT == 0 {
                return;
            }
            notified.await;
        }
    }

    fn leave(&self) {
        let prev = self.state.fetch_sub(1, Ordering::Release);
        if prev & FENCED != 0 && prev & COUNT == 1 {
            self.drained.notify_waiters();
        }
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fence_waits_for_inflight_and_refuses_new_entries() {
        let gate = Gate::new();
        let guard = gate.enter().expect("open gate admits I/O");
        let g2 = Arc::clone(&gate);
        let fencing = tokio::spawn(async move { g2.fence().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !fencing.is_finished(),
            "fence must wait for the in-flight I/O"
        );
        assert!(gate.enter().is_none(), "a fenced gate admits nothing");
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), fencing)
            .await
            .expect("fence returns once drained")
            .unwrap();
        assert!(gate.is_fenced());
    }

    #[tokio::test]
    async fn fence_on_idle_gate_returns_at_once() {
        let gate = Gate::new();
        gate.fence().await;
        gate.fence().await;
        assert!(gate.enter().is_none());
    }
}
