//! The crate's pieces together: capture → take → manifest → restore, copy and collection.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use rand::RngCore as _;
use storage_engine::{ChangedSince, Engine, EngineKind, Volume};

use crate::block::{self, BLOCK_SIZE, BlockKey};
use crate::capture::Capture;
use crate::copy;
use crate::create;
use crate::gc::{self, GcConfig, GcOutcome};
use crate::manifest::Manifest;
use crate::store::Store;

const BLOCKS: u64 = 16;

fn engine() -> Engine {
    Engine::start(EngineKind::Sync, 2).unwrap()
}

fn random(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    rand::rng().fill_bytes(&mut b);
    b
}

fn header(id: &str, parent: Option<&str>) -> Manifest {
    Manifest {
        snapshot_id: id.into(),
        volume_id: "vol-00000000000000001".into(),
        parent_id: parent.map(str::to_string),
        owner_id: "000000000000".into(),
        kms_key_id: None,
        volume_size: BLOCKS * BLOCK_SIZE,
        start_ms: 1,
        complete_ms: 2,
        blocks: BTreeMap::new(),
    }
}

/// Takes a snapshot of `vol` reading `wanted`, over `base`.
async fn snap(
    dir: &Path,
    store: &Store,
    vol: &Arc<Volume>,
    wanted: Vec<u64>,
    base: &BTreeMap<u64, BlockKey>,
    id: &str,
) -> (Manifest, create::CreateStats) {
    let cap = Arc::new(
        Capture::new(
            id,
            vol.clone(),
            None,
            wanted,
            &dir.join(format!("{id}.side")),
        )
        .unwrap(),
    );
    let (delta, stats) = create::take(store, None, cap.clone(), &AtomicU64::new(0))
        .await
        .unwrap();
    cap.finish();
    let m = create::compose(base, &delta, header(id, None));
    store.put_manifest(&m).await.unwrap();
    (m, stats)
}

async fn contents(store: &Store, m: &Manifest) -> Vec<u8> {
    let mut out = vec![0u8; m.volume_size as usize];
    for (i, k) in &m.blocks {
        let b = store.get_block(k).await.unwrap();
        let at = (*i * BLOCK_SIZE) as usize;
        out[at..at + BLOCK_SIZE as usize].copy_from_slice(&b);
    }
    out
}

async fn full_then_incremental_snapshot_round_trips_and_stores_only_changes(
    dir: &Path,
    mk: &dyn Fn(&str) -> Store,
) {
    let store = mk("store");
    let path = dir.join("v.img");
    Volume::create(&path, BLOCKS * BLOCK_SIZE).unwrap();
    let vol = Arc::new(Volume::open(&path, engine()).unwrap());
    // Random data in blocks 0..8, a repeated block at 8 and 9, zeros after.
    let data = random(8 * BLOCK_SIZE as usize);
    vol.write(0, Bytes::from(data.clone()), false)
        .await
        .unwrap();
    let same = vec![0x5a; BLOCK_SIZE as usize];
    vol.write(8 * BLOCK_SIZE, Bytes::from(same.clone()), false)
        .await
        .unwrap();
    vol.write(9 * BLOCK_SIZE, Bytes::from(same), false)
        .await
        .unwrap();
    let ChangedSince::Exact(changed) = vol.changed_blocks().changed() else {
        panic!("tracking should be exact")
    };
    assert_eq!(changed, (0..10).collect::<Vec<_>>());
    vol.changed_blocks().reset();
    let (m1, s1) = snap(
        dir,
        &store,
        &vol,
        changed,
        &BTreeMap::new(),
        "snap-00000000000000001",
    )
    .await;
    assert_eq!(s1.blocks_read, 10);
    assert_eq!(s1.blocks_stored, 9, "two equal blocks are stored once");
    assert_eq!(m1.blocks.len(), 10);
    let full = vol.read(0, BLOCKS * BLOCK_SIZE).await.unwrap();
    assert_eq!(contents(&store, &m1).await, full);

    // Change one block and zero another: the incremental reads and stores just those.
    vol.write(3 * BLOCK_SIZE + 4096, Bytes::from(random(4096)), false)
        .await
        .unwrap();
    vol.write_zeroes(9 * BLOCK_SIZE, BLOCK_SIZE, Default::default())
        .await
        .unwrap();
    let ChangedSince::Exact(changed) = vol.changed_blocks().changed() else {
        panic!("tracking should be exact")
    };
    assert_eq!(changed, vec![3, 9]);
    let (m2, s2) = snap(
        dir,
        &store,
        &vol,
        changed,
        &m1.blocks,
        "snap-00000000000000002",
    )
    .await;
    assert_eq!(
        (s2.blocks_read, s2.blocks_stored, s2.zero_blocks),
        (2, 1, 1)
    );
    assert_eq!(m2.blocks.len(), 9);
    assert_eq!(
        contents(&store, &m2).await,
        vol.read(0, BLOCKS * BLOCK_SIZE).await.unwrap()
    );
    // The first snapshot is unaffected.
    assert_eq!(contents(&store, &m1).await, full);
}

