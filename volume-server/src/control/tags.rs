//! Tags on every taggable resource (volumes, snapshots, images, instances, key pairs, Elastic
//! IPs): CreateTags and
//! DeleteTags, all or nothing across the resources named, and DescribeTags across them all.

use std::collections::BTreeMap;

use super::filter::{check_names, glob};
use super::views::TagDescription;
use super::{Account, ControlPlane, Ec2Error, ErrorCode, State, apply, model, validate};
use crate::catalog::Change;
use crate::ids;

/// The kinds of resource that carry tags, by id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Volume,
    Snapshot,
    Image,
    Instance,
    KeyPair,
    ElasticIp,
}

impl Resource {
    fn of(id: &str) -> Result<Resource, Ec2Error> {
        [
            ("vol", Resource::Volume),
            ("snap", Resource::Snapshot),
            ("ami", Resource::Image),
            ("i", Resource::Instance),
            ("key", Resource::KeyPair),
            ("eipalloc", Resource::ElasticIp),
        ]
        .into_iter()
        .find(|(prefix, _)| ids::is_valid_id(id, prefix))
        .map(|(_, r)| r)
        .ok_or_else(|| Ec2Error::new(ErrorCode::InvalidId, format!("The ID '{id}' is not valid")))
    }

    /// EC2's `resource-type` name.
    fn name(self) -> &'static str {
        match self {
            Resource::Volume => "volume",
            Resource::Snapshot => "snapshot",
            Resource::Image => "image",
            Resource::Instance => "instance",
            Resource::KeyPair => "key-pair",
            Resource::ElasticIp => "elastic-ip",
        }
    }
}

impl ControlPlane {
    /// CreateTags on volumes, snapshots, images, instances, key pairs and Elastic IPs.
    pub fn create_tags(
        &self,
        who: Account,
        resources: &[String],
        tags: &[model::Tag],
    ) -> Result<(), Ec2Error> {
        if tags.is_empty() {
            return Err(Ec2Error::missing("Tag"));
        }
        self.edit_tags(who, resources, |r, map| {
            validate::merge_tags(
                r,
                map,
                tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
            )
        })
    }

    /// DeleteTags: keys (with an optional value to match), or all tags when none are given.
    pub fn delete_tags(
        &self,
        who: Account,
        resources: &[String],
        tags: &[model::DeleteTag],
    ) -> Result<(), Ec2Error> {
        self.edit_tags(who, resources, |_, map| {
            if tags.is_empty() {
                map.clear();
            }
            for t in tags {
                if t.value
                    .as_deref()
                    .is_none_or(|want| map.get(&t.key).is_some_and(|have| have == want))
                {
                    map.remove(&t.key);
                }
            }
            Ok(())
        })
    }

    /// Applies `edit` to the tags of every resource in one transaction; if any resource is
    /// missing (or another account's) or any edit fails, nothing changes.
    fn edit_tags<F>(&self, who: Account, resources: &[String], edit: F) -> Result<(), Ec2Error>
    where
        F: Fn(&str, &mut BTreeMap<String, String>) -> Result<(), Ec2Error>,
    {
        if resources.is_empty() {
            return Err(Ec2Error::missing("ResourceId"));
        }
        let mut st = self.lock();
        let mut changes = Vec::new();
        for r in resources {
            changes.push(match Resource::of(r)? {
                Resource::Volume => {
                    let mut v = st.volume(who, r)?.clone();
                    edit(r, &mut v.tags)?;
                    Change::PutVolume(v)
                }
                Resource::Snapshot => {
                    let mut s = st.snapshot(who, r)?.clone();
                    edit(r, &mut s.tags)?;
                    Change::PutSnapshot(s)
                }
                Resource::Image => {
                    let mut i = st.image(who, r)?.clone();
                    edit(r, &mut i.tags)?;
                    Change::PutImage(i)
                }
                Resource::Instance => {
                    let mut h = st.host(who, r)?.clone();
                    edit(r, &mut h.tags)?;
                    Change::PutHost(Box::new(h))
                }
                Resource::KeyPair => {
                    let mut k = st
                        .key_pairs
                        .get(r.as_str())
                        .filter(|k| who.owns(&k.owner_id))
                        .cloned()
                        .ok_or_else(|| super::keypairs::not_found(r))?;
                    edit(r, &mut k.tags)?;
                    Change::PutKeyPair(k)
                }
                Resource::ElasticIp => {
                    let mut a = st
                        .addresses
                        .get(r.as_str())
                        .filter(|a| who.owns(&a.owner_id))
                        .cloned()
                        .ok_or_else(|| super::addresses::allocation_not_found(r))?;
                    edit(r, &mut a.tags)?;
                    Change::PutAddress(a)
                }
            });
        }
        self.commit(&changes)?;
        apply(&mut st, changes);
        Ok(())
    }

