//! AMIs: RegisterImage from snapshots, DescribeImages, DeregisterImage. The records live in
//! the catalog with the volumes and snapshots they refer to, so "a snapshot an AMI uses cannot
//! be deleted" is one check under one lock.

use std::collections::BTreeSet;

use super::filter::glob;
use super::model;
use super::{Account, ControlPlane, Ec2Error, ErrorCode, check_id, now_ms, validate};
use crate::catalog::{Change, EbsMapping, ImageRecord, MappingRecord, SnapshotState};
use crate::ids;

/// One page of DescribeImages: each image with its state, and the next page's token.
pub type ImagesPage = (Vec<(ImageRecord, &'static str)>, Option<String>);

/// Instance store devices an AMI may map: `ephemeral0`…`ephemeral23`.
const MAX_EPHEMERAL: u32 = 23;

fn bad_mapping(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(ErrorCode::InvalidBlockDeviceMapping, message)
}

pub(super) fn image_not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidAmiIdNotFound,
        format!("The image id '[{id}]' does not exist"),
    )
}

impl super::State {
    /// Image `id` if `who` owns it; another account's is `InvalidAMIID.NotFound`.
    pub(super) fn image(&self, who: Account, id: &str) -> Result<&ImageRecord, Ec2Error> {
        self.images
            .get(id)
            .filter(|i| who.owns(&i.owner_id))
            .ok_or_else(|| image_not_found(id))
    }
}

pub(super) fn check_image_id(id: &str) -> Result<(), Ec2Error> {
    check_id(id, "ami", "ImageId", ErrorCode::InvalidAmiIdMalformed)
}

