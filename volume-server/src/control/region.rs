//! What EC2 says about the place a caller is in: the regions this deployment knows
//! (DescribeRegions) and the account's attributes (DescribeAccountAttributes).

use super::filter::{check_names, glob};
use super::{Account, ControlPlane, Ec2Error, model};

/// A region as DescribeRegions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionView {
    pub name: String,
    /// EC2's endpoint host name for the region (`ec2.REGION.amazonaws.com`): the name a client
    /// would use against AWS; this server answers on its own `--aws-addr`.
    pub endpoint: String,
    /// `opt-in-not-required`: every known region is enabled.
    pub opt_in_status: &'static str,
}

/// The attributes a new AWS account reports, as (name, values). Those about networking that
/// does not exist here yet say so (`default-vpc` is `none`).
const ACCOUNT_ATTRIBUTES: [(&str, &str); 6] = [
    ("supported-platforms", "VPC"),
    ("default-vpc", "none"),
    ("max-instances", "20"),
    ("vpc-max-security-groups-per-interface", "5"),
    ("max-elastic-ips", "5"),
    ("vpc-max-elastic-ips", "5"),
];

impl ControlPlane {
    /// DescribeRegions: this server's region and every region it has a snapshot store for (the
    /// regions CopySnapshot can copy from), filtered by `RegionName` and by `region-name`,
    /// `endpoint` and `opt-in-status`. An unknown name in `RegionName` is
    /// `InvalidParameterValue`, as on EC2.
    pub fn describe_regions(
        &self,
        names: &[String],
        filters: &[model::Filter],
    ) -> Result<Vec<RegionView>, Ec2Error> {
        check_names(filters, &["region-name", "endpoint", "opt-in-status"])?;
        if let Some(f) = filters.iter().find(|f| f.name.starts_with("tag:")) {
            return Err(Ec2Error::invalid_value(format!(
                "The filter '{}' is invalid",
                f.name
            )));
        }
        let mut known: Vec<String> = std::iter::once(self.cfg.region.clone())
            .chain(self.cfg.snapshots.stores.iter().map(|(r, _)| r.clone()))
            .collect();
        known.sort();
        known.dedup();
        if let Some(n) = names.iter().find(|n| !known.contains(n)) {
            return Err(Ec2Error::invalid_value(format!("Invalid region: {n}")));
        }
        Ok(known
            .into_iter()
            .filter(|r| names.is_empty() || names.contains(r))
            .map(|name| RegionView {
                endpoint: format!("ec2.{name}.amazonaws.com"),
                name,
                opt_in_status: "opt-in-not-required",
            })
            .filter(|r| {
                filters.iter().all(|f| {
                    let value = match f.name.as_str() {
                        "region-name" => r.name.as_str(),
                        "endpoint" => r.endpoint.as_str(),
                        _ => r.opt_in_status,
                    };
                    f.values.iter().any(|p| glob(p, value))
                })
            })
            .collect())
    }

    /// DescribeAccountAttributes: `names`, or every attribute.
    pub fn account_attributes(
        &self,
        _who: Account,
        names: &[String],
    ) -> Vec<(&'static str, Vec<String>)> {
        ACCOUNT_ATTRIBUTES
            .iter()
            .filter(|(n, _)| names.is_empty() || names.iter().any(|w| w == n))
            .map(|(n, v)| (*n, vec![v.to_string()]))
            .collect()
    }
}
