//! What EC2 says about the place a caller is in: the regions this deployment knows
//! (DescribeRegions) and the account's attributes (DescribeAccountAttributes).

use super::filter::{check_untagged_names, glob};
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

/// The attributes a new AWS account reports, as (name, values); `default-vpc` is filled in with
/// the caller's default VPC.
const ACCOUNT_ATTRIBUTES: [(&str, &str); 6] = [
    ("supported-platforms", "VPC"),
    ("default-vpc", ""),
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
        check_untagged_names(filters, &["region-name", "endpoint", "opt-in-status"])?;
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

    /// DescribeAccountAttributes: `names`, or every attribute, of `who`.
    pub fn account_attributes(
        &self,
        who: Account,
        names: &[String],
    ) -> Vec<(&'static str, Vec<String>)> {
        ACCOUNT_ATTRIBUTES
            .iter()
            .filter(|(n, _)| names.is_empty() || names.iter().any(|w| w == n))
            .map(|(n, v)| match *n {
                "default-vpc" => (*n, vec![self.default_vpc(who).vpc_id]),
                _ => (*n, vec![v.to_string()]),
            })
            .collect()
    }
}

/// The AZ ID of zone `az`, as EC2 names it (`us-east-1a` → `use1-az1`, `ap-southeast-2b` →
/// `apse2-az2`): the region's short form, then the zone letter's place in the alphabet. AWS maps
/// letters to IDs differently in each account; here the mapping is the same for all. `None`
/// for a zone name not of the `REGION` + letter form.
pub fn zone_id(az: &str) -> Option<String> {
    let letter = az.chars().last().filter(char::is_ascii_lowercase)?;
    let region = &az[..az.len() - 1];
    let parts: Vec<&str> = region.split('-').collect();
    let (first, rest) = parts.split_first()?;
    let (number, middle) = rest.split_last()?;
    if first.is_empty() || middle.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut short = first.to_string();
    for word in middle {
        // Compound directions keep both initials: southeast → se, northwest → nw.
        let compound = ["north", "south"]
            .iter()
            .find_map(|p| word.strip_prefix(p).map(|r| (p, r)))
            .filter(|(_, r)| ["east", "west"].contains(r));
        match compound {
            Some((p, r)) => {
                short.push_str(&p[..1]);
                short.push_str(&r[..1]);
            }
            None => short.push_str(word.get(..1)?),
        }
    }
    short.push_str(number);
    Some(format!("{short}-az{}", letter as u32 - 'a' as u32 + 1))
}

#[cfg(test)]
mod tests {
    use super::zone_id;

    #[test]
    fn zone_ids_follow_ec2s_naming() {
        for (az, id) in [
            ("us-east-1a", "use1-az1"),
            ("us-east-1b", "use1-az2"),
            ("us-west-2c", "usw2-az3"),
            ("eu-central-1a", "euc1-az1"),
            ("ap-southeast-2b", "apse2-az2"),
            ("ap-northeast-1d", "apne1-az4"),
            ("us-gov-west-1a", "usgw1-az1"),
        ] {
            assert_eq!(zone_id(az).as_deref(), Some(id), "{az}");
        }
        for bad in ["", "a", "us-east-1", "zone", "us-east-xa", "-east-1a"] {
            assert_eq!(zone_id(bad), None, "{bad}");
        }
    }
}
