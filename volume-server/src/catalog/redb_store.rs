//! The embedded catalog: one redb file, one table per record kind, JSON values.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Catalog, CatalogContents, CatalogError, Change};

const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");
const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const FSR: TableDefinition<&str, &[u8]> = TableDefinition::new("fast_snapshot_restores");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const VPCS: TableDefinition<&str, &[u8]> = TableDefinition::new("vpcs");
const SUBNETS: TableDefinition<&str, &[u8]> = TableDefinition::new("subnets");
const KEY_PAIRS: TableDefinition<&str, &[u8]> = TableDefinition::new("key_pairs");
const ADDRESSES: TableDefinition<&str, &[u8]> = TableDefinition::new("addresses");
const KMS_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("kms_keys");
const KMS_ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("kms_aliases");
const EBS_DEFAULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ebs_defaults");
const USAGE: TableDefinition<&str, &[u8]> = TableDefinition::new("usage");
/// Single rows of settings kept with the records (the billing clock's anchor).
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const BILLING_CLOCK: &str = "billing-clock";
const RESERVATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("reserved_instances");
const SAVINGS_PLANS: TableDefinition<&str, &[u8]> = TableDefinition::new("savings_plans");

/// A catalog in a redb file. Commits are fsynced (redb's default immediate durability).
///
/// After a failed commit (a full disk, an I/O error) redb refuses every later transaction until
/// the database is reopened, so the handle is dropped on any error and the next call reopens
/// the file (redb repairs it on open). One failed commit fails that call only; the catalog goes
/// on once the disk has room again.
#[derive(Debug)]
pub struct RedbCatalog {
    path: PathBuf,
    /// `None` after a failure, until the next call reopens it.
    db: Mutex<Option<Database>>,
}

fn storage<E: std::fmt::Display>(e: E) -> CatalogError {
    CatalogError::Storage(e.to_string())
}

/// Opens or creates the database and its tables (so reads never see "table does not exist").
fn open_db(path: &Path) -> Result<Database, CatalogError> {
    let db = Database::create(path).map_err(storage)?;
    let tx = db.begin_write().map_err(storage)?;
    for table in [
        VOLUMES,
        HOSTS,
        SNAPSHOTS,
        FSR,
        IMAGES,
        VPCS,
        SUBNETS,
        KEY_PAIRS,
        ADDRESSES,
        KMS_KEYS,
        KMS_ALIASES,
        EBS_DEFAULTS,
        USAGE,
        SETTINGS,
        RESERVATIONS,
        SAVINGS_PLANS,
    ] {
        tx.open_table(table).map_err(storage)?;
    }
    tx.commit().map_err(storage)?;
    Ok(db)
}

impl RedbCatalog {
    /// Opens or creates the catalog at `path`.
    pub fn open(path: &Path) -> Result<RedbCatalog, CatalogError> {
        let db = open_db(path)?;
        Ok(RedbCatalog {
            path: path.to_path_buf(),
            db: Mutex::new(Some(db)),
        })
    }

