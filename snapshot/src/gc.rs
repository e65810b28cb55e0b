//! Garbage collection: mark every block a manifest or pin references, sweep the rest.
//!
//! # Exclusion with writers
//! A writer (snapshot or copy) may reuse a block it finds already stored; the sweep must not
//! delete it in between. Both sides write first, then look:
//! - a writer puts `pending/<id>`, then waits while `gc.lease` is held ([`begin_write`]);
//! - the collector takes `gc.lease`, then gives up if any fresh `pending/` marker exists.
//!
//! With a strongly consistent store one of the two always sees the other. Markers older than
//! `stale_ms` (left by a crashed writer) are ignored.

use std::collections::HashSet;
use std::time::Duration;

use crate::block::BlockKey;
use crate::store::{Store, StoreError};

/// What a collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcStats {
    /// Manifests and pins marked from.
    pub roots: u64,
    /// Blocks still referenced.
    pub live_blocks: u64,
    /// Blocks deleted.
    pub deleted_blocks: u64,
    /// Stored bytes deleted.
    pub deleted_bytes: u64,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcOutcome {
    /// Swept.
    Done(GcStats),
    /// Not now: a writer is active or another collector holds the lease. Try again later.
    Deferred,
}

/// Lease and staleness settings.
#[derive(Debug, Clone, Copy)]
pub struct GcConfig {
    /// How long a lease is valid (a collector that dies frees it after this).
    pub lease: Duration,
    /// Pending markers older than this are treated as left by a dead writer.
    pub stale: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            lease: Duration::from_secs(600),
            // Longer than any writer runs: a direct-API snapshot may stay open for 72 hours.
            stale: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Announces a writer: marks `id` pending, then waits until no unexpired lease is held (an
/// expired one was left by a collector that died).
pub async fn begin_write(store: &Store, id: &str) -> Result<(), StoreError> {
    store.mark_pending(id).await?;
    while store.lease_active(wall_ms()).await? {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Ends a writer started with [`begin_write`].
pub async fn end_write(store: &Store, id: &str) -> Result<(), StoreError> {
    store.clear_pending(id).await
}

/// One mark-and-sweep pass as `owner`, at wall-clock `now_ms`.
pub async fn collect(
    store: &Store,
    owner: &str,
    now_ms: u64,
    cfg: GcConfig,
) -> Result<GcOutcome, StoreError> {
    let expires = now_ms + cfg.lease.as_millis() as u64;
    if !store.try_lease(owner, now_ms, expires).await? {
        return Ok(GcOutcome::Deferred);
    }
    let r = sweep(store, owner, now_ms, cfg).await;
    let released = store.release_lease().await;
    let outcome = r?;
    released?;
    Ok(outcome)
}

/// Deletes between lease renewals.
const RENEW_EVERY: u64 = 64;

async fn sweep(
    store: &Store,
    owner: &str,
    now_ms: u64,
    cfg: GcConfig,
) -> Result<GcOutcome, StoreError> {
    let fresh_after = now_ms as i64 - cfg.stale.as_millis() as i64;
    if store
        .pending()
        .await?
        .iter()
        .any(|(_, modified)| *modified > fresh_after)
    {
        return Ok(GcOutcome::Deferred);
    }
    let mut live: HashSet<BlockKey> = HashSet::new();
    let mut stats = GcStats::default();
    for id in store.list_manifest_ids().await? {
        // A manifest deleted since the listing has nothing to keep alive.
        if let Some(m) = store.get_manifest(&id).await? {
            live.extend(m.blocks.values().copied());
            stats.roots += 1;
        }
    }
    for m in store.pinned_manifests().await? {
        live.extend(m.blocks.values().copied());
        stats.roots += 1;
    }
    for b in store.list_blocks().await? {
        if live.contains(&b.key) {
            stats.live_blocks += 1;
        } else {
            // A sweep may outlast its lease: renew it as it goes, and stop if it was lost
            // (a writer may then be reusing blocks this sweep saw as garbage).
            if stats.deleted_blocks % RENEW_EVERY == 0
                && !store
                    .renew_lease(owner, wall_ms() + cfg.lease.as_millis() as u64)
                    .await?
            {
                tracing::warn!(
                    store = store.url(),
                    "garbage collection lost its lease; stopping"
                );
                return Ok(GcOutcome::Deferred);
            }
            store.delete_block(&b.key).await?;
            stats.deleted_blocks += 1;
            stats.deleted_bytes += b.size;
        }
    }
    tracing::info!(
        store = store.url(),
        roots = stats.roots,
        live = stats.live_blocks,
        deleted = stats.deleted_blocks,
        "snapshot garbage collection"
    );
    Ok(GcOutcome::Done(stats))
}
