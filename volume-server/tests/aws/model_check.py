"""Every EC2 response of the endpoint against botocore's EC2 model (tests/aws_endpoint.rs).

Drives each EC2 operation the server implements through boto3 and keeps the raw XML of every
answer. Each XML element must be a member of the model's output shape at that place (botocore
silently drops anything else, so a misspelt element would be a member missing for every SDK),
and each element of a shape in always_returns.py must carry the members AWS always returns;
both are asserted. The members the model has but no answer carries are counted and printed,
with the operations whose answers carry every member of their output shapes (recursively):
the measure of how far the shapes are from AWS's (issue 20). With --report, only print.

usage: model_check.py ENDPOINT [--report]
"""
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

import boto3
from botocore.config import Config

from always_returns import ALWAYS

endpoint = sys.argv[1]
AZ = "us-east-1a"
FAST = {"Delay": 1, "MaxAttempts": 120}
session = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
)
ec2 = session.client("ec2", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
model = ec2.meta.service_model

raw = defaultdict(list)


def keep(http_response, model, **_):
    if http_response.status_code == 200:
        raw[model.name].append(http_response.content)


ec2.meta.events.register("after-call.ec2", lambda **kw: keep(kw["http_response"], kw["model"]))

# Something of everything, then every operation once.
vol = ec2.create_volume(AvailabilityZone=AZ, Size=1, VolumeType="gp3",
                        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "m"}]}])["VolumeId"]
ec2.describe_volumes()
ec2.create_tags(Resources=[vol], Tags=[{"Key": "k", "Value": "v"}])
ec2.describe_tags()
ec2.delete_tags(Resources=[vol], Tags=[{"Key": "k"}])
ec2.describe_availability_zones()
ec2.describe_regions()
ec2.describe_account_attributes()
made_vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[
    {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "m"}]}])["Vpc"]["VpcId"]
made_subnet = ec2.create_subnet(VpcId=made_vpc, CidrBlock="10.0.0.0/24", AvailabilityZone=AZ)["Subnet"]["SubnetId"]
ec2.describe_vpcs()
ec2.describe_subnets()
ec2.describe_security_groups()
ec2.delete_subnet(SubnetId=made_subnet)
ec2.delete_vpc(VpcId=made_vpc)
ec2.modify_volume(VolumeId=vol, Size=2)
ec2.describe_volumes_modifications()
ec2.describe_volume_status()
ec2.describe_volume_attribute(VolumeId=vol, Attribute="autoEnableIO")
ec2.modify_volume_attribute(VolumeId=vol, AutoEnableIO={"Value": False})
ec2.enable_volume_io(VolumeId=vol)
snap = ec2.create_snapshot(VolumeId=vol, Description="model")["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST)
ec2.describe_snapshots(SnapshotIds=[snap])
copy = ec2.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId=snap)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[copy], WaiterConfig=FAST)
ec2.enable_fast_snapshot_restores(AvailabilityZones=[AZ], SourceSnapshotIds=[snap])
ec2.describe_fast_snapshot_restores()
ec2.disable_fast_snapshot_restores(AvailabilityZones=[AZ], SourceSnapshotIds=[snap])
ami = ec2.register_image(Name="model", RootDeviceName="/dev/xvda",
                         BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
ec2.describe_images(ImageIds=[ami])
ec2.describe_instance_types(InstanceTypes=["m5d.large"])
iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
ec2.describe_instances(InstanceIds=[iid])
ec2.describe_instance_status(InstanceIds=[iid])
for attribute in ["instanceType", "disableApiTermination", "blockDeviceMapping", "userData"]:
    ec2.describe_instance_attribute(InstanceId=iid, Attribute=attribute)
ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})
ec2.modify_instance_metadata_options(InstanceId=iid, HttpTokens="required")
made_key = ec2.create_key_pair(KeyName="model", KeyType="ed25519", TagSpecifications=[
    {"ResourceType": "key-pair", "Tags": [{"Key": "Name", "Value": "m"}]}])
