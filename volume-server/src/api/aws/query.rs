//! The AWS Query protocol's parameters (EC2, STS): `Name=value` pairs from the form body (and
//! the URL query), lists flattened as `Name.1`, `Name.2`, … and structures as `Name.1.Member`.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use crate::control::Ec2Error;

/// The most parameters a request may carry.
pub const MAX_PARAMS: usize = 10_000;

/// The highest list index (`Name.N`) accepted.
pub const MAX_INDEX: u32 = 1_000;

/// The pairs of a URL query, decoded as SigV4 reads them (`+` is a plus, not a space), so that
/// what the signature covers is what the handlers see.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A request's parameters.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// The pairs of a URL query and a form body (the body's win on a clash). At most
    /// [`MAX_PARAMS`] of them, and no list index past [`MAX_INDEX`] (`InvalidParameterValue`).
    pub fn parse(query: &str, body: &[u8]) -> Result<Params, Ec2Error> {
        let mut map = BTreeMap::new();
        let form = form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()));
        for (n, (k, v)) in query_pairs(query).into_iter().chain(form).enumerate() {
            if n == MAX_PARAMS {
                return Err(Ec2Error::invalid_value(format!(
                    "The request has more than {MAX_PARAMS} parameters."
                )));
            }
            if let Some(i) = k
                .split('.')
                .filter_map(|s| s.parse::<u64>().ok())
                .find(|i| *i > u64::from(MAX_INDEX))
            {
                return Err(Ec2Error::invalid_value(format!(
                    "The parameter {k} has an index ({i}) past {MAX_INDEX}."
                )));
            }
            map.insert(k, v);
        }
        Ok(Params { map })
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value of `name`, owned, if given.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// The value of `name`, which must be given (`MissingParameter`).
    pub fn required(&self, name: &str) -> Result<String, Ec2Error> {
        self.string(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Ec2Error::missing(name))
    }

    /// An integer parameter (`InvalidParameterValue` if it is not one).
    pub fn int(&self, name: &str) -> Result<Option<i32>, Ec2Error> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<i32>().map_err(|_| {
                    Ec2Error::invalid_value(format!(
                        "Value ({v}) for parameter {name} is invalid. Expected an integer."
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter (`true`/`false`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, Ec2Error> {
        self.get(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Ec2Error::invalid_value(format!(
                    "Value ({v}) for parameter {name} is invalid. Expected true or false."
                ))),
            })
            .transpose()
    }

    /// The indexes of `prefix.N…` parameters, in order.
    fn indexes(&self, prefix: &str) -> Vec<u32> {
        let dotted = format!("{prefix}.");
        let mut out: Vec<u32> = self
            .map
            .range(dotted.clone()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
            .filter_map(|(k, _)| k[dotted.len()..].split('.').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A flattened list of values: `prefix.1`, `prefix.2`, …
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexes(prefix)
            .into_iter()
            .filter_map(|i| self.string(&format!("{prefix}.{i}")))
            .collect()
    }

    /// The members of structure `prefix` (`prefix.Member`), if any is given.
    pub fn structs_one(&self, prefix: &str) -> Option<Params> {
        let p = format!("{prefix}.");
        let map: BTreeMap<String, String> = self
            .map
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(&p))
            .map(|(k, v)| (k[p.len()..].to_string(), v.clone()))
            .collect();
        (!map.is_empty()).then_some(Params { map })
    }

    /// A flattened list of structures: the members of `prefix.N.*`, one [`Params`] per N.
    pub fn structs(&self, prefix: &str) -> Vec<Params> {
        self.indexes(prefix)
            .into_iter()
            .map(|i| {
                let p = format!("{prefix}.{i}.");
                Params {
                    map: self
                        .map
                        .range(p.clone()..)
                        .take_while(|(k, _)| k.starts_with(&p))
                        .map(|(k, v)| (k[p.len()..].to_string(), v.clone()))
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_lists_and_structures() {
        let p = Params::parse(
            "Version=2016-11-15&Plus=a+b%2B",
            b"Action=DescribeVolumes&VolumeId.2=vol-b&VolumeId.1=vol-a&VolumeId.10=vol-j&Filter.1.Name=status&Filter.1.Value.1=available&Filter.1.Value.2=in-use&Filter.2.Name=tag%3AName&Filter.2.Value.1=a+b&MaxResults=5&DryRun=false",
        )
        .unwrap();
        // In the URL query `+` is a plus (as SigV4 reads it); in a form body, a space.
        assert_eq!(p.get("Plus"), Some("a+b+"));
        assert_eq!(p.get("Action"), Some("DescribeVolumes"));
        assert_eq!(p.get("Version"), Some("2016-11-15"));
        assert_eq!(p.list("VolumeId"), ["vol-a", "vol-b", "vol-j"]);
        let f = p.structs("Filter");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].get("Name"), Some("status"));
        assert_eq!(f[0].list("Value"), ["available", "in-use"]);
        assert_eq!(f[1].get("Name"), Some("tag:Name"));
        assert_eq!(f[1].list("Value"), ["a b"]);
        assert_eq!(p.int("MaxResults").unwrap(), Some(5));
        assert_eq!(p.bool("DryRun").unwrap(), Some(false));
        assert_eq!(p.int("Nope").unwrap(), None);
        assert_eq!(
            Params::parse("", b"Size=big")
                .unwrap()
                .int("Size")
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        assert_eq!(
            p.required("VolumeType").unwrap_err().code,
            "MissingParameter"
        );
        assert!(p.list("Nothing").is_empty());
        assert!(Params::parse("", b"VolumeId.1000=a").is_ok());
        assert!(Params::parse("", b"VolumeId.1001=a").is_err());
        let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=x&")).collect();
        assert!(Params::parse("", many.as_bytes()).is_err());
    }
}
