//! Taking a snapshot: read the captured blocks, store the ones the store lacks, write the
//! manifest.
//!
//! The new manifest is the parent's block map with every captured block replaced (or removed,
//! when it is now all zeros). Blocks go to the store before the manifest, so a crash part-way
//! leaves unreferenced blocks (reclaimed by garbage collection), never a manifest naming a block
//! that is missing.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;

use crate::block::{self, BlockKey, BlockSeal};
use crate::capture::{Capture, CaptureError};
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

/// How many blocks are read, hashed and stored at once.
pub const PARALLEL_BLOCKS: usize = 8;

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The volume's point-in-time content could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker thread died.
    #[error("snapshot worker failed: {0}")]
    Worker(String),
}

/// What taking a snapshot did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CreateStats {
    /// Blocks read from the volume (the changed or candidate blocks).
    pub blocks_read: u64,
    /// Of those, blocks that were all zeros.
    pub zero_blocks: u64,
    /// Blocks put into the store (the rest were already there).
    pub blocks_stored: u64,
    /// Stored bytes put.
    pub bytes_stored: u64,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CreateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CreateError::Worker(e.to_string()))
}

/// Reads one captured block and stores it if new: `(index, key or None for zeros, stored bytes)`.
async fn one_block(
    store: &Store,
    seal: Option<&Arc<BlockSeal>>,
    capture: &Capture,
    index: u64,
    seen: &Mutex<HashSet<BlockKey>>,
) -> Result<(u64, Option<BlockKey>, Option<u64>), CreateError> {
    let data = capture.read_block(index).await?;
    let hash_seal = seal.cloned();
    let (data, key) = blocking(move || {
        if block::is_zero(&data) {
            (data, None)
        } else {
            let k = block::key_of(hash_seal.as_deref(), &data);
            (data, Some(k))
        }
    })
    .await?;
    let Some(key) = key else {
        return Ok((index, None, None));
    };
    // Equal blocks of one snapshot are stored once, even when read at the same time.
    let first = seen.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    if !first || store.has_block(&key).await? {
        return Ok((index, Some(key), None));
    }
    let seal = seal.cloned();
    let stored = blocking(move || block::encode_with(seal.as_deref(), &key, &data)).await?;
    let n = stored.len() as u64;
    store.put_block(&key, stored).await?;
    Ok((index, Some(key), Some(n)))
}

/// The blocks a snapshot read: index → key, or `None` where the block is now all zeros.
pub type Delta = BTreeMap<u64, Option<BlockKey>>;

/// Reads every block `capture` wants and stores the new ones, sealed under `seal` for an
/// encrypted volume (the parent, if any, must be sealed under the same). `done` counts blocks
/// read, for progress. Compose the manifest with [`compose`] once the parent's manifest is known.
pub async fn take(
    store: &Store,
    seal: Option<Arc<BlockSeal>>,
    capture: Arc<Capture>,
    done: &AtomicU64,
) -> Result<(Delta, CreateStats), CreateError> {
    let mut delta = Delta::new();
    let mut stats = CreateStats::default();
    let wanted = capture.wanted().to_vec();
    let seen = Mutex::new(HashSet::new());
    let seen = &seen;
    let mut results = futures::stream::iter(wanted)
        .map(|b| {
            let capture = capture.clone();
            let seal = seal.as_ref();
            async move { one_block(store, seal, &capture, b, seen).await }
        })
        .buffer_unordered(PARALLEL_BLOCKS);
    while let Some(r) = results.next().await {
        let (index, key, stored) = r?;
        stats.blocks_read += 1;
        done.fetch_add(1, Ordering::Relaxed);
        if key.is_none() {
            stats.zero_blocks += 1;
        }
        delta.insert(index, key);
        if let Some(n) = stored {
            stats.blocks_stored += 1;
            stats.bytes_stored += n;
        }
    }
    Ok((delta, stats))
}

/// The manifest `header` with the parent's blocks (`base`, cut to the volume's size)
/// overlaid by `delta`.
pub fn compose(base: &BTreeMap<u64, BlockKey>, delta: &Delta, mut header: Manifest) -> Manifest {
    let nblocks = header.block_count();
    let mut blocks: BTreeMap<u64, BlockKey> =
        base.range(..nblocks).map(|(k, v)| (*k, *v)).collect();
    for (i, k) in delta.range(..nblocks) {
        match k {
            Some(k) => blocks.insert(*i, *k),
            None => blocks.remove(i),
        };
    }
    header.blocks = blocks;
    header
}