public_key = ec2.describe_key_pairs(KeyNames=["model"], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
ec2.import_key_pair(KeyName="model-imported", PublicKeyMaterial=public_key.encode())
ec2.delete_key_pair(KeyName="model-imported")
eip = ec2.allocate_address(Domain="vpc", TagSpecifications=[
    {"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": "m"}]}])["AllocationId"]
association = ec2.associate_address(AllocationId=eip, InstanceId=iid)["AssociationId"]
ec2.describe_addresses()
ec2.describe_instances(InstanceIds=[iid])
ec2.disassociate_address(AssociationId=association)
ec2.release_address(AllocationId=eip)
ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
ec2.get_waiter("volume_in_use").wait(VolumeIds=[vol], WaiterConfig=FAST)
ec2.describe_volumes(VolumeIds=[vol])
ec2.detach_volume(VolumeId=vol)
ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST)
ec2.get_console_output(InstanceId=iid)
ec2.reboot_instances(InstanceIds=[iid])
ec2.stop_instances(InstanceIds=[iid])
ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
ec2.start_instances(InstanceIds=[iid])
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
image2 = ec2.create_image(InstanceId=iid, Name="model-2")["ImageId"]
ec2.get_waiter("image_available").wait(ImageIds=[image2], WaiterConfig=FAST)
ec2.terminate_instances(InstanceIds=[iid])
ec2.deregister_image(ImageId=image2)
ec2.deregister_image(ImageId=ami)
ec2.delete_snapshot(SnapshotId=copy)
ec2.delete_volume(VolumeId=vol)
ec2.delete_key_pair(KeyName="model")
ec2.get_ebs_encryption_by_default()
ec2.get_ebs_default_kms_key_id()
ec2.enable_ebs_encryption_by_default()
encrypted = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
ec2.describe_volumes(VolumeIds=[encrypted])
ec2.disable_ebs_encryption_by_default()
ec2.modify_ebs_default_kms_key_id(KmsKeyId="alias/aws/ebs")
ec2.reset_ebs_default_kms_key_id()
ec2.delete_volume(VolumeId=encrypted)
offers = ec2.describe_reserved_instances_offerings(InstanceType="t3.micro", OfferingType="Partial Upfront",
                                                   OfferingClass="standard", MaxResults=5)
assert offers["ReservedInstancesOfferings"] and "NextToken" in offers, offers
ri = ec2.purchase_reserved_instances_offering(
    ReservedInstancesOfferingId=offers["ReservedInstancesOfferings"][0]["ReservedInstancesOfferingId"],
    InstanceCount=1)["ReservedInstancesId"]
ec2.describe_reserved_instances(ReservedInstancesIds=[ri])
ec2.describe_spot_price_history(InstanceTypes=["m5.large"], MaxResults=5)

served = {
    "CreateVolume", "DescribeVolumes", "DeleteVolume", "AttachVolume", "DetachVolume",
    "CreateTags", "DeleteTags", "DescribeTags", "DescribeAvailabilityZones", "DescribeRegions",
    "DescribeAccountAttributes", "ModifyVolume", "DescribeVolumesModifications",
    "DescribeVolumeStatus", "CreateSnapshot", "DescribeSnapshots", "DeleteSnapshot",
    "CopySnapshot", "EnableFastSnapshotRestores", "DisableFastSnapshotRestores",
    "DescribeFastSnapshotRestores", "RegisterImage", "DescribeImages", "DeregisterImage",
    "CreateImage", "RunInstances", "DescribeInstances", "StartInstances", "StopInstances",
    "RebootInstances", "TerminateInstances", "GetConsoleOutput", "DescribeInstanceTypes",
    "DescribeInstanceStatus", "DescribeInstanceAttribute", "ModifyInstanceAttribute",
    "DescribeVpcs", "DescribeSubnets", "DescribeSecurityGroups",
    "DescribeVolumeAttribute", "ModifyVolumeAttribute", "EnableVolumeIO",
    "CreateKeyPair", "ImportKeyPair", "DescribeKeyPairs", "DeleteKeyPair", "AllocateAddress",
    "AssociateAddress", "DisassociateAddress", "ReleaseAddress", "DescribeAddresses",
    "ModifyInstanceMetadataOptions", "EnableEbsEncryptionByDefault",
    "DisableEbsEncryptionByDefault", "GetEbsEncryptionByDefault", "GetEbsDefaultKmsKeyId",
    "ModifyEbsDefaultKmsKeyId", "ResetEbsDefaultKmsKeyId",
    "DescribeReservedInstancesOfferings", "PurchaseReservedInstancesOffering",
    "DescribeReservedInstances", "DescribeSpotPriceHistory",
}
assert served <= set(raw), f"not driven: {sorted(served - set(raw))}"


