"""Everyday EC2 calls through boto3 (tests/aws_endpoint.rs): DescribeRegions,
DescribeAccountAttributes, tags on every resource type with DescribeTags (filters, the
paginator), DeregisterImage with DeleteAssociatedSnapshots, DescribeInstanceStatus with its
waiters, DescribeVolumeStatus and DescribeVolumesModifications through their paginators,
Describe/ModifyVolumeAttribute (autoEnableIO) and EnableVolumeIO, and Describe/ModifyInstanceAttribute (termination protection, the type and user data
while stopped, DeleteOnTermination).

usage: boto3_everyday.py ENDPOINT
"""
import sys
import time

from ec2util import ec2_client, fails

endpoint = sys.argv[1]
AZ = "us-east-1a"
FAST = {"Delay": 1, "MaxAttempts": 120}
ec2 = ec2_client(endpoint)


# Regions: this one, and every region with a snapshot store (the test gives us-west-2 one).
regions = ec2.describe_regions()["Regions"]
assert [r["RegionName"] for r in regions] == ["us-east-1", "us-west-2"], regions
assert regions[0] == {
    "RegionName": "us-east-1",
    "Endpoint": "ec2.us-east-1.amazonaws.com",
    "OptInStatus": "opt-in-not-required",
}, regions[0]
assert [r["RegionName"] for r in ec2.describe_regions(RegionNames=["us-west-2"])["Regions"]] == ["us-west-2"]
only = ec2.describe_regions(Filters=[{"Name": "endpoint", "Values": ["*east*"]}])["Regions"]
assert [r["RegionName"] for r in only] == ["us-east-1"], only
fails("InvalidParameterValue", ec2.describe_regions, RegionNames=["xx-nowhere-1"])
fails("InvalidParameterValue", ec2.describe_regions, Filters=[{"Name": "bogus", "Values": ["x"]}])

# Account attributes, all or by name.
attrs = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
         for a in ec2.describe_account_attributes()["AccountAttributes"]}
assert attrs["supported-platforms"] == ["VPC"], attrs
assert attrs["default-vpc"] == [ec2.describe_vpcs()["Vpcs"][0]["VpcId"]], attrs
assert "max-instances" in attrs, attrs
one = ec2.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
assert [a["AttributeName"] for a in one] == ["default-vpc"], one

# Tags on volumes, snapshots and images; DescribeTags across them.
vol = ec2.create_volume(AvailabilityZone=AZ, Size=1,
                        TagSpecifications=[{"ResourceType": "volume",
                                            "Tags": [{"Key": "Name", "Value": "data"}]}])["VolumeId"]
snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST)
snap2 = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap2], WaiterConfig=FAST)
ec2.create_tags(Resources=[snap, vol], Tags=[{"Key": "team", "Value": "storage"}])
assert ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["Tags"] == [{"Key": "team", "Value": "storage"}]
mapping = lambda s, dev: {"DeviceName": dev, "Ebs": {"SnapshotId": s}}
ami = ec2.register_image(Name="everyday", RootDeviceName="/dev/xvda",
                         BlockDeviceMappings=[mapping(snap, "/dev/xvda"), mapping(snap2, "/dev/xvdb")])["ImageId"]
other = ec2.register_image(Name="sharing", RootDeviceName="/dev/xvda",
                           BlockDeviceMappings=[mapping(snap2, "/dev/xvda")])["ImageId"]
