//! DescribeVolumes filters: names, values with `*`/`?` wildcards, AND across filters, OR within.

use super::error::Ec2Error;
use crate::catalog::VolumeRecord;

/// A parsed filter.
#[derive(Debug, Clone)]
pub struct Filter {
    field: Field,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
enum Field {
    Status,
    VolumeType,
    AvailabilityZone,
    VolumeId,
    Size,
    MultiAttach,
    Encrypted,
    AttachmentInstanceId,
    AttachmentDevice,
    AttachmentStatus,
    TagKey,
    Tag(String),
}

impl Filter {
    /// Parses a filter name and its values.
    pub fn parse(name: &str, values: Vec<String>) -> Result<Filter, Ec2Error> {
        let field = match name {
            "status" => Field::Status,
            "volume-type" => Field::VolumeType,
            "availability-zone" => Field::AvailabilityZone,
            "volume-id" => Field::VolumeId,
            "size" => Field::Size,
            "multi-attach-enabled" => Field::MultiAttach,
            "encrypted" => Field::Encrypted,
            "attachment.instance-id" => Field::AttachmentInstanceId,
            "attachment.device" => Field::AttachmentDevice,
            "attachment.status" => Field::AttachmentStatus,
            "tag-key" => Field::TagKey,
            _ => Field::Tag(tag_key(name)?),
        };
        check_values(name, &values)?;
        Ok(Filter { field, values })
    }

    /// Whether `v` passes this filter.
    pub fn matches(&self, v: &VolumeRecord) -> bool {
        let any = |candidate: &str| self.values.iter().any(|p| glob(p, candidate));
        match &self.field {
            Field::Status => any(v.state.as_str()),
            Field::VolumeType => any(v.volume_type.as_str()),
            Field::AvailabilityZone => any(&v.availability_zone),
            Field::VolumeId => any(&v.volume_id),
            Field::Size => any(&v.size_gib.to_string()),
            Field::MultiAttach => any(if v.multi_attach_enabled {
                "true"
            } else {
                "false"
            }),
            Field::Encrypted => any(if v.encryption.is_some() {
                "true"
            } else {
                "false"
            }),
            Field::AttachmentInstanceId => v.attachments.iter().any(|a| any(&a.instance_id)),
            Field::AttachmentDevice => v.attachments.iter().any(|a| any(&a.device)),
            Field::AttachmentStatus => v.attachments.iter().any(|a| any(a.state.as_str())),
            Field::TagKey => v.tags.keys().any(|k| any(k)),
            Field::Tag(key) => v.tags.get(key).is_some_and(|val| any(val)),
        }
    }
}

/// `InvalidParameterValue` unless every filter is one of `names` or a `tag:KEY`.
pub fn check_names(filters: &[super::model::Filter], names: &[&str]) -> Result<(), Ec2Error> {
    match filters
        .iter()
        .find(|f| !names.contains(&f.name.as_str()) && !f.name.starts_with("tag:"))
    {
        Some(f) => Err(Ec2Error::invalid_value(format!(
            "The filter '{}' is invalid",
            f.name
        ))),
        None => Ok(()),
    }
}

/// `InvalidParameterValue` unless every filter is one of `names`: for resources without tags.
pub fn check_untagged_names(
    filters: &[super::model::Filter],
    names: &[&str],
) -> Result<(), Ec2Error> {
    match filters.iter().find(|f| !names.contains(&f.name.as_str())) {
        Some(f) => Err(Ec2Error::invalid_value(format!(
            "The filter '{}' is invalid",
            f.name
        ))),
        None => Ok(()),
    }
}

/// EC2's `MaxResults` of a Describe call that also takes ids (`ids_param`): not with ids, and
/// 5 to `limit` (1000 for most calls, 500 for DescribeVolumes). No limit when not given.
pub fn page_size(
    max: Option<i32>,
    with_ids: bool,
    ids_param: &str,
    limit: i32,
) -> Result<usize, Ec2Error> {
    match max {
        None => Ok(usize::MAX),
        Some(_) if with_ids => Err(Ec2Error::invalid_combination(format!(
            "The parameter 'MaxResults' cannot be used with the parameter '{ids_param}'."
        ))),
        Some(n) if n < 5 => Err(Ec2Error::invalid_value(format!(
            "Value ({n}) for parameter maxResults is invalid. Expecting a value of at least 5."
        ))),
        // EC2: "if you specify a value larger than [the limit], only [the limit] items are
        // returned" (the aws CLI sends MaxResults=1000 to DescribeVolumes, whose limit is 500).
        Some(n) => Ok(n.min(limit) as usize),
    }
}

/// The key of a `tag:KEY` filter; `InvalidParameterValue` for any other unknown name.
pub fn tag_key(name: &str) -> Result<String, Ec2Error> {
    match name.strip_prefix("tag:") {
        Some(key) if !key.is_empty() => Ok(key.to_string()),
        _ => Err(Ec2Error::invalid_value(format!(
            "The filter '{name}' is invalid"
        ))),
    }
}

/// A filter needs at least one value.
pub fn check_values(name: &str, values: &[String]) -> Result<(), Ec2Error> {
    if values.is_empty() {
        return Err(Ec2Error::invalid_value(format!(
            "The filter '{name}' must have at least one value"
        )));
    }
    Ok(())
}

/// Matches `text` against `pattern` where `*` is any run and `?` any one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_ec2() {
        assert!(glob("available", "available"));
        assert!(!glob("available", "in-use"));
        assert!(glob("us-east-1*", "us-east-1a"));
        assert!(glob("*", ""));
        assert!(glob("g?3", "gp3"));
        assert!(glob("*e*e*", "prefetched"));
        assert!(!glob("a*b", "acbd"));
    }

    #[test]
    fn unknown_filter_is_rejected() {
        assert_eq!(
            Filter::parse("colour", vec!["red".into()])
                .unwrap_err()
                .code,
            "InvalidParameterValue"
        );
        assert_eq!(
            Filter::parse("tag:", vec!["x".into()]).unwrap_err().code,
            "InvalidParameterValue"
        );
        assert!(Filter::parse("tag:Name", vec!["db".into()]).is_ok());
    }
}