async fn writes_after_the_point_in_time_never_reach_the_snapshot(
    dir: &Path,
    mk: &dyn Fn(&str) -> Store,
) {
    let store = mk("store");
    let path = dir.join("v.img");
    Volume::create(&path, BLOCKS * BLOCK_SIZE).unwrap();
    let vol = Arc::new(Volume::open(&path, engine()).unwrap());
    let before = random((BLOCKS * BLOCK_SIZE) as usize);
    vol.write(0, Bytes::from(before.clone()), false)
        .await
        .unwrap();
    let cap = Arc::new(
        Capture::new(
            "snap-00000000000000003",
            vol.clone(),
            None,
            (0..BLOCKS).collect(),
            &dir.join("side"),
        )
        .unwrap(),
    );
    // Writers overwrite every block (some twice) while the snapshot reads.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (vol, cap) = (vol.clone(), cap.clone());
            tokio::spawn(async move {
                for b in (0..BLOCKS).rev() {
                    let off = b * BLOCK_SIZE + w * 8192;
                    cap.before_write(off, 8192).await;
                    vol.write(off, Bytes::from(vec![0xee; 8192]), false)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let (delta, _) = create::take(&store, None, cap.clone(), &AtomicU64::new(0))
        .await
        .unwrap();
    let m = create::compose(
        &BTreeMap::new(),
        &delta,
        header("snap-00000000000000003", None),
    );
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        contents(&store, &m).await,
        before,
        "the snapshot holds the point-in-time data"
    );
    assert!(cap.saved_by_writers() > 0 || m.blocks.len() == BLOCKS as usize);
    cap.finish();
    assert!(!dir.join("side").exists());
}

async fn copy_sends_only_missing_blocks_and_gc_keeps_what_manifests_reference(
    dir: &Path,
    mk: &dyn Fn(&str) -> Store,
) {
    let east = mk("east");
    let west = mk("west");
    let path = dir.join("v.img");
    Volume::create(&path, BLOCKS * BLOCK_SIZE).unwrap();
    let vol = Arc::new(Volume::open(&path, engine()).unwrap());
    vol.write(0, Bytes::from(random(4 * BLOCK_SIZE as usize)), false)
        .await
        .unwrap();
    let (m1, _) = snap(
        dir,
        &east,
        &vol,
        (0..4).collect(),
        &BTreeMap::new(),
        "snap-00000000000000001",
    )
    .await;
    vol.write(BLOCK_SIZE, Bytes::from(random(BLOCK_SIZE as usize)), false)
        .await
        .unwrap();
    let (m2, _) = snap(
        dir,
        &east,
        &vol,
        vec![1],
        &m1.blocks,
        "snap-00000000000000002",
    )
    .await;

    let (c1, s1) = copy::copy(
        &east,
        &west,
        &m1,
        &copy::CopySeals::default(),
        "snap-0000000000000000a",
        "111122223333",
        5,
        &AtomicU64::new(0),
    )
    .await
    .unwrap();
    assert_eq!((s1.blocks, s1.blocks_copied), (4, 4));
    assert_eq!(c1.owner_id, "111122223333", "a copy belongs to the copier");
    west.put_manifest(&c1).await.unwrap();
    let (c2, s2) = copy::copy(
        &east,
        &west,
        &m2,
        &copy::CopySeals::default(),
        "snap-0000000000000000b",
        "111122223333",
        6,
        &AtomicU64::new(0),
    )
    .await
    .unwrap();
    assert_eq!(
        (s2.blocks, s2.blocks_copied),
        (4, 1),
        "the second copy is incremental"
    );
    west.put_manifest(&c2).await.unwrap();
    assert_eq!(contents(&west, &c2).await, contents(&east, &m2).await);

    // Delete the first (older) snapshot: only its unique block goes; the second still restores.
    east.delete_manifest(&m1.snapshot_id).await.unwrap();
    let GcOutcome::Done(st) = gc::collect(&east, "t", 10, GcConfig::default())
        .await
        .unwrap()
    else {
        panic!("nothing should defer this collection")
    };
    assert_eq!((st.live_blocks, st.deleted_blocks), (4, 1));
    assert_eq!(
        contents(&east, &m2).await,
        vol.read(0, BLOCKS * BLOCK_SIZE).await.unwrap()
    );

    // A pending writer defers collection; so does a held lease.
    east.delete_manifest(&m2.snapshot_id).await.unwrap();
    gc::begin_write(&east, "snap-00000000000000009")
        .await
        .unwrap();
    assert_eq!(
        gc::collect(&east, "t", 11, GcConfig::default())
            .await
            .unwrap(),
        GcOutcome::Deferred
    );
    assert_eq!(east.list_blocks().await.unwrap().len(), 4);
    gc::end_write(&east, "snap-00000000000000009")
        .await
        .unwrap();
    assert!(east.try_lease("other", 12, 1_000).await.unwrap());
    assert_eq!(
        gc::collect(&east, "t", 13, GcConfig::default())
            .await
            .unwrap(),
        GcOutcome::Deferred
    );
    // The other holder died: its lease expired at 1000.
    let GcOutcome::Done(st) = gc::collect(&east, "t", 2_000, GcConfig::default())
        .await
        .unwrap()
    else {
        panic!("an expired lease must be broken")
    };
    assert_eq!(st.deleted_blocks, 4);
    assert!(east.list_blocks().await.unwrap().is_empty());
}

async fn a_corrupt_or_missing_block_is_an_error_not_zeros(_dir: &Path, mk: &dyn Fn(&str) -> Store) {
    let store = mk("s");
    let data = random(BLOCK_SIZE as usize);
    let key = BlockKey::of(&data);
    let mut stored = block::encode(&data);
    let mid = stored.len() / 2;
    stored[mid] ^= 0x10;
    store.put_block(&key, stored).await.unwrap();
    let err = store.get_block(&key).await.unwrap_err().to_string();
    assert!(
        err.contains("corrupt") && err.contains(&key.to_hex()),
        "{err}"
    );
    store.delete_block(&key).await.unwrap();
    let err = store.get_block(&key).await.unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
}

/// Whether any 16-byte run of `plain` (sampled) occurs in `haystack`.
fn leaks(plain: &[u8], haystack: &[u8]) -> bool {
    plain
        .chunks(16)
        .step_by(plain.len() / 16 / 24)
        .any(|run| haystack.windows(16).any(|w| w == run))
}

/// An encrypted volume's snapshot: its side file and its stored blocks hold no plaintext, it
/// restores into a volume under another data key, and copies either keep its blocks (same KMS
/// key) or store every block again under new addresses and seal (another KMS key).
async fn an_encrypted_snapshot_stores_no_plaintext_and_restores_and_rekeys(
    dir: &Path,
    mk: &dyn Fn(&str) -> Store,
) {
    use crate::block::BlockSeal;
    use crate::hydrate::Hydration;
    use storage_engine::{InlinePolicy, SectorCipher};
    let store = mk("store");
    let k1 = Arc::new(BlockSeal::new("arn:k1", &[1; 32]));
    let k2 = Arc::new(BlockSeal::new("arn:k2", &[2; 32]));
    let open = |path: &Path, key: u8| {
        Arc::new(
            Volume::open_encrypted(
                path,
                engine(),
                InlinePolicy::DEFAULT,
                Some(SectorCipher::new(&[key; 64])),
            )
            .unwrap(),
        )
    };
    let path = dir.join("enc.img");
    Volume::create(&path, BLOCKS * BLOCK_SIZE).unwrap();
    let vol = open(&path, 0x11);
    let mut model = random(4 * BLOCK_SIZE as usize);
    model.extend(vec![0x5a; 2 * BLOCK_SIZE as usize]);
    model.resize((BLOCKS * BLOCK_SIZE) as usize, 0);
    vol.write(
        0,
        Bytes::from(model[..6 * BLOCK_SIZE as usize].to_vec()),
        false,
    )
    .await
    .unwrap();
    let id = "snap-0000000000000000e";
    let side = dir.join("enc.side");
    let cap = Arc::new(Capture::new(id, vol.clone(), None, (0..6).collect(), &side).unwrap());
    // A write after the point in time saves block 1 to the side file first: as ciphertext.
    cap.before_write(BLOCK_SIZE, 4096).await;
    vol.write(BLOCK_SIZE, Bytes::from(vec![0xee; 4096]), false)
        .await
        .unwrap();
    let side_bytes = std::fs::read(&side).unwrap();
    assert!(!leaks(
        &model[BLOCK_SIZE as usize..2 * BLOCK_SIZE as usize],
        &side_bytes
    ));
    let (delta, stats) = create::take(&store, Some(k1.clone()), cap.clone(), &AtomicU64::new(0))
        .await
        .unwrap();
    cap.finish();
    assert_eq!(
        stats.blocks_stored, 5,
        "equal blocks still deduplicate under one key"
    );
    let mut header = header(id, None);
    header.kms_key_id = Some("arn:k1".into());
    let m = create::compose(&BTreeMap::new(), &delta, header);
    store.put_manifest(&m).await.unwrap();
    assert_eq!(
        store
            .get_manifest(id)
            .await
            .unwrap()
            .unwrap()
            .kms_key_id
            .as_deref(),
        Some("arn:k1")
    );
    for b in store.list_blocks().await.unwrap() {
        let raw = store.get_block_raw(&b.key).await.unwrap();
        for i in 0..6 {
            let at = i * BLOCK_SIZE as usize;
            assert!(
                !leaks(&model[at..at + BLOCK_SIZE as usize], &raw),
                "block {i} leaked"
            );
        }
        assert!(
            store.get_block(&b.key).await.is_err(),
            "read without its key"
        );
    }
    // Restore under another data key.
    let rpath = dir.join("restored.img");
    Volume::create(&rpath, BLOCKS * BLOCK_SIZE).unwrap();
    let hpath = dir.join("restored.hydrate");
    Hydration::create(&hpath, BLOCKS * BLOCK_SIZE).unwrap();
    let restored = open(&rpath, 0x22);
    let h = Hydration::open(
        &hpath,
        store.clone(),
        Some(k1.clone()),
        Arc::new(m.clone()),
        restored.clone(),
    )
    .unwrap();
    h.ensure(0, BLOCKS * BLOCK_SIZE).await.unwrap();
    assert_eq!(restored.read(0, BLOCKS * BLOCK_SIZE).await.unwrap(), model);
    restored.flush().await.unwrap();
    assert!(!leaks(
        &model[..BLOCK_SIZE as usize],
        &std::fs::read(&rpath).unwrap()
    ));
    // Copies: the same key keeps the blocks; another key re-seals every one.
    let other = mk("other");
    let same = copy::CopySeals {
        src: Some(k1.clone()),
        dst: Some(k1.clone()),
    };
    let (c1, _) = copy::copy(
        &store,
        &other,
        &m,
        &same,
        "snap-0000000000000000f",
        "0",
        3,
        &AtomicU64::new(0),
    )
    .await
    .unwrap();
    assert_eq!(c1.blocks, m.blocks);
    let rekey = copy::CopySeals {
        src: Some(k1.clone()),
        dst: Some(k2.clone()),
    };
    let (c2, s2) = copy::copy(
        &store,
        &other,
        &m,
        &rekey,
        "snap-00000000000000010",
        "0",
        4,
        &AtomicU64::new(0),
    )
    .await
    .unwrap();
    assert_eq!(c2.kms_key_id.as_deref(), Some("arn:k2"));
    assert_eq!(s2.blocks_copied, 5);
    assert!(
        c2.blocks
            .values()
            .all(|k| !m.blocks.values().any(|o| o == k))
    );
    for (i, k) in &c2.blocks {
        let plain = other.get_block_sealed(Some(k2.clone()), k).await.unwrap();
        let at = (*i * BLOCK_SIZE) as usize;
        assert_eq!(plain, model[at..at + BLOCK_SIZE as usize]);
    }
}

/// Runs each scenario on a local store and on an S3-compatible one.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let root = dir.path().to_path_buf();
                    super::$name(dir.path(), &|n| Store::local(&root.join(n)).unwrap()).await;
                }
            )*
            use super::Store;
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(moto) = crate::testing::Moto::start() else {
                        return;
                    };
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(dir.path(), &|n| moto.store(n)).await;
                }
            )*
        }
    };
}

