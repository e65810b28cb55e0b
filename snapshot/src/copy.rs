//! Copying a snapshot between stores (regions): only the blocks the destination lacks travel,
//! then the manifest under its new id. Copies of later snapshots of the same volume are
//! incremental by construction: their unchanged blocks are already in the destination.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt as _;

use crate::block::{self, BlockKey, BlockSeal};
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

/// The seals of a copy: the source snapshot's (if encrypted) and the copy's (if encrypted).
/// When both are the same KMS key (or neither is encrypted) the stored blocks travel as they are;
/// otherwise every block is opened and stored again under the copy's own addresses and seal.
#[derive(Debug, Clone, Default)]
pub struct CopySeals {
    /// The source snapshot's seal.
    pub src: Option<Arc<BlockSeal>>,
    /// The copy's seal.
    pub dst: Option<Arc<BlockSeal>>,
}

impl CopySeals {
    fn rekeys(&self) -> bool {
        self.src.as_ref().map(|s| s.key_id()) != self.dst.as_ref().map(|s| s.key_id())
    }
}

/// Copies snapshot `m` (read from `src`) into `dst` as `new_id`, owned by `owner_id`, sealed as
/// `seals` say. `done` counts distinct blocks handled, for progress. Every block sent is verified
/// (CRC, seal and key) on the way.
#[allow(clippy::too_many_arguments)]
pub async fn copy(
    src: &Store,
    dst: &Store,
    m: &Manifest,
    seals: &CopySeals,
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
    let rekey = seals.rekeys();
    let worker_failed = |e: tokio::task::JoinError| {
        CopyError::Store(StoreError::Io {
            store: dst.url().to_string(),
            source: std::io::Error::other(e),
        })
    };
    let mut results = futures::stream::iter(keys)
        .map(|key| {
            let index = first_index.get(&key).copied().unwrap_or(0);
            async move {
                if !rekey && dst.has_block(&key).await? {
                    return Ok::<_, CopyError>((key, key, None));
                }
                let named = |source| CopyError::Block {
                    snapshot_id: m.snapshot_id.clone(),
                    index,
                    source,
                };
                let raw = src.get_block_raw(&key).await.map_err(named)?;
                let (src_seal, dst_seal) = (seals.src.clone(), seals.dst.clone());
                let (new_key, out, checked) = tokio::task::spawn_blocking(move || {
                    match block::decode_with(src_seal.as_deref(), &key, &raw) {
                        Err(e) => (key, raw, Err(e)),
                        Ok(_) if !rekey => (key, raw, Ok(())),
                        Ok(plain) => {
                            let k = block::key_of(dst_seal.as_deref(), &plain);
                            (
                                k,
                                block::encode_with(dst_seal.as_deref(), &k, &plain),
                                Ok(()),
                            )
                        }
                    }
                })
                .await
                .map_err(worker_failed)?;
                checked.map_err(|source| named(StoreError::CorruptBlock { key, source }))?;
                if rekey && dst.has_block(&new_key).await? {
                    return Ok((key, new_key, None));
                }
                let n = out.len() as u64;
                dst.put_block(&new_key, out).await?;
                Ok((key, new_key, Some(n)))
            }
        })
        .buffer_unordered(PARALLEL);
    let mut renamed = HashMap::new();
    while let Some(r) = results.next().await {
        let (old, new, sent) = r?;
        if let Some(n) = sent {
            stats.blocks_copied += 1;
            stats.bytes_copied += n;
        }
        renamed.insert(old, new);
        done.fetch_add(1, Ordering::Relaxed);
    }
    let copy = Manifest {
        snapshot_id: new_id.to_string(),
        volume_id: m.volume_id.clone(),
        parent_id: None,
        owner_id: owner_id.to_string(),
        kms_key_id: seals.dst.as_ref().map(|s| s.key_id().to_string()),
        volume_size: m.volume_size,
        start_ms: m.start_ms,
        complete_ms: now_ms,
        blocks: m.blocks.iter().map(|(i, k)| (*i, renamed[k])).collect(),
    };
    Ok((copy, stats))
}
