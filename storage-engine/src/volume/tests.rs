//! Volume tests. Each body takes a [`Setup`] and runs once per engine kind with every request
//! going through the engine, and once with the default inline fast paths, so io_uring, the sync
//! fallback and the inline paths are held to the same contract.

use super::*;
use crate::cbt::{CBT_BLOCK_SIZE, ChangedSince};
use crate::engine::EngineKind;

const MIB: u64 = 1 << 20;

fn engine(kind: EngineKind) -> Engine {
    Engine::start(kind, 2).expect("engine starts")
}

/// An engine and the inline policy to open volumes with.
#[derive(Clone)]
struct Setup {
    engine: Engine,
    inline: InlinePolicy,
    cipher: Option<SectorCipher>,
}

impl Setup {
    fn open(&self, path: &Path) -> Volume {
        Volume::open_encrypted(path, self.engine.clone(), self.inline, self.cipher.clone()).unwrap()
    }
}

fn test_cipher() -> SectorCipher {
    SectorCipher::new(&std::array::from_fn(|i| (i as u8) ^ 0x5a))
}

fn new_volume(dir: &Path, size: u64, setup: Setup) -> Volume {
    let path = dir.join("vol.img");
    Volume::create(&path, size).unwrap();
    setup.open(&path)
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<_>>(),
    )
}

async fn read_write_roundtrip(setup: Setup) {
    let dir = tempfile::tempdir().unwrap();
    let vol = new_volume(dir.path(), 64 * MIB, setup);
    assert_eq!(
        vol.read(0, 4096).await.unwrap(),
        vec![0u8; 4096],
        "new volume reads zeroes"
    );
    let data = pattern(128 * 1024, 7);
    vol.write(MIB + 512, data.clone(), false).await.unwrap();
    assert_eq!(
        vol.read(MIB + 512, data.len() as u64).await.unwrap(),
        data.to_vec()
    );
    let big = pattern(MAX_IO_BYTES as usize, 3);
    vol.write(16 * MIB, big.clone(), true).await.unwrap();
    assert_eq!(
        vol.read(16 * MIB, MAX_IO_BYTES).await.unwrap(),
        big.to_vec()
    );
    vol.flush().await.unwrap();
}