on_both_stores!(
    full_then_incremental_snapshot_round_trips_and_stores_only_changes,
    writes_after_the_point_in_time_never_reach_the_snapshot,
    copy_sends_only_missing_blocks_and_gc_keeps_what_manifests_reference,
    a_corrupt_or_missing_block_is_an_error_not_zeros,
    an_encrypted_snapshot_stores_no_plaintext_and_restores_and_rekeys,
);

/// A request dropped while it holds a block (its client went away) must not leave the block
/// claimed: later readers and writers of that block would wait forever.
#[tokio::test]
async fn a_claim_dropped_mid_way_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let path = dir.path().join("v.img");
    Volume::create(&path, BLOCKS * BLOCK_SIZE).unwrap();
    let vol = Arc::new(Volume::open(&path, engine()).unwrap());
    let data = random(BLOCK_SIZE as usize);
    vol.write(0, Bytes::from(data.clone()), false)
        .await
        .unwrap();
    let cap = Capture::new(
        "snap-00000000000000004",
        vol.clone(),
        None,
        vec![0],
        &dir.path().join("side"),
    )
    .unwrap();
    {
        let w = cap.before_write(0, 4096);
        tokio::pin!(w);
        let _ = futures::poll!(w.as_mut()); // claims block 0, waits on the engine; dropped
    }
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), cap.read_block(0))
        .await
        .expect("the block stayed claimed")
        .unwrap();
    assert_eq!(got, data);
    cap.finish();

    // The same for a cold block of a restoring volume.
    let m = Manifest {
        blocks: [(0, BlockKey::of(&data))].into_iter().collect(),
        ..header("snap-00000000000000005", None)
    };
    store
        .put_block(&BlockKey::of(&data), block::encode(&data))
        .await
        .unwrap();
    let rpath = dir.path().join("r.img");
    Volume::create(&rpath, BLOCKS * BLOCK_SIZE).unwrap();
    let side = dir.path().join("r.hydrate");
    crate::Hydration::create(&side, BLOCKS * BLOCK_SIZE).unwrap();
    let rvol = Arc::new(Volume::open(&rpath, engine()).unwrap());
    let h = crate::Hydration::open(&side, store, None, Arc::new(m), rvol.clone()).unwrap();
    {
        let e = h.ensure(0, 4096);
        tokio::pin!(e);
        let _ = futures::poll!(e.as_mut());
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        h.ensure_durable(0, 4096),
    )
    .await
    .expect("the block stayed claimed")
    .unwrap();
    assert_eq!(rvol.read(0, BLOCK_SIZE).await.unwrap(), data);
}