/// EC2's AMI name rule: 3–128 of letters, digits, `()[] ./-'@_`.
pub(super) fn check_name(name: &str) -> Result<(), Ec2Error> {
    if name.is_empty() {
        return Err(Ec2Error::missing("Name"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c);
    if !(3..=128).contains(&name.chars().count()) || !name.chars().all(ok_char) {
        return Err(Ec2Error::new(
            ErrorCode::InvalidAmiNameMalformed,
            format!(
                "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/', '_', '[', ']', ' ', '@' and '''. Got: {name}"
            ),
        ));
    }
    Ok(())
}

/// The record of a proto mapping, checked on its own (snapshots are checked by the caller).
pub(super) fn mapping(m: &model::BlockDeviceMapping) -> Result<MappingRecord, Ec2Error> {
    if m.device_name.is_empty() {
        return Err(Ec2Error::missing("BlockDeviceMapping.DeviceName"));
    }
    if !m.device_name.starts_with("/dev/") {
        return Err(bad_mapping(format!(
            "Invalid device name {}",
            m.device_name
        )));
    }
    let kinds = usize::from(m.ebs.is_some())
        + usize::from(m.virtual_name.is_some())
        + usize::from(m.no_device.is_some());
    if kinds != 1 {
        return Err(bad_mapping(format!(
            "The mapping of {} must have exactly one of Ebs, VirtualName and NoDevice.",
            m.device_name
        )));
    }
    if let Some(v) = &m.virtual_name {
        let n = v
            .strip_prefix("ephemeral")
            .and_then(|n| n.parse::<u32>().ok());
        if n.is_none_or(|n| n > MAX_EPHEMERAL) {
            return Err(bad_mapping(format!(
                "Invalid virtual name {v} (expecting ephemeral0 to ephemeral{MAX_EPHEMERAL})."
            )));
        }
    }
    let ebs = match &m.ebs {
        None => None,
        Some(e) => {
            if e.snapshot_id.as_deref().is_none_or(str::is_empty) && e.volume_size.is_none() {
                return Err(bad_mapping(format!(
                    "The mapping of {} needs a SnapshotId or a VolumeSize.",
                    m.device_name
                )));
            }
            if let Some(t) = e.volume_type.as_deref() {
                validate::parse_volume_type(Some(t))?;
            }
            let positive = |v: Option<i32>, what: &str| match v {
                Some(n) if n <= 0 => Err(bad_mapping(format!("{what} must be positive."))),
                _ => Ok(v.map(|n| n as u32)),
            };
            Some(EbsMapping {
                snapshot_id: e.snapshot_id.clone().filter(|s| !s.is_empty()),
                volume_size: positive(e.volume_size, "VolumeSize")?,
                volume_type: e.volume_type.clone(),
                iops: positive(e.iops, "Iops")?,
                throughput: positive(e.throughput, "Throughput")?,
                delete_on_termination: e.delete_on_termination,
                encrypted: e.encrypted,
                kms_key_id: e.kms_key_id.clone().filter(|k| !k.is_empty()),
            })
        }
    };
    Ok(MappingRecord {
        device_name: m.device_name.clone(),
        ebs,
        virtual_name: m.virtual_name.clone(),
        no_device: m.no_device.is_some(),
    })
}

/// An AMI's state: `pending` while a snapshot it maps is being taken (CreateImage), `failed`
/// if one ended in error or is gone, else `available`.
pub(super) fn image_state(st: &super::State, i: &ImageRecord) -> &'static str {
    let mut state = "available";
    for snap in i
        .mappings
        .iter()
        .filter_map(|m| m.ebs.as_ref()?.snapshot_id.as_deref())
    {
        match st.snapshots.get(snap).map(|s| s.state) {
            Some(SnapshotState::Completed) => {}
            Some(SnapshotState::Pending) => state = "pending",
            _ => return "failed",
        }
    }
    state
}

impl ControlPlane {
    /// RegisterImage: an AMI whose root and other EBS devices come from completed snapshots.
    pub fn register_image(
        &self,
        who: Account,
        req: model::RegisterImageRequest,
    ) -> Result<ImageRecord, Ec2Error> {
        check_name(&req.name)?;
        if req.root_device_name.is_empty() {
            return Err(Ec2Error::missing("RootDeviceName"));
        }
        let architecture = req.architecture.unwrap_or_else(|| "x86_64".into());
        if !matches!(architecture.as_str(), "x86_64" | "arm64" | "i386") {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid architecture {architecture} (expecting x86_64, arm64 or i386)."
            )));
        }
        let virtualization_type = req.virtualization_type.unwrap_or_else(|| "hvm".into());
        if !matches!(virtualization_type.as_str(), "hvm" | "paravirtual") {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid virtualization type {virtualization_type}."
            )));
        }
        let tags = validate::tag_specifications("image", &req.tag_specifications)?;
        let mappings = req
            .block_device_mappings
            .iter()
            .map(mapping)
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeSet::new();
        for m in &mappings {
            if !seen.insert(m.device_name.as_str()) {
                return Err(bad_mapping(format!(
                    "The device {} is mapped twice.",
                    m.device_name
                )));
            }
        }
        let root = mappings
            .iter()
            .find(|m| m.device_name == req.root_device_name)
            .and_then(|m| m.ebs.as_ref())
            .and_then(|e| e.snapshot_id.as_ref());
        if root.is_none() {
            return Err(Ec2Error::invalid_value(format!(
                "The root device {} must be mapped to an EBS volume from a snapshot.",
                req.root_device_name
            )));
        }
        let mut st = self.lock();
        // Names are unique per account and region.
        if st
            .images
            .values()
            .any(|i| i.name == req.name && who.owns(&i.owner_id))
        {
            return Err(Ec2Error::new(
                ErrorCode::InvalidAmiNameDuplicate,
                format!("AMI name {} is already in use by an AMI", req.name),
            ));
        }
        let mut mappings = mappings;
        for m in &mut mappings {
            let Some(e) = &mut m.ebs else {
                continue;
            };
            // As EC2 shows them: a volume's type defaults to gp2 (what a launch makes), and its
            // size to its snapshot's.
            e.volume_type.get_or_insert_with(|| "gp2".into());
            let Some(snap) = e.snapshot_id.clone() else {
                continue;
            };
            let snap = &snap;
            check_id(
                snap,
                "snap",
                "SnapshotId",
                ErrorCode::InvalidSnapshotIdMalformed,
            )?;
            let s = st
                .snapshot(who, snap)
                .ok()
                .filter(|s| s.state == SnapshotState::Completed)
                .ok_or_else(|| {
                    Ec2Error::new(
                        ErrorCode::InvalidSnapshotNotFound,
                        format!("The snapshot '{snap}' does not exist (or is not completed)."),
                    )
                })?;
            if s.kms_key_id.is_some() {
                // A volume of an encrypted snapshot is encrypted, as the image shows.
                e.encrypted = Some(true);
            }
            if e.volume_size.is_some_and(|n| n < s.volume_size_gib) {
                return Err(bad_mapping(format!(
                    "Volume of {}GiB for {} is smaller than snapshot {snap} ({}GiB).",
                    e.volume_size.unwrap_or(0),
                    m.device_name,
                    s.volume_size_gib
                )));
            }
            e.volume_size.get_or_insert(s.volume_size_gib);
        }
        let rec = ImageRecord {
            image_id: ids::new_id("ami"),
            owner_id: who.id().to_string(),
            name: req.name,
            description: req.description.unwrap_or_default(),
            creation_ms: now_ms(),
            root_device_name: req.root_device_name,
            architecture,
            virtualization_type,
            mappings,
            tags,
        };
        self.commit(&[Change::PutImage(rec.clone())])?;
        st.images.insert(rec.image_id.clone(), rec.clone());
        tracing::info!(image_id = %rec.image_id, name = %rec.name, "image registered");
        Ok(rec)
    }

    /// DescribeImages: ids, owners and filters, paginated in image-id order.
    pub fn describe_images(
        &self,
        who: Account,
        req: model::DescribeImagesRequest,
    ) -> Result<ImagesPage, Ec2Error> {
        for id in &req.image_ids {
            check_image_id(id)?;
        }
        let names = [
            "image-id",
            "name",
            "state",
            "architecture",
            "root-device-name",
            "root-device-type",
            "virtualization-type",
            "block-device-mapping.snapshot-id",
            "description",
            "owner-id",
            "tag-key",
        ];
        super::filter::check_names(&req.filters, &names)?;
        let max =
            super::filter::page_size(req.max_results, !req.image_ids.is_empty(), "ImageIds", 1000)?;
        // Without sharing, a caller sees its own images only: an `Owner` list shows them when
        // it names the caller (`self` or its id), and nothing otherwise (`amazon`, others).
        let owned = req.owners.is_empty() || req.owners.iter().any(|o| who.is_named_by(o));
        let after = super::decode_token_opt(req.next_token.as_deref(), "ami")?;
        let st = self.lock();
        let matches = |i: &ImageRecord| {
            req.filters.iter().all(|f| {
                let any = |v: &str| f.values.iter().any(|p| glob(p, v));
                match f.name.as_str() {
                    "image-id" => any(&i.image_id),
                    "name" => any(&i.name),
                    "state" => any(image_state(&st, i)),
                    "architecture" => any(&i.architecture),
                    "root-device-name" => any(&i.root_device_name),
                    "root-device-type" => any("ebs"),
                    "virtualization-type" => any(&i.virtualization_type),
                    "description" => any(&i.description),
                    "owner-id" => any(&i.owner_id),
                    "block-device-mapping.snapshot-id" => i
                        .mappings
                        .iter()
                        .filter_map(|m| m.ebs.as_ref()?.snapshot_id.as_deref())
                        .any(any),
                    "tag-key" => i.tags.keys().any(|k| any(k)),
                    name => name
                        .strip_prefix("tag:")
                        .and_then(|k| i.tags.get(k))
                        .is_some_and(|v| any(v)),
                }
            })
        };
        if !req.image_ids.is_empty() {
            let mut out: Vec<(ImageRecord, &'static str)> = vec![];
            for id in &req.image_ids {
                let i = st.image(who, id)?;
                if owned && matches(i) && !out.iter().any(|o| o.0.image_id == *id) {
                    out.push((i.clone(), image_state(&st, i)));
                }
            }
            return Ok((out, None));
        }
        if !owned {
            return Ok((vec![], None));
        }
        let mut out = vec![];
        let mut next = None;
        for (id, i) in &st.images {
            if after.as_ref().is_some_and(|a| id <= a) || !who.owns(&i.owner_id) || !matches(i) {
                continue;
            }
            if out.len() == max {
                next = out
                    .last()
                    .map(|l: &(ImageRecord, &str)| super::encode_token(&l.0.image_id));
                break;
            }
            out.push((i.clone(), image_state(&st, i)));
        }
        Ok((out, next))
    }

    /// DeregisterImage. Its snapshots stay (and may be deleted afterwards), unless
    /// `delete_snapshots`: then each is deleted, except one another AMI also maps (`skipped`,
    /// as EC2 does); the answer lists each snapshot with `success`, `skipped` or, if its deletion
    /// failed, `client-error`. The image is gone either way.
    pub fn deregister_image(
        &self,
        who: Account,
        image_id: &str,
        delete_snapshots: bool,
    ) -> Result<Vec<(String, &'static str)>, Ec2Error> {
        check_image_id(image_id)?;
        let snapshots: Vec<String> = {
            let mut st = self.lock();
            let image = st.image(who, image_id)?.clone();
            self.commit(&[Change::DeleteImage(image_id.to_string())])?;
            st.images.remove(image_id);
            tracing::info!(image_id, "image deregistered");
            if !delete_snapshots {
                return Ok(vec![]);
            }
            let mut ids: Vec<String> = image
                .mappings
                .iter()
                .filter_map(|m| m.ebs.as_ref()?.snapshot_id.clone())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        Ok(snapshots
            .into_iter()
            .map(|id| {
                let shared = self.lock().images.values().any(|i| {
                    i.mappings
                        .iter()
                        .any(|m| m.ebs.as_ref().and_then(|e| e.snapshot_id.as_deref()) == Some(&id))
                });
                let code = if shared {
                    "skipped"
                } else {
                    match self.delete_snapshot(who, &id) {
                        Ok(()) => "success",
                        Err(e) => {
                            tracing::warn!(image_id, snapshot_id = %id, error = %e.message, "deleting an AMI's snapshot");
                            "client-error"
                        }
                    }
                };
                (id, code)
            })
            .collect())
    }
}
