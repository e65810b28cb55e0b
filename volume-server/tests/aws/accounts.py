"""Two accounts on one endpoint through boto3 (tests/aws_endpoint.rs): each sees only its own
volumes, snapshots, images and instances; every call naming the other's resource fails with the
NotFound code botocore parses, as for an id that does not exist, and changes nothing; calls of
both accounts race on the same resources without one ever reaching the other's.

The keys are ACCESS:SECRET:ACCOUNT; with --local, the server has no credentials file and the
key ids are the 12-digit account ids themselves.

usage: accounts.py ENDPOINT ALICE_KEY BOB_KEY
"""
import base64
import hashlib
import sys
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ec2util import fails

endpoint = sys.argv[1]
keys = [k.split(":") for k in sys.argv[2:4]]
AZ = "us-east-1a"
config = Config(retries={"max_attempts": 1})
FAST = {"Delay": 1, "MaxAttempts": 120}


def clients(access, secret):
    s = boto3.session.Session(
        aws_access_key_id=access, aws_secret_access_key=secret, region_name="us-east-1"
    )
    return (
        s.client("ec2", endpoint_url=endpoint, config=config),
        s.client("ebs", endpoint_url=endpoint, config=config),
        s.client("sts", endpoint_url=endpoint, config=config),
    )


(a_ec2, a_ebs, a_sts), (b_ec2, b_ebs, b_sts) = (clients(k[0], k[1]) for k in keys)
alice, bob = keys[0][2], keys[1][2]
assert a_sts.get_caller_identity()["Account"] == alice
assert b_sts.get_caller_identity()["Account"] == bob


def volume_ids(ec2):
    pages = ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5})
    return {v["VolumeId"] for p in pages for v in p["Volumes"]}


# Volumes, with one client token used by both accounts: two volumes, one each.
va = a_ec2.create_volume(AvailabilityZone=AZ, Size=1, ClientToken="shared-token")["VolumeId"]
vb = b_ec2.create_volume(AvailabilityZone=AZ, Size=1, ClientToken="shared-token")["VolumeId"]
assert va != vb
a_ec2.get_waiter("volume_available").wait(VolumeIds=[va], WaiterConfig=FAST)
assert volume_ids(a_ec2) == {va}, volume_ids(a_ec2)
assert volume_ids(b_ec2) == {vb}, volume_ids(b_ec2)

NF = "InvalidVolume.NotFound"
fails(NF, b_ec2.describe_volumes, VolumeIds=[va])
fails(NF, b_ec2.delete_volume, VolumeId=va)
fails(NF, b_ec2.modify_volume, VolumeId=va, Size=2)
fails(NF, b_ec2.create_snapshot, VolumeId=va)
fails(NF, b_ec2.describe_volume_status, VolumeIds=[va])
fails(NF, b_ec2.describe_volumes_modifications, VolumeIds=[va])
fails(NF, b_ec2.create_tags, Resources=[vb, va], Tags=[{"Key": "k", "Value": "v"}])
assert "Tags" not in b_ec2.describe_volumes(VolumeIds=[vb])["Volumes"][0], "all or nothing"
# Filtering by another's id finds nothing, not an error.
assert b_ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [va]}])["Volumes"] == []

