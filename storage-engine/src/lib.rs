//! A volume's bytes on local disk.
//!
//! This crate knows nothing of gRPC or NBD: it turns "read/write/flush/trim/zero this range of
//! this volume" into I/O on one sparse file, and reports what it did.
//!
//! # Layout
//! * [`engine`]: the I/O engines — io_uring (primary) and a thread-pool sync fallback — behind one
//!   submit/complete interface, chosen at start.
//! * [`volume`]: one open volume: bounds and alignment checks, flush/FUA, trim, write-zeroes,
//!   allocation status, fail-stop after an I/O error.
//! * [`cbt`]: changed-block tracking at 512 KiB granularity, persisted so that it never
//!   under-reports after an unclean stop.
//! * [`crypt`]: AES-256-XTS of each sector for encrypted volumes: only ciphertext reaches the file.
//! * [`pagecache`]: large cached reads handed out as file ranges, sent to a socket from a mapping
//!   of the file or with `sendfile`, without reading them into a buffer first.
//! * [`gate`]: the fencing gate each attachment's I/O passes through; fencing waits for in-flight
//!   I/O to drain.
//!
//! # Data path of one write
//! caller → [`gate::Gate::enter`] → [`volume::Volume::write`] (checks, CBT mark) →
//! [`engine::Engine`] submission → io_uring (or a sync worker) → completion → caller.

pub mod cbt;
pub mod crypt;
pub mod engine;
pub mod gate;
pub mod pagecache;
pub mod throttle;
pub mod volume;

pub use cbt::{CBT_BLOCK_SIZE, ChangedBlocks, ChangedSince};
pub use crypt::SectorCipher;
pub use engine::{Engine, EngineError, EngineKind};
pub use gate::{Gate, GateGuard};
pub use pagecache::{FileRange, ReadData, SendMode};
pub use throttle::{Admission, BucketConfig, Limits, Throttle};
pub use volume::{
    Extent, InlinePolicy, MAX_IO_BYTES, SECTOR_SIZE, Volume, VolumeError, VolumeErrorKind,
    ZeroFlags,
};
