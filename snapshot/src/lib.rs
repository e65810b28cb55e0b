//! Point-in-time, incremental, zstd-compressed volume snapshots in an object store.
//!
//! This crate knows nothing of gRPC or NBD. It owns:
//! * [`block`]: a 512 KiB block's stored format and its SHA-256 content key;
//! * [`manifest`]: a snapshot's block map and its stored format;
//! * [`store`]: the object-store layout (blocks, manifests, pins, markers, lease);
//! * [`capture`]: capture-before-write, which holds a snapshot's point in time while the volume
//!   stays writable;
//! * [`create`]: reading captured blocks into the store and composing the manifest;
//! * [`copy`]: copying a snapshot between stores, sending only missing blocks;
//! * [`gc`]: mark-and-sweep of blocks no manifest references, under a lease;
//! * [`hydrate`]: lazy restore of a volume created from a snapshot.

pub mod block;
pub mod capture;
pub mod copy;
pub mod create;
pub mod gc;
pub mod hydrate;
pub mod manifest;
pub mod store;

pub use block::{BLOCK_SIZE, BlockKey};
pub use capture::Capture;
pub use hydrate::Hydration;
pub use manifest::Manifest;
pub use store::{Store, StoreError};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
