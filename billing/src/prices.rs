//! The price list: Linux On-Demand hourly prices per instance type, EBS by volume type, snapshot
//! storage, fast snapshot restore, EBS direct API requests and public IPv4 addresses, per
//! region, with the source of every figure. The built-in list is `data/prices.json`;
//! `--price-list FILE` replaces it with one of the same shape.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::BillingError;

/// The built-in list.
const BUILTIN: &str = include_str!("../data/prices.json");

/// How public IPv4 addresses are charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Ipv4Rule {
    /// Every public IPv4 address by the hour, in use or idle: AWS's rule since 2024-02-01 (the
    /// default).
    #[serde(rename = "all-hourly")]
    AllHourly,
    /// The EC2 guide's older rule: free while associated with a running instance, charged by
    /// the hour otherwise.
    #[serde(rename = "idle-only")]
    IdleOnly,
}

/// Where figures come from.
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    pub id: String,
    pub url: String,
    pub retrieved: String,
    pub covers: String,
}

/// One EBS volume type's prices (USD); what a type lacks is absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumePrices {
    /// Per GB-month of provisioned size.
    pub gb_month: f64,
    /// Per provisioned IOPS-month (io1; gp3 above its 3,000 included).
    #[serde(default)]
    pub iops_month: Option<f64>,
    /// io2's provisioned IOPS by tier: (up to this many IOPS, or the rest, price per IOPS-month).
    #[serde(default)]
    pub iops_month_tiers: Option<Vec<(Option<u64>, f64)>>,
    /// gp3 throughput above its 125 MiB/s included, per MiB/s-month.
    #[serde(default)]
    pub throughput_mibps_month: Option<f64>,
    /// Magnetic (standard): per million I/O requests.
    #[serde(default)]
    pub per_million_io: Option<f64>,
}

/// Snapshot storage.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotPrices {
    pub standard_gb_month: f64,
    pub archive_gb_month: f64,
    pub archive_retrieval_gb: f64,
}

/// EBS direct API requests, per thousand.
#[derive(Debug, Clone, Deserialize)]
pub struct DirectApiPrices {
    pub list_per_thousand: f64,
    pub get_per_thousand: f64,
    pub put_per_thousand: f64,
}

/// One region's prices.
#[derive(Debug, Clone, Deserialize)]
pub struct RegionPrices {
    /// What AWS puts before a usage type in this region (`""` in us-east-1, `USW2-`, `EU-`).
    pub usage_type_prefix: String,
    /// Linux On-Demand, shared tenancy, USD per hour.
    pub instances: BTreeMap<String, f64>,
    pub ebs: BTreeMap<String, VolumePrices>,
    pub snapshot: SnapshotPrices,
    pub fsr_dsu_hour: f64,
    pub direct_api: DirectApiPrices,
    pub public_ipv4_hour: f64,
    pub dedicated_per_region_hour: f64,
}

/// A whole price list.
#[derive(Debug, Clone, Deserialize)]
pub struct PriceList {
    pub about: String,
    pub as_of: String,
    pub public_ipv4_rule: Ipv4Rule,
    pub sources: Vec<Source>,
    pub regions: BTreeMap<String, RegionPrices>,
    /// Reserved Instance and Savings Plans discounts; without them none can be bought.
    #[serde(default)]
    pub commitments: Option<crate::commitments::CommitmentPrices>,
}

impl PriceList {
    /// The list built into the binary.
    pub fn builtin() -> PriceList {
        PriceList::parse(BUILTIN).expect("the built-in price list is valid")
    }

    /// A list in the built-in list's JSON shape, checked: every region prices every volume
    /// type, and no price is negative or not a number.
    pub fn parse(text: &str) -> Result<PriceList, BillingError> {
        let list: PriceList =
            serde_json::from_str(text).map_err(|e| BillingError::PriceList(e.to_string()))?;
        for (name, r) in &list.regions {
            let bad = |what: &str| BillingError::PriceList(format!("{name}: {what}"));
            for ty in ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"] {
                if !r.ebs.contains_key(ty) {
                    return Err(bad(&format!("no price for {ty} volumes")));
                }
            }
            let mut all: Vec<f64> = r.instances.values().copied().collect();
            for v in r.ebs.values() {
                all.push(v.gb_month);
                all.extend(v.iops_month);
                all.extend(v.throughput_mibps_month);
                all.extend(v.per_million_io);
                all.extend(v.iops_month_tiers.iter().flatten().map(|t| t.1));
            }
            all.extend([
                r.snapshot.standard_gb_month,
                r.snapshot.archive_gb_month,
                r.fsr_dsu_hour,
                r.public_ipv4_hour,
                r.dedicated_per_region_hour,
            ]);
            if all.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(bad("a price is negative or not a number"));
            }
        }
        Ok(list)
    }

    /// Reads and checks a list from a file (`--price-list`).
    pub fn load(path: &std::path::Path) -> Result<PriceList, BillingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BillingError::PriceList(format!("{}: {e}", path.display())))?;
        PriceList::parse(&text)
    }

    /// The prices of `region`.
    pub fn region(&self, region: &str) -> Result<&RegionPrices, BillingError> {
        self.regions
            .get(region)
            .ok_or_else(|| BillingError::NoPrice(format!("region {region}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_prices_every_instance_type_in_three_regions() {
        let list = PriceList::builtin();
        assert!(list.regions.len() >= 3);
        assert_eq!(list.public_ipv4_rule, Ipv4Rule::AllHourly);
        let us = list.region("us-east-1").unwrap();
        assert_eq!(us.usage_type_prefix, "");
        assert!(us.instances["m5.large"] > 0.0);
        assert!(us.ebs["gp3"].iops_month.is_some());
        assert!(us.ebs["io2"].iops_month_tiers.as_ref().unwrap().len() == 3);
        for r in list.regions.values() {
            assert!(r.instances.len() >= 100, "{}", r.usage_type_prefix);
        }
        for s in &list.sources {
            assert!(s.url.starts_with("https://"), "{s:?}");
        }
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(PriceList::parse("{").is_err());
        let mut v: serde_json::Value = serde_json::from_str(BUILTIN).unwrap();
        v["regions"]["us-east-1"]["ebs"]
            .as_object_mut()
            .unwrap()
            .remove("gp3");
        let e = PriceList::parse(&v.to_string()).unwrap_err();
        assert!(e.to_string().contains("gp3"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(BUILTIN).unwrap();
        v["regions"]["us-east-1"]["instances"]["m5.large"] = serde_json::json!(-1.0);
        assert!(PriceList::parse(&v.to_string()).is_err());
    }
}
