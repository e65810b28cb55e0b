//! The EBS direct APIs (EBS-REFERENCE §3.1): write a snapshot block by block (StartSnapshot,
//! PutSnapshotBlock, CompleteSnapshot) and read snapshots' blocks (ListSnapshotBlocks,
//! ListChangedBlocks, GetSnapshotBlock).
//!
//! A snapshot being written keeps its block map in memory; each block goes to the store when
//! put (checksum verified first), and CompleteSnapshot writes the manifest. A server restart
//! fails snapshots still being written, like any pending snapshot. Block tokens name the block
//! index, its content key and an expiry: a token is valid until it expires and only for the
//! block it was listed for.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};
use snapshot::{BLOCK_SIZE, BlockKey, Manifest, block, create, gc};

use super::model;
use super::views::{BlockData, BlockPage, BlockRef, ChangedBlock};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, GIB, State, check_id, internal, now_ms};
use crate::catalog::{Change, SnapshotRecord, SnapshotState};
use crate::ids;

/// How long listed block tokens stay valid.
const TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
/// The volume id EBS reports for snapshots made through the direct APIs.
const DIRECT_VOLUME_ID: &str = "vol-ffffffff";
/// Largest volume, GiB.
const MAX_VOLUME_GIB: i64 = 65_536;

/// A snapshot being written through the direct APIs.
#[derive(Debug)]
pub(super) struct Staging {
    volume_size: u64,
    parent: Option<Manifest>,
    /// Blocks put: index → (SHA-256, whether all zeros).
    written: BTreeMap<u64, (BlockKey, bool)>,
    last_call_ms: u64,
    timeout_ms: u64,
    client_token: Option<String>,
}

fn validation(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(ErrorCode::ValidationException, message)
}

fn not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::ResourceNotFoundException,
        format!("The snapshot '{id}' does not exist."),
    )
}

fn check_snapshot_id(id: &str, param: &str) -> Result<(), Ec2Error> {
    check_id(id, "snap", param, ErrorCode::ValidationException).map_err(|e| validation(e.message))
}

/// `<index>.<key hex>.<expiry ms>`: opaque to clients.
fn token(index: u64, key: &BlockKey, expiry_ms: u64) -> String {
    format!("{index:x}.{}.{expiry_ms:x}", key.to_hex())
}

fn parse_token(t: &str) -> Option<(u64, BlockKey, u64)> {
    let mut parts = t.split('.');
    let index = u64::from_str_radix(parts.next()?, 16).ok()?;
    let key = BlockKey::from_hex(parts.next()?)?;
    let expiry = u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((index, key, expiry))
}

fn page(max_results: Option<i32>) -> Result<usize, Ec2Error> {
    match max_results {
        None => Ok(10_000),
        Some(n) if (100..=10_000).contains(&n) => Ok(n as usize),
        Some(n) => Err(validation(format!(
            "MaxResults must be between 100 and 10000, got {n}."
        ))),
    }
}

fn start_index(next_token: Option<&str>, starting: Option<i32>) -> Result<u64, Ec2Error> {
    // A token overrides the starting index.
    match next_token.filter(|t| !t.is_empty()) {
        Some(t) => u64::from_str_radix(t, 16).map_err(|_| validation("The NextToken is invalid.")),
        None => match starting {
            Some(n) if n < 0 => Err(validation("StartingBlockIndex must be at least 0.")),
            Some(n) => Ok(n as u64),
            None => Ok(0),
        },
    }
}

impl ControlPlane {
    /// The manifest of the completed snapshot `id` of this region.
    fn completed_manifest(&self, who: Account, id: &str) -> Result<Manifest, Ec2Error> {
        check_snapshot_id(id, "SnapshotId")?;
        let state = self.lock().snapshot(who, id).ok().map(|s| s.state);
        match state {
            None => return Err(not_found(id)),
            Some(SnapshotState::Completed) => {}
            Some(s) => {
                return Err(validation(format!(
                    "The snapshot '{id}' is {}; it must be completed.",
                    s.as_str()
                )));
            }
        }
        self.runtime
            .block_on(self.own_store().get_manifest(id))
            .map_err(internal("reading the manifest"))?
            .ok_or_else(|| not_found(id))
    }