    /// Runs `f` on the database, reopening it first if an earlier call failed, and letting it
    /// go if this one fails.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(open_db(&self.path)?);
            tracing::warn!(path = %self.path.display(), "catalog reopened after a failed commit");
        }
        let Some(db) = slot.as_ref() else {
            return Err(CatalogError::Storage("catalog is not open".into()));
        };
        let r = f(db);
        if let Err(e) = &r
            && !matches!(e, CatalogError::Corrupt { .. })
        {
            tracing::error!(path = %self.path.display(), error = %e, "catalog transaction failed; the catalog is reopened before the next one");
            *slot = None;
        }
        r
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, CatalogError> {
    serde_json::from_slice(bytes).map_err(|source| CatalogError::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Catalog for RedbCatalog {
    fn load(&self) -> Result<CatalogContents, CatalogError> {
        self.with_db(load)
    }

    fn commit(&self, changes: &[Change]) -> Result<(), CatalogError> {
        self.with_db(|db| commit(db, changes))
    }
}

fn load(db: &Database) -> Result<CatalogContents, CatalogError> {
    let tx = db.begin_read().map_err(storage)?;
    Ok(CatalogContents {
        volumes: rows(&tx, VOLUMES)?,
        hosts: rows(&tx, HOSTS)?,
        snapshots: rows(&tx, SNAPSHOTS)?,
        fsr: rows(&tx, FSR)?,
        images: rows(&tx, IMAGES)?,
        vpcs: rows(&tx, VPCS)?,
        subnets: rows(&tx, SUBNETS)?,
        key_pairs: rows(&tx, KEY_PAIRS)?,
        addresses: rows(&tx, ADDRESSES)?,
        kms_keys: rows(&tx, KMS_KEYS)?,
        kms_aliases: rows(&tx, KMS_ALIASES)?,
        ebs_defaults: rows(&tx, EBS_DEFAULTS)?,
        usage: rows(&tx, USAGE)?,
        billing_clock: {
            let t = tx.open_table(SETTINGS).map_err(storage)?;
            let row = t.get(BILLING_CLOCK).map_err(storage)?;
            row.map(|v| decode(BILLING_CLOCK, v.value())).transpose()?
        },
        reservations: rows(&tx, RESERVATIONS)?,
        savings_plans: rows(&tx, SAVINGS_PLANS)?,
    })
}

/// Every record of one table, decoded.
fn rows<T: serde::de::DeserializeOwned>(
    tx: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, CatalogError> {
    let table = tx.open_table(table).map_err(storage)?;
    table
        .iter()
        .map_err(storage)?
        .map(|row| {
            let (k, v) = row.map_err(storage)?;
            decode(k.value(), v.value())
        })
        .collect()
}

fn commit(db: &Database, changes: &[Change]) -> Result<(), CatalogError> {
    let tx = db.begin_write().map_err(storage)?;
    {
        let mut volumes = tx.open_table(VOLUMES).map_err(storage)?;
        let mut hosts = tx.open_table(HOSTS).map_err(storage)?;
        let mut snapshots = tx.open_table(SNAPSHOTS).map_err(storage)?;
        let mut fsr = tx.open_table(FSR).map_err(storage)?;
        let mut images = tx.open_table(IMAGES).map_err(storage)?;
        let mut vpcs = tx.open_table(VPCS).map_err(storage)?;
        let mut subnets = tx.open_table(SUBNETS).map_err(storage)?;
        let mut key_pairs = tx.open_table(KEY_PAIRS).map_err(storage)?;
        let mut addresses = tx.open_table(ADDRESSES).map_err(storage)?;
        let mut kms_keys = tx.open_table(KMS_KEYS).map_err(storage)?;
        let mut kms_aliases = tx.open_table(KMS_ALIASES).map_err(storage)?;
        let mut ebs_defaults = tx.open_table(EBS_DEFAULTS).map_err(storage)?;
        let mut usage = tx.open_table(USAGE).map_err(storage)?;
        let mut settings = tx.open_table(SETTINGS).map_err(storage)?;
        let mut reservations = tx.open_table(RESERVATIONS).map_err(storage)?;
        let mut savings_plans = tx.open_table(SAVINGS_PLANS).map_err(storage)?;
        for change in changes {
            match change {
                Change::PutVolume(v) => {
                    volumes
                        .insert(v.volume_id.as_str(), encode(v).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteVolume(id) => {
                    volumes.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutHost(h) => {
                    hosts
                        .insert(h.instance_id.as_str(), encode(h).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteHost(id) => {
                    hosts.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutSnapshot(s) => {
                    snapshots
                        .insert(s.snapshot_id.as_str(), encode(s).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteSnapshot(id) => {
                    snapshots.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutFsr(f) => {
                    fsr.insert(f.key().as_str(), encode(f).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteFsr(key) => {
                    fsr.remove(key.as_str()).map_err(storage)?;
                }
                Change::PutImage(i) => {
                    images
                        .insert(i.image_id.as_str(), encode(i).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteImage(id) => {
                    images.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutVpc(v) => {
                    vpcs.insert(v.vpc_id.as_str(), encode(v).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteVpc(id) => {
                    vpcs.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutSubnet(s) => {
                    subnets
                        .insert(s.subnet_id.as_str(), encode(s).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteSubnet(id) => {
                    subnets.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutKeyPair(k) => {
                    key_pairs
                        .insert(k.key_pair_id.as_str(), encode(k).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteKeyPair(id) => {
                    key_pairs.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutAddress(a) => {
                    addresses
                        .insert(a.allocation_id.as_str(), encode(a).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteAddress(id) => {
                    addresses.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutKmsKey(k) => {
                    kms_keys
                        .insert(k.key_id.as_str(), encode(k).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteKmsKey(id) => {
                    kms_keys.remove(id.as_str()).map_err(storage)?;
                }
                Change::PutKmsAlias(a) => {
                    kms_aliases
                        .insert(a.key().as_str(), encode(a).as_slice())
                        .map_err(storage)?;
                }
                Change::DeleteKmsAlias(key) => {
                    kms_aliases.remove(key.as_str()).map_err(storage)?;
                }
                Change::PutEbsDefaults(d) => {
                    ebs_defaults
                        .insert(d.owner_id.as_str(), encode(d).as_slice())
                        .map_err(storage)?;
                }
                Change::PutUsage(s) => {
                    usage
                        .insert(s.id.as_str(), encode(s).as_slice())
                        .map_err(storage)?;
                }
                Change::PutBillingClock(c) => {
                    settings
                        .insert(BILLING_CLOCK, encode(c).as_slice())
                        .map_err(storage)?;
                }
                Change::PutReservation(r) => {
                    reservations
                        .insert(r.id.as_str(), encode(r).as_slice())
                        .map_err(storage)?;
                }
                Change::PutSavingsPlan(p) => {
                    savings_plans
                        .insert(p.id.as_str(), encode(p).as_slice())
                        .map_err(storage)?;
                }
            }
        }
    }
    tx.commit().map_err(storage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{VolumeRecord, VolumeType};

    fn volume(id: &str) -> VolumeRecord {
        VolumeRecord::for_test(id, VolumeType::Gp3, 8, Some(3000), Some(125))
    }

    #[test]
    fn commits_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.redb");
        {
            let c = RedbCatalog::open(&path).unwrap();
            c.commit(&[
                Change::PutVolume(volume("vol-1")),
                Change::PutVolume(volume("vol-2")),
            ])
            .unwrap();
            c.commit(&[Change::DeleteVolume("vol-1".into())]).unwrap();
        }
        let c = RedbCatalog::open(&path).unwrap();
        let all = c.load().unwrap();
        assert_eq!(all.volumes, vec![volume("vol-2")]);
        assert!(all.hosts.is_empty());
    }
}