# Snapshots: OwnerId is the owner's account; Owner filters name accounts.
snap = a_ec2.create_snapshot(VolumeId=va)
assert snap["OwnerId"] == alice, snap
sid = snap["SnapshotId"]
a_ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
assert [s["SnapshotId"] for s in a_ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]] == [sid]
assert len(a_ec2.describe_snapshots(OwnerIds=[alice])["Snapshots"]) == 1
assert b_ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []
assert b_ec2.describe_snapshots(OwnerIds=[alice])["Snapshots"] == []
assert b_ec2.describe_snapshots()["Snapshots"] == []
SNF = "InvalidSnapshot.NotFound"
fails(SNF, b_ec2.describe_snapshots, SnapshotIds=[sid])
fails(SNF, b_ec2.delete_snapshot, SnapshotId=sid)
fails(SNF, b_ec2.copy_snapshot, SourceRegion="us-east-1", SourceSnapshotId=sid)
fails(SNF, b_ec2.create_volume, AvailabilityZone=AZ, SnapshotId=sid)
r = b_ec2.enable_fast_snapshot_restores(AvailabilityZones=[AZ], SourceSnapshotIds=[sid])
assert r["Successful"] == [], r
assert r["Unsuccessful"][0]["FastSnapshotRestoreStateErrors"][0]["Error"]["Code"] == SNF, r
ok = a_ec2.enable_fast_snapshot_restores(AvailabilityZones=[AZ], SourceSnapshotIds=[sid])
assert ok["Successful"][0]["OwnerId"] == alice, ok
assert len(a_ec2.describe_fast_snapshot_restores()["FastSnapshotRestores"]) == 1
assert b_ec2.describe_fast_snapshot_restores()["FastSnapshotRestores"] == []
a_ec2.disable_fast_snapshot_restores(AvailabilityZones=[AZ], SourceSnapshotIds=[sid])

# The EBS direct APIs: another's snapshot is ResourceNotFoundException.
RNF = "ResourceNotFoundException"
fails(RNF, b_ebs.list_snapshot_blocks, SnapshotId=sid)
fails(RNF, b_ebs.list_changed_blocks, SecondSnapshotId=sid)
fails(RNF, b_ebs.start_snapshot, VolumeSize=1, ParentSnapshotId=sid)
up = b_ebs.start_snapshot(VolumeSize=1)
assert up["OwnerId"] == bob, up
data = b"\x5a" * (512 * 1024)
checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
fails(RNF, a_ebs.put_snapshot_block, SnapshotId=up["SnapshotId"], BlockIndex=0, BlockData=data,
      DataLength=len(data), Checksum=checksum, ChecksumAlgorithm="SHA256")
fails(RNF, a_ebs.complete_snapshot, SnapshotId=up["SnapshotId"], ChangedBlocksCount=0)
b_ebs.put_snapshot_block(SnapshotId=up["SnapshotId"], BlockIndex=0, BlockData=data,
                         DataLength=len(data), Checksum=checksum, ChecksumAlgorithm="SHA256")
assert b_ebs.complete_snapshot(SnapshotId=up["SnapshotId"], ChangedBlocksCount=1)["Status"] == "completed"
assert [s["OwnerId"] for s in b_ec2.describe_snapshots()["Snapshots"]] == [bob]

