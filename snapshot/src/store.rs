//! A snapshot store: blocks, manifests and coordination objects in an `object_store`.
//!
//! # Layout
//! ```text
//! blocks/<first 2 hex of key>/<64 hex key>   stored blocks (see `block`)
//! manifests/<snap-id>                         one per completed snapshot (see `manifest`)
//! pending/<snap-id>                           a snapshot or copy is being written
//! pins/<vol-id>                               a copy of the manifest a volume still hydrates from
//! gc.lease                                    held while garbage collection sweeps
//! ```
//! Writers put every block before the manifest that references it, so a manifest never names a
//! block that was not stored. Garbage collection and writers exclude each other through
//! `pending/` and `gc.lease`: see [`crate::gc`].

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::block::{self, BlockError, BlockKey, BlockSeal};
use crate::manifest::{Manifest, ManifestError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no store this build can open.
    #[error("unsupported snapshot store URL '{0}' (use file:///ABSOLUTE/PATH or a directory path)")]
    UnsupportedUrl(String),
    /// The object store failed.
    #[error("snapshot store {store}: {source}")]
    Backend {
        /// The store's URL.
        store: String,
        /// The error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<object_store::Error>,
    },
    /// A block a manifest references is not in the store.
    #[error("block {key} is missing from the snapshot store")]
    MissingBlock {
        /// Its key.
        key: BlockKey,
    },
    /// A stored block failed its checks.
    #[error("block {key} is corrupt: {source}")]
    CorruptBlock {
        /// Its key.
        key: BlockKey,
        /// What was wrong.
        #[source]
        source: BlockError,
    },
    /// A stored manifest failed its checks.
    #[error("manifest of {id} is corrupt: {source}")]
    CorruptManifest {
        /// The snapshot.
        id: String,
        /// What was wrong.
        #[source]
        source: ManifestError,
    },
    /// Local file-system work around the store failed.
    #[error("snapshot store {store}: {source}")]
    Io {
        /// The store's URL.
        store: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A stored block as listed: key, size, last modification (ms since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct StoredBlock {
    /// Content key.
    pub key: BlockKey,
    /// Stored bytes.
    pub size: u64,
    /// Last modified, ms since the epoch.
    pub modified_ms: i64,
}

/// Counters of what went through a store handle (for tests and metrics).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Blocks put.
    pub blocks_put: AtomicU64,
    /// Stored bytes of blocks put.
    pub bytes_put: AtomicU64,
    /// Blocks fetched.
    pub blocks_got: AtomicU64,
}

/// A snapshot store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    os: Arc<dyn ObjectStore>,
    url: Arc<str>,
    /// For a local store, its directory (made durable with `syncfs` before a manifest is put).
    local_root: Option<PathBuf>,
    stats: Arc<StoreStats>,
}

/// The content of `gc.lease`: `<owner> <expiry ms>`. Unreadable content reads as expired.
struct Lease {
    owner: String,
    expires_ms: u64,
}

impl Lease {
    fn parse(bytes: &[u8]) -> Lease {
        let text = String::from_utf8_lossy(bytes);
        let mut words = text.split_whitespace();
        Lease {
            owner: words.next().unwrap_or_default().to_string(),
            expires_ms: words.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        }
    }
}

/// The retry keys of an S3 URL's query: this project's, not `object_store` config keys.
#[derive(Debug, Default, PartialEq)]
struct RetrySettings {
    max_retries: Option<usize>,
    retry_timeout: Option<Duration>,
}

impl RetrySettings {
    /// Takes `key=value` if the key is a retry key (`Ok(true)`); `Ok(false)` for any other key,
    /// `Err` for a retry key with a bad value.
    fn take(&mut self, key: &str, value: &str) -> Result<bool, ()> {
        match key {
            "max_retries" => self.max_retries = Some(value.parse().map_err(|_| ())?),
            "retry_timeout" => self.retry_timeout = Some(parse_duration(value).ok_or(())?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The retry configuration, if any key was given (the others keep their defaults).
    fn config(&self) -> Option<RetryConfig> {
        if *self == RetrySettings::default() {
            return None;
        }
        let mut config = RetryConfig::default();
        if let Some(n) = self.max_retries {
            config.max_retries = n;
        }
        if let Some(t) = self.retry_timeout {
            config.retry_timeout = t;
        }
        Some(config)
    }
}

/// `5`, `5s`, `1.5s`, `500ms`, `2m`: a non-negative number of seconds with an optional unit.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "m" | "min" | "mins" => 60.0,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(n * scale).ok()
}

fn block_path(key: &BlockKey) -> Path {
    let hex = key.to_hex();
    Path::from(format!("blocks/{}/{hex}", &hex[..2]))
}

fn manifest_path(id: &str) -> Path {
    Path::from(format!("manifests/{id}"))
}

impl Store {
    /// Opens the store at `url`:
    /// - `file:///abs/dir` or a plain directory path (created if missing);
    /// - `s3://BUCKET[/PREFIX][?KEY=VALUE&...]`: any S3-compatible store. Settings come from the
    ///   `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, …) and from the
    ///   query, whose keys are the same names without `aws_` (`endpoint`, `region`,
    ///   `allow_http`, `access_key_id`, `secret_access_key`, …).
    ///
    ///   How long an operation may take against a slow or unreachable store (a snapshot then
    ///   fails instead of waiting on; volume I/O never waits on the store):
    ///   - `timeout=DURATION`: one whole HTTP request (default 30 s);
    ///   - `connect_timeout=DURATION`: the connect phase of one request (default 5 s);
    ///   - `max_retries=N`: retries of a failed request, 0 for none (default 10);
    ///   - `retry_timeout=DURATION`: no retry starts later than this after the first attempt
    ///     (default 3 min).
    ///
    ///   DURATION is a number of seconds with an optional unit: `5`, `5s`, `1.5s`, `500ms`,
    ///   `2m` (`timeout` and `connect_timeout` also take `object_store`'s longer forms such as
    ///   `5 seconds`). With the defaults a store that never answers holds an operation for
    ///   minutes; e.g. `?timeout=10s&connect_timeout=2s&max_retries=3&retry_timeout=30s` bounds
    ///   it to well under a minute.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Store::s3(url, rest);
        }
        let dir = if let Some(rest) = url.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if url.contains("://") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        } else {
            PathBuf::from(url)
        };
        Store::local(&dir)
    }

    fn s3(url: &str, rest: &str) -> Result<Store, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let bad = || StoreError::UnsupportedUrl(url.to_string());
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad());
        }
        // reqwest is built without a default TLS provider: ring, installed once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut retry = RetrySettings::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(bad)?;
            if retry.take(k, v).map_err(|()| bad())? {
                continue;
            }
            let key: AmazonS3ConfigKey = k.parse().map_err(|_| bad())?;
            builder = builder.with_config(key, v);
        }
        if let Some(config) = retry.config() {
            builder = builder.with_retry(config);
        }
        let s3 = builder.build().map_err(|source| StoreError::Backend {
            store: url.to_string(),
            source: Box::new(source),
        })?;
        let os: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3,
                prefix.trim_matches('/'),
            ))
        };
        // The query may carry credentials: never print it.
        Ok(Store::from_object_store(
            os,
            url.split('?').next().unwrap_or(url),
        ))
    }

    /// A store in the local directory `dir` (created if missing).
    pub fn local(dir: &FsPath) -> Result<Store, StoreError> {
        let url: Arc<str> = format!("file://{}", dir.display()).into();
        let io = |source| StoreError::Io {
            store: url.to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let dir = dir.canonicalize().map_err(io)?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|source| StoreError::Backend {
                store: url.to_string(),
                source: Box::new(source),
            })?
            .with_automatic_cleanup(true);
        Ok(Store {
            os: Arc::new(fs),
            url,
            local_root: Some(dir),
            stats: Arc::default(),
        })
    }

    /// Wraps any object store (tests, S3-compatible stores).
    pub fn from_object_store(os: Arc<dyn ObjectStore>, url: &str) -> Store {
        Store {
            os,
            url: url.into(),
            local_root: None,
            stats: Arc::default(),
        }
    }

    /// The store's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What went through this handle.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn backend(&self) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
        move |source| StoreError::Backend {
            store: self.url.to_string(),
            source: Box::new(source),
        }
    }

    async fn get_opt(&self, path: &Path) -> Result<Option<bytes::Bytes>, StoreError> {
        match self.os.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(self.backend())?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.backend()(e)),
        }
    }

    async fn exists(&self, path: &Path) -> Result<bool, StoreError> {
        match self.os.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.backend()(e)),
        }
    }

    async fn delete_opt(&self, path: &Path) -> Result<(), StoreError> {
        match self.os.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend()(e)),
        }
    }

    async fn list_paths(&self, prefix: &str) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        self.os
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(self.backend())
    }

    // ---------------------------------------------------------------- blocks

    /// Whether the block `key` is stored.
    pub async fn has_block(&self, key: &BlockKey) -> Result<bool, StoreError> {
        self.exists(&block_path(key)).await
    }

    /// Stores an encoded block under `key`. Putting an existing key rewrites the same content.
    pub async fn put_block(&self, key: &BlockKey, stored: Vec<u8>) -> Result<(), StoreError> {
        let n = stored.len() as u64;
        self.os
            .put(&block_path(key), PutPayload::from(stored))
            .await
            .map_err(self.backend())?;
        self.stats.blocks_put.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_put.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The stored (encoded) bytes of block `key`.
    pub async fn get_block_raw(&self, key: &BlockKey) -> Result<Vec<u8>, StoreError> {
        let bytes = self
            .get_opt(&block_path(key))
            .await?
            .ok_or(StoreError::MissingBlock { key: *key })?;
        self.stats.blocks_got.fetch_add(1, Ordering::Relaxed);
        Ok(bytes.to_vec())
    }

    /// The plaintext of block `key`, with every checksum and the key verified.
    pub async fn get_block(&self, key: &BlockKey) -> Result<Vec<u8>, StoreError> {
        self.get_block_sealed(None, key).await
    }

    /// The plaintext of block `key` of a snapshot sealed under `seal` (`None`: not encrypted),
    /// with every checksum, the seal and the key verified.
    pub async fn get_block_sealed(
        &self,
        seal: Option<Arc<BlockSeal>>,
        key: &BlockKey,
    ) -> Result<Vec<u8>, StoreError> {
        let raw = self.get_block_raw(key).await?;
        let key = *key;
        tokio::task::spawn_blocking(move || block::decode_with(seal.as_deref(), &key, &raw))
            .await
            .map_err(|e| StoreError::Io {
                store: self.url.to_string(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| StoreError::CorruptBlock { key, source })
    }

    /// Every stored block.
    pub async fn list_blocks(&self) -> Result<Vec<StoredBlock>, StoreError> {
        Ok(self
            .list_paths("blocks")
            .await?
            .into_iter()
            .filter_map(|m| {
                Some(StoredBlock {
                    key: BlockKey::from_hex(m.location.filename()?)?,
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }

    /// Removes block `key` (garbage collection only).
    pub async fn delete_block(&self, key: &BlockKey) -> Result<(), StoreError> {
        self.delete_opt(&block_path(key)).await
    }

    // ------------------------------------------------------------- manifests

    /// Stores a manifest. Every block it names must already be stored; for a local store the
    /// blocks and the manifest are made durable (`syncfs`) before this returns.
    pub async fn put_manifest(&self, m: &Manifest) -> Result<(), StoreError> {
        self.sync().await?;
        self.os
            .put(&manifest_path(&m.snapshot_id), PutPayload::from(m.encode()))
            .await
            .map_err(self.backend())?;
        self.sync().await
    }

    /// The manifest of `id`, if stored.
    pub async fn get_manifest(&self, id: &str) -> Result<Option<Manifest>, StoreError> {
        match self.get_opt(&manifest_path(id)).await? {
            None => Ok(None),
            Some(b) => {
                Manifest::decode(&b)
                    .map(Some)
                    .map_err(|source| StoreError::CorruptManifest {
                        id: id.to_string(),
                        source,
                    })
            }
        }
    }

    /// Removes the manifest of `id`; its blocks are left to garbage collection.
    pub async fn delete_manifest(&self, id: &str) -> Result<(), StoreError> {
        self.delete_opt(&manifest_path(id)).await
    }

    /// Ids of every stored manifest.
    pub async fn list_manifest_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_paths("manifests")
            .await?
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect())
    }

    // ---------------------------------------------------- pins and markers

    /// Keeps the blocks of `m` alive for volume `volume_id` while it hydrates, even if the
    /// snapshot is deleted meanwhile.
    pub async fn pin(&self, volume_id: &str, m: &Manifest) -> Result<(), StoreError> {
        self.sync().await?;
        self.os
            .put(
                &Path::from(format!("pins/{volume_id}")),
                PutPayload::from(m.encode()),
            )
            .await
            .map_err(self.backend())?;
        Ok(())
    }

    /// The manifest pinned for `volume_id`, if any.
    pub async fn get_pin(&self, volume_id: &str) -> Result<Option<Manifest>, StoreError> {
        match self
            .get_opt(&Path::from(format!("pins/{volume_id}")))
            .await?
        {
            None => Ok(None),
            Some(b) => {
                Manifest::decode(&b)
                    .map(Some)
                    .map_err(|source| StoreError::CorruptManifest {
                        id: format!("pin of {volume_id}"),
                        source,
                    })
            }
        }
    }

    /// Drops the pin of `volume_id` (hydrated, or deleted).
    pub async fn unpin(&self, volume_id: &str) -> Result<(), StoreError> {
        self.delete_opt(&Path::from(format!("pins/{volume_id}")))
            .await
    }

    /// The volume ids holding pins.
    pub async fn pinned_volumes(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_paths("pins")
            .await?
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect())
    }

    /// Every pinned manifest.
    pub async fn pinned_manifests(&self) -> Result<Vec<Manifest>, StoreError> {
        let mut out = Vec::new();
        for meta in self.list_paths("pins").await? {
            if let Some(b) = self.get_opt(&meta.location).await? {
                out.push(
                    Manifest::decode(&b).map_err(|source| StoreError::CorruptManifest {
                        id: meta.location.to_string(),
                        source,
                    })?,
                );
            }
        }
        Ok(out)
    }

    /// Records that snapshot `id` is being written (see [`crate::gc`]).
    pub async fn mark_pending(&self, id: &str) -> Result<(), StoreError> {
        self.os
            .put(
                &Path::from(format!("pending/{id}")),
                PutPayload::from_static(b"pending"),
            )
            .await
            .map_err(self.backend())?;
        Ok(())
    }

    /// Clears the marker of `id`.
    pub async fn clear_pending(&self, id: &str) -> Result<(), StoreError> {
        self.delete_opt(&Path::from(format!("pending/{id}"))).await
    }

    /// Pending markers: (snapshot id, last modified ms).
    pub async fn pending(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self
            .list_paths("pending")
            .await?
            .into_iter()
            .filter_map(|m| {
                Some((
                    m.location.filename()?.to_string(),
                    m.last_modified.timestamp_millis(),
                ))
            })
            .collect())
    }

    // ----------------------------------------------------------------- lease

    /// Takes the garbage-collection lease for `owner` until `expires_ms`; `false` if someone
    /// else holds an unexpired one. An expired lease (its holder died) is broken.
    pub async fn try_lease(
        &self,
        owner: &str,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<bool, StoreError> {
        let path = Path::from("gc.lease");
        for _ in 0..2 {
            let body = format!("{owner} {expires_ms}");
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self.os.put_opts(&path, PutPayload::from(body), opts).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.backend()(e)),
            }
            let Some(held) = self.get_opt(&path).await? else {
                continue;
            };
            if Lease::parse(&held).expires_ms > now_ms {
                return Ok(false);
            }
            tracing::warn!(store = %self.url, "breaking an expired garbage-collection lease");
            self.delete_opt(&path).await?;
        }
        Ok(false)
    }

    /// Whether an unexpired garbage-collection lease is held at `now_ms`.
    pub async fn lease_active(&self, now_ms: u64) -> Result<bool, StoreError> {
        let Some(held) = self.get_opt(&Path::from("gc.lease")).await? else {
            return Ok(false);
        };
        Ok(Lease::parse(&held).expires_ms > now_ms)
    }

    /// Extends the lease to `expires_ms` if `owner` still holds it; `false` if it does not (it
    /// expired and was taken over), and the holder must stop.
    pub async fn renew_lease(&self, owner: &str, expires_ms: u64) -> Result<bool, StoreError> {
        let path = Path::from("gc.lease");
        let Some(held) = self.get_opt(&path).await? else {
            return Ok(false);
        };
        if Lease::parse(&held).owner != owner {
            return Ok(false);
        }
        self.os
            .put(&path, PutPayload::from(format!("{owner} {expires_ms}")))
            .await
            .map_err(self.backend())?;
        Ok(true)
    }

    /// Releases the garbage-collection lease.
    pub async fn release_lease(&self) -> Result<(), StoreError> {
        self.delete_opt(&Path::from("gc.lease")).await
    }

    /// Makes everything put so far durable (local stores: `syncfs`; remote stores are durable
    /// when a put returns).
    pub async fn sync(&self) -> Result<(), StoreError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let io = |source| StoreError::Io {
            store: self.url.to_string(),
            source,
        };
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::fd::AsRawFd as _;
            let dir = std::fs::File::open(&root)?;
            // SAFETY: syncfs on a descriptor kept open for the call; the result is checked.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str, ms: u64| {
            assert_eq!(parse_duration(s), Some(Duration::from_millis(ms)), "{s}")
        };
        ok("5", 5000);
        ok("5s", 5000);
        ok("1.5s", 1500);
        ok("500ms", 500);
        ok("2m", 120_000);
        ok("0", 0);
        for bad in ["", "s", "-1s", "5h", "5 s s", "1.2.3s", "ms5"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_keys_are_taken_and_checked() {
        let mut r = RetrySettings::default();
        assert_eq!(r.config().map(|c| c.max_retries), None);
        assert_eq!(r.take("endpoint", "http://x"), Ok(false));
        assert_eq!(r.take("timeout", "2s"), Ok(false));
        assert_eq!(r.take("max_retries", "2"), Ok(true));
        let c = r.config().expect("a retry config");
        assert_eq!(c.max_retries, 2);
        assert_eq!(c.retry_timeout, RetryConfig::default().retry_timeout);
        assert_eq!(r.take("retry_timeout", "3s"), Ok(true));
        let c = r.config().expect("a retry config");
        assert_eq!(
            (c.max_retries, c.retry_timeout),
            (2, Duration::from_secs(3))
        );
        assert_eq!(r.take("max_retries", "-1"), Err(()));
        assert_eq!(r.take("max_retries", "many"), Err(()));
        assert_eq!(r.take("retry_timeout", "soon"), Err(()));
    }

    const S3: &str = "s3://bucket/prefix?endpoint=http://127.0.0.1:9&allow_http=true&access_key_id=a&secret_access_key=b&region=us-east-1";

    #[test]
    fn s3_urls_take_the_retry_and_timeout_keys() {
        for extra in [
            "",
            "&max_retries=2&retry_timeout=3s",
            "&max_retries=0&retry_timeout=500ms",
            "&timeout=2s&connect_timeout=1s",
            "&timeout=2 seconds",
            "&timeout=2s&connect_timeout=1s&max_retries=1&retry_timeout=4",
        ] {
            let url = format!("{S3}{extra}");
            let store = Store::open(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(store.url(), "s3://bucket/prefix");
        }
        for extra in [
            "&max_retries=x",
            "&retry_timeout=forever",
            "&retry_timeout=",
            "&timeout=bogus",
            "&connect_timeout=1parsec",
            "&no_such_key=1",
        ] {
            let url = format!("{S3}{extra}");
            assert!(Store::open(&url).is_err(), "{url} was accepted");
        }
    }

    /// With nothing listening, an operation fails within the configured retries instead of
    /// retrying for minutes.
    #[tokio::test]
    async fn an_unreachable_store_fails_within_the_retry_settings() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!(
            "s3://bucket?endpoint=http://127.0.0.1:{port}&allow_http=true&access_key_id=a&secret_access_key=b&region=us-east-1&max_retries=2&retry_timeout=2s&connect_timeout=1s"
        );
        let store = Store::open(&url).expect("open");
        let t = std::time::Instant::now();
        let e = store.pending().await.expect_err("nothing listens");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "took {:?}",
            t.elapsed()
        );
        assert!(e.to_string().contains("snapshot store s3://bucket"), "{e}");
    }
}