async fn many_concurrent_ios(setup: Setup) {
    let dir = tempfile::tempdir().unwrap();
    let vol = Arc::new(new_volume(dir.path(), 64 * MIB, setup));
    let mut tasks = Vec::new();
    for i in 0..1024u64 {
        let vol = Arc::clone(&vol);
        tasks.push(tokio::spawn(async move {
            let data = pattern(4096, i as u8);
            vol.write(i * 4096, data.clone(), false).await.unwrap();
            assert_eq!(vol.read(i * 4096, 4096).await.unwrap(), data.to_vec());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn rejects_bad_requests(setup: Setup) {
    let dir = tempfile::tempdir().unwrap();
    let vol = new_volume(dir.path(), 8 * MIB, setup);
    let k = |r: Result<Vec<u8>, VolumeError>| r.unwrap_err().kind();
    assert_eq!(k(vol.read(0, 0).await), VolumeErrorKind::Invalid);
    assert_eq!(k(vol.read(1, 512).await), VolumeErrorKind::Invalid);
    assert_eq!(k(vol.read(0, 100).await), VolumeErrorKind::Invalid);
    assert_eq!(
        k(vol.read(0, MAX_IO_BYTES + 512).await),
        VolumeErrorKind::Invalid
    );
    assert_eq!(
        k(vol.read(8 * MIB - 512, 1024).await),
        VolumeErrorKind::OutOfBounds
    );
    assert_eq!(
        k(vol.read(u64::MAX - 511, 512).await),
        VolumeErrorKind::OutOfBounds
    );
    let err = vol
        .write(8 * MIB, pattern(512, 0), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), VolumeErrorKind::OutOfBounds);
    let err = vol.trim(0, 8 * MIB + 512, false).await.unwrap_err();
    assert_eq!(err.kind(), VolumeErrorKind::OutOfBounds);
    assert!(
        !vol.is_failed(),
        "refused requests must not fail the volume"
    );
}

async fn trim_and_zeroes_make_holes(setup: Setup) {
    let dir = tempfile::tempdir().unwrap();
    let vol = new_volume(dir.path(), 16 * MIB, setup);
    assert_eq!(
        vol.block_status(0, 16 * MIB, 64).unwrap(),
        vec![Extent {
            length: 16 * MIB,
            hole: true
        }]
    );
    vol.write(0, pattern(4 * MIB as usize, 1), false)
        .await
        .unwrap();
    vol.flush().await.unwrap();
    let st = vol.block_status(0, 16 * MIB, 64).unwrap();
    assert_eq!(
        st[0],
        Extent {
            length: 4 * MIB,
            hole: false
        }
    );
    assert_eq!(
        st[1],
        Extent {
            length: 12 * MIB,
            hole: true
        }
    );

    vol.trim(MIB, MIB, false).await.unwrap();
    assert_eq!(vol.read(MIB, MIB).await.unwrap(), vec![0u8; MIB as usize]);
    let st = vol.block_status(0, 4 * MIB, 64).unwrap();
    assert_eq!(
        st,
        vec![
            Extent {
                length: MIB,
                hole: false
            },
            Extent {
                length: MIB,
                hole: true
            },
            Extent {
                length: 2 * MIB,
                hole: false
            },
        ]
    );

    // NO_HOLE zeroing keeps the range allocated; plain zeroing may punch it.
    vol.write_zeroes(
        2 * MIB,
        MIB,
        ZeroFlags {
            may_trim: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        vol.read(2 * MIB, MIB).await.unwrap(),
        vec![0u8; MIB as usize]
    );
    assert!(!vol.block_status(2 * MIB, MIB, 4).unwrap()[0].hole);
    vol.write_zeroes(
        3 * MIB,
        MIB,
        ZeroFlags {
            may_trim: true,
            fast_only: true,
            fua: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        vol.read(3 * MIB, MIB).await.unwrap(),
        vec![0u8; MIB as usize]
    );
    assert!(vol.block_status(3 * MIB, MIB, 4).unwrap()[0].hole);

    // max_extents caps the answer but always returns at least one extent.
    assert_eq!(vol.block_status(0, 16 * MIB, 1).unwrap().len(), 1);
}

async fn fails_stop_after_write_error(kind: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    Volume::create(&path, 8 * MIB).unwrap();
    // Two good ops, then the "disk" fails writes.
    let vol =
        Volume::open_with(&path, Engine::faulty(engine(kind), 2), InlinePolicy::NONE).unwrap();
    vol.write(0, pattern(4096, 1), false).await.unwrap();
    vol.flush().await.unwrap();
    let err = vol.write(4096, pattern(4096, 2), false).await.unwrap_err();
    assert_eq!(err.kind(), VolumeErrorKind::Io);
    assert!(vol.is_failed());
    // Every later request fails, reads included, until reopened.
    assert!(matches!(vol.read(0, 4096).await, Err(VolumeError::Failed)));
    assert!(matches!(vol.flush().await, Err(VolumeError::Failed)));
    assert!(matches!(
        vol.write(0, pattern(512, 0), false).await,
        Err(VolumeError::Failed)
    ));
    // EnableVolumeIO: requests reach the disk again (which still fails writes here).
    assert!(vol.enable_io());
    assert!(!vol.is_failed());
    assert_eq!(vol.read(0, 4096).await.unwrap(), pattern(4096, 1));
    assert!(!vol.enable_io(), "not failed any more");
    // autoEnableIO: a failure fails its own request only.
    vol.set_auto_enable_io(true);
    assert_eq!(vol.auto_enabled_at(), None);
    let err = vol.write(4096, pattern(4096, 3), false).await.unwrap_err();
    assert_eq!(err.kind(), VolumeErrorKind::Io);
    assert!(!vol.is_failed());
    assert!(vol.auto_enabled_at().is_some());
    assert_eq!(vol.read(0, 4096).await.unwrap(), pattern(4096, 1));
    vol.set_auto_enable_io(false);
    vol.write(4096, pattern(4096, 3), false).await.unwrap_err();
    assert!(vol.is_failed());
    drop(vol);
    let reopened = Volume::open(&path, engine(kind)).unwrap();
    assert_eq!(
        reopened.read(0, 4096).await.unwrap(),
        pattern(4096, 1).to_vec()
    );
}

async fn tracks_changed_blocks(setup: Setup) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    Volume::create(&path, 64 * MIB).unwrap();
    let vol = setup.open(&path);
    vol.write(0, pattern(4096, 1), false).await.unwrap();
    vol.trim(10 * CBT_BLOCK_SIZE, CBT_BLOCK_SIZE, false)
        .await
        .unwrap();
    vol.write_zeroes(20 * CBT_BLOCK_SIZE + 512, 512, ZeroFlags::default())
        .await
        .unwrap();
    assert_eq!(
        vol.changed_blocks().changed(),
        ChangedSince::Exact(vec![0, 10, 20])
    );
    vol.close().await.unwrap();
    drop(vol);
    let vol = setup.open(&path);
    assert_eq!(
        vol.changed_blocks().changed(),
        ChangedSince::Exact(vec![0, 10, 20])
    );
    drop(vol); // unclean
    let vol = setup.open(&path);
    assert_eq!(vol.changed_blocks().changed(), ChangedSince::Unknown);
}

/// Instantiates each test body for both engines.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod uring {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(Setup { engine: engine(EngineKind::IoUring), inline: InlinePolicy::NONE, cipher: None }).await
            })*
        }
        mod sync {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(Setup { engine: engine(EngineKind::Sync), inline: InlinePolicy::NONE, cipher: None }).await
            })*
        }
        mod inline {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(Setup { engine: engine(EngineKind::IoUring), inline: InlinePolicy::DEFAULT, cipher: None }).await
            })*
        }
        mod encrypted {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(Setup { engine: engine(EngineKind::IoUring), inline: InlinePolicy::DEFAULT, cipher: Some(test_cipher()) }).await
            })*
        }
        mod encrypted_engine_only {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(Setup { engine: engine(EngineKind::Sync), inline: InlinePolicy::NONE, cipher: Some(test_cipher()) }).await
            })*
        }
    };
}