# Images: registered from one's own snapshots; names are per account.
mapping = lambda s: [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": s}}]
fails(SNF, b_ec2.register_image, Name="same-name", RootDeviceName="/dev/xvda",
      BlockDeviceMappings=mapping(sid))
ami = a_ec2.register_image(Name="same-name", RootDeviceName="/dev/xvda",
                           BlockDeviceMappings=mapping(sid))["ImageId"]
ami_b = b_ec2.register_image(Name="same-name", RootDeviceName="/dev/xvda",
                             BlockDeviceMappings=mapping(up["SnapshotId"]))["ImageId"]
image = a_ec2.describe_images(ImageIds=[ami])["Images"][0]
assert image["OwnerId"] == alice, image
assert [i["ImageId"] for i in a_ec2.describe_images(Owners=["self"])["Images"]] == [ami]
assert [i["ImageId"] for i in b_ec2.describe_images()["Images"]] == [ami_b]
assert b_ec2.describe_images(Owners=[alice])["Images"] == []
ANF = "InvalidAMIID.NotFound"
fails(ANF, b_ec2.describe_images, ImageIds=[ami])
fails(ANF, b_ec2.deregister_image, ImageId=ami)
fails(ANF, b_ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")

# Instances: the reservation's OwnerId; another's instance is InvalidInstanceID.NotFound.
res = a_ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                          ClientToken="launch-token")
assert res["OwnerId"] == alice, res
iid = res["Instances"][0]["InstanceId"]
INF = "InvalidInstanceID.NotFound"
fails(INF, b_ec2.describe_instances, InstanceIds=[iid])
fails(INF, b_ec2.stop_instances, InstanceIds=[iid])
fails(INF, b_ec2.terminate_instances, InstanceIds=[iid])
fails(INF, b_ec2.get_console_output, InstanceId=iid)
fails(INF, b_ec2.create_image, InstanceId=iid, Name="stolen")
fails(INF, b_ec2.attach_volume, VolumeId=vb, InstanceId=iid, Device="/dev/sdf")
fails(NF, a_ec2.attach_volume, VolumeId=vb, InstanceId=iid, Device="/dev/sdf")
assert b_ec2.describe_instances()["Reservations"] == []
a_ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
a_ec2.attach_volume(VolumeId=va, InstanceId=iid, Device="/dev/sdf")
fails(NF, b_ec2.detach_volume, VolumeId=va)
# Key pairs: names are per account; another's pair is not found, not usable, not taggable.
KNF = "InvalidKeyPair.NotFound"
ka = a_ec2.create_key_pair(KeyName="same-key", KeyType="ed25519")
kb = b_ec2.create_key_pair(KeyName="same-key", KeyType="ed25519")
assert ka["KeyPairId"] != kb["KeyPairId"]
a_ec2.create_key_pair(KeyName="alice-only", KeyType="ed25519")
assert [k["KeyPairId"] for k in b_ec2.describe_key_pairs()["KeyPairs"]] == [kb["KeyPairId"]]
fails(KNF, b_ec2.describe_key_pairs, KeyPairIds=[ka["KeyPairId"]])
fails(KNF, b_ec2.describe_key_pairs, KeyNames=["alice-only"])
fails(KNF, b_ec2.delete_key_pair, KeyPairId=ka["KeyPairId"])
fails(KNF, b_ec2.create_tags, Resources=[ka["KeyPairId"]], Tags=[{"Key": "k", "Value": "v"}])
fails(KNF, b_ec2.run_instances, ImageId=ami_b, MinCount=1, MaxCount=1, KeyName="alice-only")
b_ec2.delete_key_pair(KeyName="alice-only")  # by name: succeeds, deletes nothing of alice's
a_ec2.create_tags(Resources=[ka["KeyPairId"]], Tags=[{"Key": "k", "Value": "v"}])
shown = a_ec2.describe_key_pairs(KeyPairIds=[ka["KeyPairId"]])["KeyPairs"][0]
assert shown["Tags"] == [{"Key": "k", "Value": "v"}], shown
tags = a_ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])["Tags"]
assert [(t["ResourceId"], t["Key"]) for t in tags] == [(ka["KeyPairId"], "k")], tags
assert b_ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])["Tags"] == []

# Elastic IPs: another's address is not found; another's instance is not a target.
ANF_EIP = "InvalidAllocationID.NotFound"
ea = a_ec2.allocate_address(Domain="vpc")
eb = b_ec2.allocate_address(Domain="vpc")
assert ea["PublicIp"] != eb["PublicIp"]
assert [a["AllocationId"] for a in b_ec2.describe_addresses()["Addresses"]] == [eb["AllocationId"]]
fails(ANF_EIP, b_ec2.describe_addresses, AllocationIds=[ea["AllocationId"]])
fails("InvalidAddress.NotFound", b_ec2.describe_addresses, PublicIps=[ea["PublicIp"]])
fails(ANF_EIP, b_ec2.release_address, AllocationId=ea["AllocationId"])
fails(ANF_EIP, b_ec2.associate_address, AllocationId=ea["AllocationId"], InstanceId=iid)
fails(ANF_EIP, b_ec2.create_tags, Resources=[ea["AllocationId"]], Tags=[{"Key": "k", "Value": "v"}])
fails(INF, b_ec2.associate_address, AllocationId=eb["AllocationId"], InstanceId=iid)
assoc = a_ec2.associate_address(AllocationId=ea["AllocationId"], InstanceId=iid)["AssociationId"]
fails("InvalidAssociationID.NotFound", b_ec2.disassociate_address, AssociationId=assoc)
assert a_ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
    "PublicIpAddress"] == ea["PublicIp"]