    /// DescribeTags: the caller's tags on every resource type, filtered by `key`, `value`,
    /// `resource-id`, `resource-type` and `tag:KEY`, in (resource id, key) order, paged.
    pub fn describe_tags(
        &self,
        who: Account,
        filters: &[model::Filter],
        max_results: Option<i32>,
        next_token: Option<&str>,
    ) -> Result<(Vec<TagDescription>, Option<String>), Ec2Error> {
        check_names(filters, &["key", "value", "resource-id", "resource-type"])?;
        let max = super::filter::page_size(max_results, false, "", 1000)?;
        let after = match next_token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                decode_token(t)
                    .ok_or_else(|| Ec2Error::invalid_value("The NextToken is invalid."))?,
            ),
        };
        let st = self.lock();
        let mut all = owned_tags(&st, who);
        all.sort_by(|a, b| (&a.resource_id, &a.key).cmp(&(&b.resource_id, &b.key)));
        let mut out = vec![];
        let mut next = None;
        for t in all {
            if after
                .as_ref()
                .is_some_and(|(id, key)| (&t.resource_id, &t.key) <= (id, key))
                || !filters.iter().all(|f| matches(f, &t))
            {
                continue;
            }
            if out.len() == max {
                next = out.last().map(encode_token);
                break;
            }
            out.push(t);
        }
        Ok((out, next))
    }
}

/// Every tag of `who`'s resources.
fn owned_tags(st: &State, who: Account) -> Vec<TagDescription> {
    let mut out = vec![];
    let mut add = |kind: Resource, id: &str, owner: &str, tags: &BTreeMap<String, String>| {
        if who.owns(owner) {
            out.extend(tags.iter().map(|(k, v)| TagDescription {
                resource_id: id.to_string(),
                resource_type: kind.name(),
                key: k.clone(),
                value: v.clone(),
            }));
        }
    };
    for v in st.volumes.values() {
        add(Resource::Volume, &v.volume_id, &v.owner_id, &v.tags);
    }
    for s in st.snapshots.values() {
        add(Resource::Snapshot, &s.snapshot_id, &s.owner_id, &s.tags);
    }
    for i in st.images.values() {
        add(Resource::Image, &i.image_id, &i.owner_id, &i.tags);
    }
    for h in st.hosts.values() {
        add(Resource::Instance, &h.instance_id, &h.owner_id, &h.tags);
    }
    for k in st.key_pairs.values() {
        add(Resource::KeyPair, &k.key_pair_id, &k.owner_id, &k.tags);
    }
    for a in st.addresses.values() {
        add(Resource::ElasticIp, &a.allocation_id, &a.owner_id, &a.tags);
    }
    out
}

fn matches(f: &model::Filter, t: &TagDescription) -> bool {
    let any = |v: &str| f.values.iter().any(|p| glob(p, v));
    match f.name.as_str() {
        "key" => any(&t.key),
        "value" => any(&t.value),
        "resource-id" => any(&t.resource_id),
        "resource-type" => any(t.resource_type),
        // `tag:KEY`: tags with that key and one of the values (checked by `check_names`).
        name => name
            .strip_prefix("tag:")
            .is_some_and(|k| k == t.key && any(&t.value)),
    }
}

/// Paging tokens: the hex of the last (resource id, key) returned, NUL between.
fn encode_token(t: &TagDescription) -> String {
    super::hex_token(&format!("{}\0{}", t.resource_id, t.key))
}

fn decode_token(t: &str) -> Option<(String, String)> {
    let s = super::unhex_token(t)?;
    let (id, key) = s.split_once('\0')?;
    Resource::of(id).ok()?;
    Some((id.to_string(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = TagDescription {
            resource_id: "vol-0123456789abcdef0".into(),
            resource_type: "volume",
            key: "Name\u{e9}".into(),
            value: "x".into(),
        };
        assert_eq!(
            decode_token(&encode_token(&t)),
            Some((t.resource_id.clone(), t.key.clone()))
        );
        for bad in ["", "zz", "616263", "abc"] {
            assert_eq!(decode_token(bad), None, "{bad}");
        }
        assert_eq!(
            Resource::of("snap-0123456789abcdef0").unwrap(),
            Resource::Snapshot
        );
        assert_eq!(
            Resource::of("ami-0123456789abcdef0").unwrap().name(),
            "image"
        );
        assert_eq!(
            Resource::of("sg-0123456789abcdef0").unwrap_err().code,
            ErrorCode::InvalidId
        );
    }
}