both_engines!(
    read_write_roundtrip,
    many_concurrent_ios,
    rejects_bad_requests,
    trim_and_zeroes_make_holes,
    tracks_changed_blocks,
);

#[tokio::test]
async fn fail_stop_uring() {
    fails_stop_after_write_error(EngineKind::IoUring).await;
}

#[tokio::test]
async fn fail_stop_sync() {
    fails_stop_after_write_error(EngineKind::Sync).await;
}

/// Out of space is not a failure of the volume: the write is refused, reads go on.
#[tokio::test]
async fn no_space_refuses_the_write_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    Volume::create(&path, 8 * MIB).unwrap();
    let faulty = Engine::faulty_with(engine(EngineKind::Sync), 1, libc::ENOSPC);
    let vol = Volume::open_with(&path, faulty, InlinePolicy::NONE).unwrap();
    vol.write(0, pattern(4096, 1), false).await.unwrap();
    let err = vol.write(4096, pattern(4096, 2), false).await.unwrap_err();
    assert_eq!(err.kind(), VolumeErrorKind::NoSpace);
    assert!(!vol.is_failed());
    assert_eq!(vol.read(0, 4096).await.unwrap(), pattern(4096, 1).to_vec());
}

/// Cached ranges come back as file ranges that send the right bytes, in both send modes, also
/// past the end the volume had when it was first mapped (after a grow); uncached ones (holes)
/// are read into memory.
#[tokio::test]
async fn cached_reads_for_sending_follow_growth() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        engine: engine(EngineKind::IoUring),
        inline: InlinePolicy::DEFAULT,
        cipher: None,
    };
    let vol = new_volume(dir.path(), 4 * MIB, setup);
    let send = |data: ReadData| -> Vec<u8> {
        let ReadData::File(mut range) = data else {
            panic!("a cached range comes back as a file range");
        };
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        while !range.is_empty() {
            match range.send_to(a.as_raw_fd()) {
                Ok(n) => range.advance(n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        drop(a);
        reader.join().unwrap()
    };
    let first = pattern(MIB as usize, 4);
    vol.write(MIB, first.clone(), false).await.unwrap();
    for mode in [SendMode::Copy, SendMode::PageRefs] {
        let got = send(vol.read_for_send(MIB, MIB, mode).await.unwrap());
        assert!(got == first.to_vec(), "{mode:?}");
    }
    vol.grow(8 * MIB).unwrap();
    let second = pattern(MIB as usize, 5);
    vol.write(6 * MIB, second.clone(), false).await.unwrap();
    let got = send(
        vol.read_for_send(6 * MIB, MIB, SendMode::Copy)
            .await
            .unwrap(),
    );
    assert!(got == second.to_vec(), "a range past the first mapping");
    match vol
        .read_for_send(3 * MIB, MIB, SendMode::Copy)
        .await
        .unwrap()
    {
        ReadData::Bytes(v) => assert_eq!(v, vec![0u8; MIB as usize]),
        ReadData::File(_) => panic!("a hole is not in the page cache"),
    }
}

/// An encrypted volume's file holds no 16-byte run of what was written, through every write
/// path, and every read path (engine, inline, into a reply buffer, for sending) gives plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_volume_file_holds_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        engine: engine(EngineKind::IoUring),
        inline: InlinePolicy::DEFAULT,
        cipher: Some(test_cipher()),
    };
    let vol = new_volume(dir.path(), 8 * MIB, setup.clone());
    // Inline (small), through the engine (FUA, large) and an untracked (hydration) write.
    let small = pattern(4096, 1);
    let large = pattern(2 * MIB as usize, 2);
    vol.write(0, small.clone(), false).await.unwrap();
    vol.write(MIB, large.clone(), true).await.unwrap();
    vol.write_untracked(4 * MIB, small.clone(), false)
        .await
        .unwrap();
    vol.flush().await.unwrap();
    let file = std::fs::read(vol.path()).unwrap();
    for (what, data) in [("small", &small), ("large", &large)] {
        for run in data.chunks(16).step_by(data.len() / 16 / 32) {
            assert!(
                !file.windows(16).any(|w| w == run),
                "plaintext of the {what} write found in the volume file"
            );
        }
    }
    // A buffer the write owns alone is encrypted where it lies (the others above were shared).
    vol.write(6 * MIB, pattern(256 * 1024, 9), true)
        .await
        .unwrap();
    assert_eq!(
        vol.read(6 * MIB, 256 * 1024).await.unwrap(),
        pattern(256 * 1024, 9).to_vec()
    );
    // Every read path decrypts.
    assert_eq!(vol.read(0, 4096).await.unwrap(), small.to_vec());
    assert_eq!(vol.read(MIB, 2 * MIB).await.unwrap(), large.to_vec());
    let mut out = BytesMut::new();
    assert!(vol.try_read_cached_into(4 * MIB, 4096, &mut out));
    assert_eq!(&out[..], &small[..]);
    match vol
        .read_for_send(MIB, MIB, SendMode::PageRefs)
        .await
        .unwrap()
    {
        ReadData::Bytes(b) => assert_eq!(b, large[..MIB as usize].to_vec()),
        ReadData::File(_) => panic!("an encrypted volume handed out a file range"),
    }
    // Reopened with the same key: the same plaintext; another key reads something else.
    drop(vol);
    let again = setup.open(&dir.path().join("vol.img"));
    assert_eq!(again.read(0, 4096).await.unwrap(), small.to_vec());
    let other = Volume::open_encrypted(
        &dir.path().join("vol.img"),
        engine(EngineKind::Sync),
        InlinePolicy::NONE,
        Some(SectorCipher::new(&[7; 64])),
    )
    .unwrap();
    assert_ne!(other.read(0, 4096).await.unwrap(), small.to_vec());
}