a_ec2.create_tags(Resources=[ea["AllocationId"]], Tags=[{"Key": "role", "Value": "front"}])
front = a_ec2.describe_addresses(Filters=[{"Name": "tag:role", "Values": ["front"]}])["Addresses"]
assert [a["AllocationId"] for a in front] == [ea["AllocationId"]], front
b_ec2.release_address(AllocationId=eb["AllocationId"])
# Outside the default VPC, an associated address must be disassociated before release.
vpc = a_ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
subnet = a_ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
in_vpc = a_ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             SubnetId=subnet)["Instances"][0]["InstanceId"]
a_ec2.get_waiter("instance_running").wait(InstanceIds=[in_vpc], WaiterConfig=FAST)
ev = a_ec2.allocate_address(Domain="vpc")["AllocationId"]
a_ec2.associate_address(AllocationId=ev, InstanceId=in_vpc)
fails("InvalidIPAddress.InUse", a_ec2.release_address, AllocationId=ev)
a_ec2.terminate_instances(InstanceIds=[in_vpc])
a_ec2.get_waiter("instance_terminated").wait(InstanceIds=[in_vpc], WaiterConfig=FAST)
a_ec2.release_address(AllocationId=ev)

a_ec2.terminate_instances(InstanceIds=[iid])
a_ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
# Termination lets the address go; it stays allocated.
left = a_ec2.describe_addresses(AllocationIds=[ea["AllocationId"]])["Addresses"][0]
assert "AssociationId" not in left, left
a_ec2.release_address(AllocationId=ea["AllocationId"])

# Races: bob hammers alice's volumes (describe, tag, delete, modify, snapshot) from several
# threads while alice creates, tags and deletes them; bob only ever gets NotFound, and alice's
# calls all succeed.
errors = []
stop = threading.Event()
alice_ids = []
lock = threading.Lock()


def alice_loop():
    try:
        for _ in range(12):
            v = a_ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
            with lock:
                alice_ids.append(v)
            a_ec2.create_tags(Resources=[v], Tags=[{"Key": "owner", "Value": "alice"}])
            a_ec2.get_waiter("volume_available").wait(VolumeIds=[v], WaiterConfig=FAST)
            a_ec2.delete_volume(VolumeId=v)
    except Exception as e:  # noqa: BLE001 - reported below
        errors.append(f"alice: {e!r}")
    finally:
        stop.set()


def bob_loop():
    calls = [
        lambda v: b_ec2.describe_volumes(VolumeIds=[v]),
        lambda v: b_ec2.create_tags(Resources=[v], Tags=[{"Key": "owner", "Value": "bob"}]),
        lambda v: b_ec2.delete_volume(VolumeId=v),
        lambda v: b_ec2.modify_volume(VolumeId=v, Size=3),
        lambda v: b_ec2.create_snapshot(VolumeId=v),
    ]
    n = 0
    while not stop.is_set():
        with lock:
            targets = list(alice_ids[-2:])
        for v in targets:
            try:
                calls[n % len(calls)](v)
                errors.append(f"bob reached {v} with call {n % len(calls)}")
            except ClientError as e:
                if e.response["Error"]["Code"] != NF:
                    errors.append(f"bob: {e.response['Error']}")
            n += 1
        visible = volume_ids(b_ec2)
        if visible != {vb}:
            errors.append(f"bob sees {visible}")


threads = [threading.Thread(target=alice_loop)] + [threading.Thread(target=bob_loop) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors[:5]
assert len(alice_ids) == 12
# Nothing bob did stuck: no tag, no snapshot, no modification of alice's.
assert a_ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": alice_ids}])["Snapshots"] == []
assert volume_ids(a_ec2) == {va}, volume_ids(a_ec2)
print("accounts ok")