ec2.create_tags(Resources=[ami], Tags=[{"Key": "team", "Value": "images"}, {"Key": "os", "Value": "none"}])
assert {t["Key"] for t in ec2.describe_images(ImageIds=[ami])["Images"][0]["Tags"]} == {"team", "os"}
fails("InvalidID", ec2.create_tags, Resources=["sg-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}])
fails("InvalidSnapshot.NotFound", ec2.create_tags, Resources=["snap-0123456789abcdef0"],
      Tags=[{"Key": "k", "Value": "v"}])

tags = ec2.describe_tags()["Tags"]
assert sorted((t["ResourceType"], t["Key"], t["Value"]) for t in tags) == sorted([
    ("volume", "Name", "data"), ("volume", "team", "storage"),
    ("snapshot", "team", "storage"), ("image", "team", "images"), ("image", "os", "none"),
]), tags
assert {t["ResourceId"] for t in tags} == {vol, snap, ami}
by_type = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["image"]}])["Tags"]
assert {t["Key"] for t in by_type} == {"team", "os"}, by_type
by_key = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]},
                                    {"Name": "value", "Values": ["stor*"]}])["Tags"]
assert {t["ResourceId"] for t in by_key} == {vol, snap}, by_key
by_id = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vol]}])["Tags"]
assert [t["Key"] for t in by_id] == ["Name", "team"], by_id
pages = list(ec2.get_paginator("describe_tags").paginate(PaginationConfig={"PageSize": 5, "MaxItems": 100}))
# Five tags in pages of 5 (the smallest MaxResults EC2 takes), then an empty end.
assert sum(len(p["Tags"]) for p in pages) == 5, pages
fails("InvalidParameterValue", ec2.describe_tags, Filters=[{"Name": "bogus", "Values": ["x"]}])
fails("InvalidParameterValue", ec2.describe_tags, MaxResults=2)

# DeregisterImage with DeleteAssociatedSnapshots: snap goes, snap2 is skipped (another AMI maps it).
r = ec2.deregister_image(ImageId=ami, DeleteAssociatedSnapshots=True)
assert r["Return"] is True, r
assert sorted((d["SnapshotId"], d["ReturnCode"]) for d in r["DeleteSnapshotResults"]) == sorted(
    [(snap, "success"), (snap2, "skipped")]), r
fails("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[ami])
fails("InvalidSnapshot.NotFound", ec2.describe_snapshots, SnapshotIds=[snap])
assert ec2.describe_snapshots(SnapshotIds=[snap2])["Snapshots"][0]["State"] == "completed"
r = ec2.deregister_image(ImageId=other)
assert "DeleteSnapshotResults" not in r or r["DeleteSnapshotResults"] == [], r
assert ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["image"]}])["Tags"] == []

# Instance attributes.
root = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
rsnap = ec2.create_snapshot(VolumeId=root)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[rsnap], WaiterConfig=FAST)
image = ec2.register_image(Name="attrs", RootDeviceName="/dev/xvda",
                           BlockDeviceMappings=[mapping(rsnap, "/dev/xvda")])["ImageId"]
iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                        UserData="#!/bin/sh\nexec sleep 600\n")["Instances"][0]["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
ec2.get_waiter("instance_status_ok").wait(InstanceIds=[iid], WaiterConfig=FAST)
ec2.get_waiter("system_status_ok").wait(InstanceIds=[iid], WaiterConfig=FAST)
status = ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"][0]
assert status["InstanceState"] == {"Code": 16, "Name": "running"}, status
assert status["AvailabilityZone"] == AZ, status
assert status["InstanceStatus"] == {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}, status
assert status["AttachedEbsStatus"]["Status"] == "ok", status
assert [s["InstanceId"] for s in ec2.describe_instance_status()["InstanceStatuses"]] == [iid]
assert ec2.describe_instance_status(
    Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}], IncludeAllInstances=True
)["InstanceStatuses"] == []
fails("InvalidParameterValue", ec2.describe_instance_status, Filters=[{"Name": "bogus", "Values": ["x"]}])
fails("InvalidInstanceID.NotFound", ec2.describe_instance_status, InstanceIds=["i-0123456789abcdef0"])
attr = lambda name: ec2.describe_instance_attribute(InstanceId=iid, Attribute=name)
assert attr("instanceType")["InstanceType"] == {"Value": "t3.micro"}
assert attr("disableApiTermination")["DisableApiTermination"] == {"Value": False}
assert attr("instanceInitiatedShutdownBehavior")["InstanceInitiatedShutdownBehavior"] == {"Value": "stop"}
assert attr("rootDeviceName")["RootDeviceName"] == {"Value": "/dev/xvda"}
bdm = attr("blockDeviceMapping")["BlockDeviceMappings"]
assert [(m["DeviceName"], m["Ebs"]["DeleteOnTermination"]) for m in bdm] == [("/dev/xvda", True)], bdm
root_volume = bdm[0]["Ebs"]["VolumeId"]
assert attr("ebsOptimized")["EbsOptimized"] == {"Value": True}
fails("InvalidParameterValue", ec2.describe_instance_attribute, InstanceId=iid, Attribute="bogus")
fails("InvalidInstanceID.NotFound", ec2.describe_instance_attribute,
      InstanceId="i-0123456789abcdef0", Attribute="instanceType")

ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
assert attr("disableApiTermination")["DisableApiTermination"] == {"Value": True}
fails("OperationNotPermitted", ec2.terminate_instances, InstanceIds=[iid])
fails("IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "t3.small"})
fails("IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, UserData={"Value": b"#!/bin/sh\n"})
fails("InvalidParameterCombination", ec2.modify_instance_attribute, InstanceId=iid,
      DisableApiTermination={"Value": False}, InstanceType={"Value": "t3.small"})
fails("UnsupportedOperation", ec2.modify_instance_attribute, InstanceId=iid, SourceDestCheck={"Value": False})
ec2.modify_instance_attribute(InstanceId=iid, InstanceInitiatedShutdownBehavior={"Value": "terminate"})
assert attr("instanceInitiatedShutdownBehavior")["InstanceInitiatedShutdownBehavior"] == {"Value": "terminate"}
fails("InvalidInstanceAttributeValue", ec2.modify_instance_attribute, InstanceId=iid,
      InstanceInitiatedShutdownBehavior={"Value": "explode"})
ec2.modify_instance_attribute(InstanceId=iid, BlockDeviceMappings=[
    {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": False}}])
bdm = attr("blockDeviceMapping")["BlockDeviceMappings"]
assert bdm[0]["Ebs"]["DeleteOnTermination"] is False, bdm

ec2.stop_instances(InstanceIds=[iid])
ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
assert ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"] == [], "running ones only by default"
stopped = ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"][0]
assert stopped["InstanceState"]["Name"] == "stopped", stopped
assert stopped["InstanceStatus"]["Status"] == "not-applicable", stopped
fails("InvalidInstanceAttributeValue", ec2.modify_instance_attribute, InstanceId=iid,
      InstanceType={"Value": "t9.enormous"})
fails("InvalidInstanceAttributeValue", ec2.modify_instance_attribute, InstanceId=iid,
      InstanceType={"Value": "m5d.large"})  # another instance store
ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.small"})
ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": b"#!/bin/sh\nexec sleep 601\n"})
assert attr("instanceType")["InstanceType"] == {"Value": "t3.small"}
import base64
assert base64.b64decode(attr("userData")["UserData"]["Value"]) == b"#!/bin/sh\nexec sleep 601\n"
ec2.start_instances(InstanceIds=[iid])
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["InstanceType"] == "t3.small"

# DeleteOnTermination=false: the root volume outlives the instance.
ec2.modify_instance_attribute(InstanceId=iid, Attribute="disableApiTermination", Value="false")
ec2.terminate_instances(InstanceIds=[iid])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
ec2.get_waiter("volume_available").wait(VolumeIds=[root_volume], WaiterConfig=FAST)

# DescribeVolumeStatus and DescribeVolumesModifications page and filter.
many = [ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"] for _ in range(7)]
for v in many:
    ec2.modify_volume(VolumeId=v, Size=2)
all_volumes = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
pages = list(ec2.get_paginator("describe_volume_status").paginate(PaginationConfig={"PageSize": 5}))
assert len(pages) >= 2, pages
listed = [s["VolumeId"] for p in pages for s in p["VolumeStatuses"]]
assert sorted(listed) == sorted(all_volumes), (listed, all_volumes)
assert {s["VolumeStatus"]["Status"] for p in pages for s in p["VolumeStatuses"]} == {"ok"}
assert ec2.describe_volume_status(Filters=[{"Name": "volume-status.status", "Values": ["impaired"]}])["VolumeStatuses"] == []
assert len(ec2.describe_volume_status(
    Filters=[{"Name": "volume-status.details-name", "Values": ["io-enabled"]}])["VolumeStatuses"]) == len(all_volumes)
fails("InvalidParameterValue", ec2.describe_volume_status, Filters=[{"Name": "bogus", "Values": ["x"]}])
# Volume attributes and EnableVolumeIO (the volume is healthy: it is a no-op).
attr = ec2.describe_volume_attribute(VolumeId=many[0], Attribute="autoEnableIO")
assert attr["AutoEnableIO"] == {"Value": False} and attr["VolumeId"] == many[0], attr
ec2.modify_volume_attribute(VolumeId=many[0], AutoEnableIO={"Value": True})
assert ec2.describe_volume_attribute(VolumeId=many[0], Attribute="autoEnableIO")["AutoEnableIO"] == {"Value": True}
codes = ec2.describe_volume_attribute(VolumeId=many[0], Attribute="productCodes")
assert codes.get("ProductCodes", []) == [] and "AutoEnableIO" not in codes, codes
ec2.enable_volume_io(VolumeId=many[0])
fails("InvalidParameterValue", ec2.describe_volume_attribute, VolumeId=many[0], Attribute="colour")
fails("InvalidVolume.NotFound", ec2.enable_volume_io, VolumeId="vol-0123456789abcdef0")
# gp2 has no performance check; a volume from a snapshot reports its initialization.
plain = ec2.describe_volume_status(VolumeIds=[many[0]])["VolumeStatuses"][0]
assert plain["VolumeStatus"]["Details"] == [{"Name": "io-enabled", "Status": "passed"},
                                           {"Name": "io-performance", "Status": "not-applicable"}], plain
assert "InitializationStatusDetails" not in plain, plain
restored = ec2.create_volume(AvailabilityZone=AZ, SnapshotId=snap2, VolumeType="gp3",
                             VolumeInitializationRate=100)["VolumeId"]
for _ in range(200):
    st = ec2.describe_volume_status(VolumeIds=[restored])["VolumeStatuses"][0]
    init = st["InitializationStatusDetails"]
    assert init["InitializationType"] == "provisioned-rate" and 0 <= init["Progress"] <= 100, st
    details = dict((d["Name"], d["Status"]) for d in st["VolumeStatus"]["Details"])
    assert details["io-performance"] == "normal", st
    if details["initialization-state"] == "completed":
        assert init["Progress"] == 100 and "EstimatedTimeToCompleteInSeconds" not in init, st
        break
    assert details["initialization-state"] == "initializing" and "EstimatedTimeToCompleteInSeconds" in init, st
    time.sleep(0.05)
else:
    raise AssertionError(f"{restored} never finished initializing: {st}")
ec2.delete_volume(VolumeId=restored)
fails("InvalidParameterCombination", ec2.describe_volume_status, VolumeIds=[many[0]], MaxResults=5)
pages = list(ec2.get_paginator("describe_volumes_modifications").paginate(PaginationConfig={"PageSize": 5}))
assert len(pages) >= 2, pages
mods = [m["VolumeId"] for p in pages for m in p["VolumesModifications"]]
assert sorted(mods) == sorted(many), mods
two = ec2.describe_volumes_modifications(Filters=[{"Name": "target-size", "Values": ["2"]},
                                                  {"Name": "original-size", "Values": ["1"]}])
assert sorted(m["VolumeId"] for m in two["VolumesModifications"]) == sorted(many), two
assert ec2.describe_volumes_modifications(Filters=[{"Name": "target-size", "Values": ["3"]}])["VolumesModifications"] == []
print("everyday ok")