def tag(e):
    return e.tag.split("}", 1)[-1]


def xml_name(name, shape):
    return shape.serialization.get("name", name)


outside = []
lacking = []   # answers without a member AWS always returns
missing = defaultdict(set)   # shape name -> members never seen in any answer
present = defaultdict(set)
shapes_of = defaultdict(set)   # operation -> structure shapes its answers hold


def walk(op, path, elem, shape):
    if shape.type_name == "structure":
        by_xml = {xml_name(n, m): (n, m) for n, m in shape.members.items()}
        seen = set()
        for child in elem:
            name = tag(child)
            if name not in by_xml:
                outside.append(f"{op}: {path}/{name} is not a member of {shape.name}")
                continue
            member, mshape = by_xml[name]
            seen.add(member)
            walk(op, f"{path}/{name}", child, mshape)
        present[shape.name] |= seen
        missing[shape.name] |= set(shape.members) - seen
        shapes_of[op].add(shape.name)
        if shape.name in ALWAYS:
            for member in ALWAYS[shape.name][0]:
                if member not in seen:
                    lacking.append(f"{op}: {path} ({shape.name}) lacks {member}")
    elif shape.type_name == "list":
        item = shape.member.serialization.get("name", "item")
        for child in elem:
            if tag(child) != item:
                outside.append(f"{op}: {path}/{tag(child)} in a list of {item}")
                continue
            walk(op, f"{path}/{item}", child, shape.member)
    elif shape.type_name == "map":
        pass
    elif len(elem):
        outside.append(f"{op}: {path} holds elements but is a {shape.type_name}")


for op, bodies in sorted(raw.items()):
    out = model.operation_model(op).output_shape
    for body in bodies:
        root = ET.fromstring(body)
        # EC2 answers the operations without output members with <return>true</return>.
        for child in list(root):
            if tag(child) == "requestId" or (tag(child) == "return" and out is None):
                root.remove(child)
        if out is None:
            for child in root:
                outside.append(f"{op}: /{tag(child)} is not a member of its output")
            continue
        walk(op, "", root, out)
    if out is not None:
        # A paging token is there only when more pages are.
        missing[out.name].discard("NextToken")

# The measure: members of each shape seen that no answer carried.
never = {s: sorted(missing[s] - present[s]) for s in missing}
total = sum(len(v) for v in never.values())
print(f"operations driven: {len(raw)}; shapes seen: {len(never)}; members never returned: {total}")
for s in sorted(never):
    if never[s]:
        print(f"  {s} ({len(never[s])}): {', '.join(never[s])}")
complete = sorted(op for op in raw if not any(never.get(s) for s in shapes_of[op]))
print(f"operations whose answers carry every member of the model: {len(complete)} of {len(raw)}")
print("  " + ", ".join(complete))
unseen = sorted(set(ALWAYS) - set(missing))
if unseen:
    print(f"ALWAYS-RETURNED SHAPES NO ANSWER HELD: {unseen}")
if outside:
    print("ELEMENTS OUTSIDE THE MODEL:")
    for line in outside:
        print("  " + line)
if lacking:
    print("MEMBERS AWS ALWAYS RETURNS, MISSING:")
    for line in lacking:
        print("  " + line)
if "--report" not in sys.argv:
    assert not outside, f"{len(outside)} elements outside the model"
    assert not lacking, f"{len(lacking)} always-returned members missing"
    assert not unseen, f"the check drove no answer holding {unseen}"
print("model check ok")
