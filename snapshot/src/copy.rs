//! Copying a snapshot between stores (regions): only the blocks the destination lacks travel,
//! then the manifest under its new id. Copies of later snapshots of the same volume are
//! incremental by construction: their unchanged blocks are already in the destination.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt as _;

use crate::block::{self, BlockKey};
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

/// Blocks in flight at once.
const PARALLEL: usize = 8;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source snapshot has no manifest in the source store.
    #[error("the snapshot '{0}' does not exist in the source store")]
    SourceNotFound(String),
    /// A source block is corrupt or missing.
    #[error("source snapshot {snapshot_id}, block {index}: {source}")]
    Block {
        /// Source snapshot.
        snapshot_id: String,
        /// Block index.
        index: u64,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a copy moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Distinct blocks the snapshot references.
    pub blocks: u64,
    /// Blocks sent (missing at the destination).
    pub blocks_copied: u64,
    /// Stored bytes sent.
    pub bytes_copied: u64,
}

/// The manifest of `src_id` in `src`.
pub async fn source_manifest(src: &Store, src_id: &str) -> Result<Manifest, CopyError> {
    src.get_manifest(src_id)
        .await?
        .ok_or_else(|| CopyError::SourceNotFound(src_id.to_string()))
}

/// Copies snapshot `m` (read from `src`) into `dst` as `new_id`, owned by `owner_id`. `done` counts distinct blocks
/// handled, for progress. Every block sent is verified (CRC and SHA-256) on the way.
pub async fn copy(
    src: &Store,
    dst: &Store,
    m: &Manifest,
    new_id: &str,
    owner_id: &str,
    now_ms: u64,
    done: &AtomicU64,
) -> Result<(Manifest, CopyStats), CopyError> {
    let mut first_index = std::collections::HashMap::new();
    for (i, k) in &m.blocks {
        first_index.entry(*k).or_insert(*i);
    }
    let keys: BTreeSet<BlockKey> = m.blocks.values().copied().collect();
    let mut stats = CopyStats {
        blocks: keys.len() as u64,
        ..CopyStats::default()
    };
    let mut results = futures::stream::iter(keys)
        .map(|key| {
            let index = first_index.get(&key).copied().unwrap_or(0);
            async move {
                if dst.has_block(&key).await? {
                    return Ok::<_, CopyError>(None);
                }
                let named = |source| CopyError::Block {
                    snapshot_id: m.snapshot_id.clone(),
                    index,
                    source,
                };
                let raw = src.get_block_raw(&key).await.map_err(named)?;
                let (raw, checked) = tokio::task::spawn_blocking(move || {
                    let r = block::decode(&key, &raw).map(|_| ());
                    (raw, r)
                })
                .await
                .map_err(|e| {
                    CopyError::Store(StoreError::Io {
                        store: dst.url().to_string(),
                        source: std::io::Error::other(e),
                    })
                })?;
                checked.map_err(|source| named(StoreError::CorruptBlock { key, source }))?;
                let n = raw.len() as u64;
                dst.put_block(&key, raw).await?;
                Ok(Some(n))
            }
        })
        .buffer_unordered(PARALLEL);
    while let Some(r) = results.next().await {
        if let Some(n) = r? {
            stats.blocks_copied += 1;
            stats.bytes_copied += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    let copy = Manifest {
        snapshot_id: new_id.to_string(),
        volume_id: m.volume_id.clone(),
        parent_id: None,
        owner_id: owner_id.to_string(),
        volume_size: m.volume_size,
        start_ms: m.start_ms,
        complete_ms: now_ms,
        blocks: m.blocks.clone(),
    };
    Ok((copy, stats))
}