    /// StartSnapshot.
    pub fn start_snapshot(
        &self,
        who: Account,
        req: model::StartSnapshotRequest,
    ) -> Result<(SnapshotRecord, Option<String>), Ec2Error> {
        if !(1..=MAX_VOLUME_GIB).contains(&req.volume_size) {
            return Err(validation(format!(
                "VolumeSize must be between 1 and {MAX_VOLUME_GIB} GiB."
            )));
        }
        if req.encrypted == Some(true) {
            return Err(validation(
                "StartSnapshot does not make encrypted snapshots on this server; snapshot an encrypted volume instead.",
            ));
        }
        let timeout_min = req.timeout.unwrap_or(60);
        if !(10..=4320).contains(&timeout_min) {
            return Err(validation("Timeout must be between 10 and 4320 minutes."));
        }
        let parent = match req.parent_snapshot_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(self.completed_manifest(who, p)?),
            None => None,
        };
        if parent.as_ref().is_some_and(|p| p.kms_key_id.is_some()) {
            return Err(validation(
                "The parent snapshot is encrypted; StartSnapshot here makes unencrypted snapshots only.",
            ));
        }
        let volume_size = req.volume_size as u64 * GIB;
        if parent.as_ref().is_some_and(|p| p.volume_size > volume_size) {
            return Err(validation(
                "VolumeSize is smaller than the parent snapshot's volume size.",
            ));
        }
        // Announced to the store before the lock is taken (the store may be remote), so that
        // garbage collection spares the blocks it is about to receive.
        let snapshot_id = ids::new_id("snap");
        self.runtime
            .block_on(gc::begin_write(self.own_store(), &snapshot_id))
            .map_err(internal("announcing the snapshot to the store"))?;
        let started =
            self.start_snapshot_locked(who, req, snapshot_id.clone(), parent, timeout_min);
        // Failed, or answered with an earlier snapshot of the same client token.
        if !started
            .as_ref()
            .is_ok_and(|(rec, _)| rec.snapshot_id == snapshot_id)
        {
            let _ = self
                .runtime
                .block_on(gc::end_write(self.own_store(), &snapshot_id));
        }
        started
    }

    /// StartSnapshot's checks and commit, under the lock, for the announced `snapshot_id`.
    fn start_snapshot_locked(
        &self,
        who: Account,
        req: model::StartSnapshotRequest,
        snapshot_id: String,
        parent: Option<Manifest>,
        timeout_min: i32,
    ) -> Result<(SnapshotRecord, Option<String>), Ec2Error> {
        let description = req.description.unwrap_or_default();
        let volume_size = req.volume_size as u64 * GIB;
        let mut st = self.lock();
        // The parent was read without the lock; while it is in the catalog its manifest stays.
        if let Some(p) = &parent
            && st
                .snapshots
                .get(&p.snapshot_id)
                .is_none_or(|s| s.state != SnapshotState::Completed)
        {
            return Err(not_found(&p.snapshot_id));
        }
        if let Some(t) = req.client_token.as_deref().filter(|t| !t.is_empty())
            && let Some((id, _)) = st
                .direct
                .iter()
                .find(|(_, s)| s.client_token.as_deref() == Some(t))
            && let Ok(rec) = st.snapshot(who, id)
        {
            return Ok((rec.clone(), parent.map(|p| p.snapshot_id)));
        }
        let mut tags = BTreeMap::new();
        for t in &req.tags {
            tags.insert(t.key.clone(), t.value.clone());
        }
        let now = now_ms();
        let rec = SnapshotRecord {
            snapshot_id,
            owner_id: who.id().to_string(),
            volume_id: DIRECT_VOLUME_ID.into(),
            volume_size_gib: req.volume_size as u32,
            state: SnapshotState::Pending,
            state_message: String::new(),
            start_ms: now,
            complete_ms: None,
            description,
            tags,
            parent_id: parent.as_ref().map(|p| p.snapshot_id.clone()),
            source: None,
            block_count: 0,
            blocks_written: 0,
            bytes_written: 0,
            delete_requested: false,
            kms_key_id: None,
        };
        self.commit(&[Change::PutSnapshot(rec.clone())])?;
        st.snapshots.insert(rec.snapshot_id.clone(), rec.clone());
        let parent_id = rec.parent_id.clone();
        st.direct.insert(
            rec.snapshot_id.clone(),
            Staging {
                volume_size,
                parent,
                written: BTreeMap::new(),
                last_call_ms: now,
                timeout_ms: timeout_min as u64 * 60_000,
                client_token: req.client_token.filter(|t| !t.is_empty()),
            },
        );
        tracing::info!(snapshot_id = %rec.snapshot_id, "direct-API snapshot started");
        Ok((rec, parent_id))
    }

    /// The staging of a pending direct snapshot, failing it if it timed out.
    fn staging<'a>(
        &self,
        st: &'a mut State,
        who: Account,
        id: &str,
    ) -> Result<&'a mut Staging, Ec2Error> {
        check_snapshot_id(id, "SnapshotId")?;
        let now = now_ms();
        let Ok(rec) = st.snapshot(who, id) else {
            return Err(not_found(id));
        };
        let expired = match st.direct.get(id) {
            None => {
                return Err(validation(format!(
                    "The snapshot '{id}' is {}; blocks can only be written while it is pending.",
                    rec.state.as_str()
                )));
            }
            Some(s) => now.saturating_sub(s.last_call_ms) > s.timeout_ms,
        };
        if expired {
            self.fail_direct(st, id, "The snapshot timed out before it was completed.");
            return Err(validation(format!("The snapshot '{id}' timed out.")));
        }
        let s = st
            .direct
            .get_mut(id)
            .ok_or_else(|| Ec2Error::internal("direct snapshot vanished"))?;
        s.last_call_ms = now;
        Ok(s)
    }

    /// Fails every direct-API snapshot idle past its timeout.
    pub(super) fn reap_direct(&self) {
        let now = now_ms();
        let mut st = self.lock();
        let expired: Vec<String> = st
            .direct
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.last_call_ms) > s.timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::warn!(snapshot_id = %id, "direct-API snapshot timed out");
            self.fail_direct(
                &mut st,
                &id,
                "The snapshot timed out before it was completed.",
            );
        }
    }

    fn fail_direct(&self, st: &mut State, id: &str, why: &str) {
        st.direct.remove(id);
        if let Some(mut rec) = st.snapshots.get(id).cloned() {
            rec.state = SnapshotState::Error;
            rec.state_message = why.to_string();
            if self.commit(&[Change::PutSnapshot(rec.clone())]).is_ok() {
                st.snapshots.insert(id.to_string(), rec);
            }
        }
        // Not under the lock: the store may be remote.
        let store = self.own_store().clone();
        let id = id.to_string();
        self.spawn(st, async move {
            let _ = gc::end_write(&store, &id).await;
        });
    }

    /// PutSnapshotBlock: checks the checksum, stores the block (if new), records it.
    pub fn put_snapshot_block(
        &self,
        who: Account,
        req: model::PutSnapshotBlockRequest,
    ) -> Result<String, Ec2Error> {
        if req.checksum_algorithm != "SHA256" {
            return Err(validation("ChecksumAlgorithm must be SHA256."));
        }
        if req.data_length as u64 != BLOCK_SIZE || req.block_data.len() as u64 != BLOCK_SIZE {
            return Err(validation(format!(
                "DataLength must be {BLOCK_SIZE} and match the data ({} bytes sent).",
                req.block_data.len()
            )));
        }
        if req.block_index < 0 {
            return Err(validation("BlockIndex must be at least 0."));
        }
        let index = req.block_index as u64;
        {
            let mut st = self.lock();
            let s = self.staging(&mut st, who, &req.snapshot_id)?;
            if index >= s.volume_size.div_ceil(BLOCK_SIZE) {
                return Err(validation(format!(
                    "BlockIndex {index} is past the end of the {} GiB volume.",
                    s.volume_size / GIB
                )));
            }
        }
        let key = BlockKey::of(&req.block_data);
        let sent = B64.decode(&req.checksum).ok();
        if sent.as_deref() != Some(&key.0[..]) {
            return Err(validation(
                "The checksum does not match the block data (INVALID_CHECKSUM).",
            ));
        }
        let zero = block::is_zero(&req.block_data);
        if !zero {
            let store = self.own_store();
            let present = self
                .runtime
                .block_on(store.has_block(&key))
                .map_err(internal("checking the store"))?;
            if !present {
                let stored = block::encode(&req.block_data);
                self.runtime
                    .block_on(store.put_block(&key, stored))
                    .map_err(internal("storing the block"))?;
            }
        }
        let mut st = self.lock();
        let s = self.staging(&mut st, who, &req.snapshot_id)?;
        s.written.insert(index, (key, zero));
        Ok(B64.encode(key.0))
    }

    /// CompleteSnapshot: checks the count and the optional LINEAR aggregate checksum, then
    /// writes the manifest. Returns the status (`completed`).
    pub fn complete_snapshot(
        &self,
        who: Account,
        req: model::CompleteSnapshotRequest,
    ) -> Result<String, Ec2Error> {
        let mut st = self.lock();
        let s = self.staging(&mut st, who, &req.snapshot_id)?;
        if req.changed_blocks_count < 0 || req.changed_blocks_count as usize != s.written.len() {
            return Err(validation(format!(
                "ChangedBlocksCount is {} but {} blocks were written.",
                req.changed_blocks_count,
                s.written.len()
            )));
        }
        if let Some(sum) = req.checksum.as_deref().filter(|c| !c.is_empty()) {
            if req.checksum_algorithm.as_deref() != Some("SHA256")
                || req.checksum_aggregation_method.as_deref() != Some("LINEAR")
            {
                return Err(validation(
                    "An aggregate checksum needs ChecksumAlgorithm SHA256 and ChecksumAggregationMethod LINEAR.",
                ));
            }
            let mut h = Sha256::new();
            for (key, _) in s.written.values() {
                h.update(key.0);
            }
            let aggregate: [u8; 32] = h.finalize().into();
            if B64.decode(sum).ok().as_deref() != Some(&aggregate[..]) {
                return Err(validation(
                    "The aggregate checksum does not match the blocks written (INVALID_CHECKSUM).",
                ));
            }
        }
        // Out of staging: no more blocks are taken. The manifest is written without the lock
        // (the store may be remote); the record stays `pending` meanwhile.
        let Some(s) = st.direct.remove(&req.snapshot_id) else {
            return Err(Ec2Error::internal("direct snapshot vanished"));
        };
        let Some(rec) = st.snapshots.get(&req.snapshot_id).cloned() else {
            return Err(not_found(&req.snapshot_id));
        };
        drop(st);
        let delta: create::Delta = s
            .written
            .iter()
            .map(|(i, (k, zero))| (*i, (!zero).then_some(*k)))
            .collect();
        let empty = BTreeMap::new();
        let header = Manifest {
            snapshot_id: rec.snapshot_id.clone(),
            volume_id: DIRECT_VOLUME_ID.into(),
            parent_id: rec.parent_id.clone(),
            owner_id: rec.owner_id.clone(),
            kms_key_id: None,
            volume_size: s.volume_size,
            start_ms: rec.start_ms,
            complete_ms: now_ms(),
            blocks: BTreeMap::new(),
        };
        let m = create::compose(
            s.parent.as_ref().map_or(&empty, |p| &p.blocks),
            &delta,
            header,
        );
        let store = self.own_store().clone();
        let put = self.runtime.block_on(store.put_manifest(&m));
        let _ = self
            .runtime
            .block_on(gc::end_write(&store, &rec.snapshot_id));
        let mut st = self.lock();
        // Re-read: a DeleteSnapshot may have been asked meanwhile.
        let Some(mut rec) = st.snapshots.get(&req.snapshot_id).cloned() else {
            return Err(not_found(&req.snapshot_id));
        };
        if let Err(e) = put {
            rec.state = SnapshotState::Error;
            rec.state_message = e.to_string();
            self.settle(&mut st, rec);
            return Err(Ec2Error::new(
                ErrorCode::InternalServerException,
                e.to_string(),
            ));
        }
        rec.state = SnapshotState::Completed;
        rec.complete_ms = Some(m.complete_ms);
        rec.block_count = m.blocks.len() as u64;
        rec.blocks_written = s.written.len() as u64;
        // Honours a DeleteSnapshot made meanwhile, and a parent deleted meanwhile.
        self.settle(&mut st, rec);
        tracing::info!(snapshot_id = %req.snapshot_id, blocks = m.blocks.len(), "direct-API snapshot completed");
        Ok("completed".into())
    }

    /// ListSnapshotBlocks: the snapshot's non-zero blocks from an index, with tokens.
    pub fn list_snapshot_blocks(
        &self,
        who: Account,
        req: model::ListSnapshotBlocksRequest,
    ) -> Result<BlockPage<BlockRef>, Ec2Error> {
        let max = page(req.max_results)?;
        let from = start_index(req.next_token.as_deref(), req.starting_block_index)?;
        let m = self.completed_manifest(who, &req.snapshot_id)?;
        let expiry = now_ms() + TOKEN_TTL_MS;
        let mut blocks = vec![];
        let mut next = None;
        for (i, k) in m.blocks.range(from..) {
            if blocks.len() == max {
                next = Some(format!("{i:x}"));
                break;
            }
            blocks.push(BlockRef {
                index: *i,
                token: token(*i, k, expiry),
            });
        }
        Ok(BlockPage {
            blocks,
            expiry_ms: expiry,
            volume_size_gib: m.volume_size / GIB,
            block_size: BLOCK_SIZE,
            next_token: next,
        })
    }

    /// ListChangedBlocks: indexes whose content differs between two snapshots (or, without a
    /// first snapshot, every non-zero block of the second).
    pub fn list_changed_blocks(
        &self,
        who: Account,
        req: model::ListChangedBlocksRequest,
    ) -> Result<BlockPage<ChangedBlock>, Ec2Error> {
        let max = page(req.max_results)?;
        let from = start_index(req.next_token.as_deref(), req.starting_block_index)?;
        let second = self.completed_manifest(who, &req.second_snapshot_id)?;
        let first = match req.first_snapshot_id.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => self.completed_manifest(who, f)?,
            None => Manifest {
                blocks: BTreeMap::new(),
                ..second.clone()
            },
        };
        if first.volume_size > second.volume_size {
            return Err(validation(
                "The first snapshot's volume is larger than the second's.",
            ));
        }
        let expiry = now_ms() + TOKEN_TTL_MS;
        let mut indexes: Vec<u64> = first
            .blocks
            .keys()
            .chain(second.blocks.keys())
            .copied()
            .filter(|i| *i >= from)
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut changed = vec![];
        let mut next = None;
        for i in indexes {
            let (a, b) = (first.blocks.get(&i), second.blocks.get(&i));
            if a == b {
                continue;
            }
            if changed.len() == max {
                next = Some(format!("{i:x}"));
                break;
            }
            changed.push(ChangedBlock {
                index: i,
                first_token: a.map(|k| token(i, k, expiry)),
                second_token: b.map(|k| token(i, k, expiry)),
            });
        }
        Ok(BlockPage {
            blocks: changed,
            expiry_ms: expiry,
            volume_size_gib: second.volume_size / GIB,
            block_size: BLOCK_SIZE,
            next_token: next,
        })
    }

    /// GetSnapshotBlock: the block a token names, verified.
    pub fn get_snapshot_block(
        &self,
        who: Account,
        req: model::GetSnapshotBlockRequest,
    ) -> Result<BlockData, Ec2Error> {
        let m = self.completed_manifest(who, &req.snapshot_id)?;
        let Some((index, key, expiry)) = parse_token(&req.block_token) else {
            return Err(validation("The BlockToken is invalid."));
        };
        if index != req.block_index as u64 || m.blocks.get(&index) != Some(&key) {
            return Err(validation(
                "The BlockToken does not name this block of this snapshot.",
            ));
        }
        if expiry < now_ms() {
            return Err(validation(
                "The BlockToken has expired; list the blocks again.",
            ));
        }
        // An encrypted snapshot's blocks are opened for its owner, as the EBS direct APIs do
        // (while its KMS key is usable).
        let seal = self.manifest_seal(&self.lock(), &m)?;
        let data = self
            .runtime
            .block_on(self.own_store().get_block_sealed(seal.clone(), &key))
            .map_err(|e| {
                Ec2Error::new(
                    ErrorCode::InternalServerException,
                    format!("snapshot {} block {index}: {e}", req.snapshot_id),
                )
            })?;
        // A plain block's key is its SHA-256; a sealed block's is an HMAC, so hash it here.
        let checksum = match seal {
            None => key.0,
            Some(_) => Sha256::digest(&data).into(),
        };
        Ok(BlockData {
            data,
            checksum: B64.encode(checksum),
            checksum_algorithm: "SHA256",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let k = BlockKey::of(b"x");
        let t = token(42, &k, 0x1234);
        assert_eq!(parse_token(&t), Some((42, k, 0x1234)));
        assert_eq!(parse_token("zz"), None);
        assert_eq!(parse_token(&format!("{t}.extra")), None);
    }
}
