"""The EBS direct APIs through boto3 (tests/aws_endpoint.rs): upload an image block by block
(PutSnapshotBlock with its checksum headers, CompleteSnapshot with the LINEAR aggregate, as
coldsnap computes it), see the snapshot completed through EC2, restore it with CreateVolume and
attach it to INSTANCE; list and read the blocks back. Writes the image to OUTDIR/image.bin and
prints the restored volume's id last.

usage: ebs_direct.py ENDPOINT INSTANCE OUTDIR
"""
import base64
import hashlib
import os
import sys

import boto3
from botocore.exceptions import ClientError

endpoint, instance, outdir = sys.argv[1:4]
BLOCK = 512 * 1024
session = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
)
ebs = session.client("ebs", endpoint_url=endpoint)
ec2 = session.client("ec2", endpoint_url=endpoint)

# 8 blocks (4 MiB) of a 1 GiB volume: 0, 1 and 5 hold data, the rest are zeros and not sent.
image = bytearray(8 * BLOCK)
for i in (0, 1, 5):
    image[i * BLOCK:(i + 1) * BLOCK] = os.urandom(BLOCK)
with open(os.path.join(outdir, "image.bin"), "wb") as f:
    f.write(image)

snap = ebs.start_snapshot(VolumeSize=1, Description="uploaded", Tags=[{"Key": "via", "Value": "ebs"}])
sid = snap["SnapshotId"]
assert snap["Status"] == "pending", snap
assert snap["BlockSize"] == BLOCK, snap
digests = []
for i in (0, 1, 5):
    data = bytes(image[i * BLOCK:(i + 1) * BLOCK])
    digest = hashlib.sha256(data).digest()
    digests.append(digest)
    r = ebs.put_snapshot_block(
        SnapshotId=sid, BlockIndex=i, BlockData=data, DataLength=BLOCK,
        Checksum=base64.b64encode(digest).decode(), ChecksumAlgorithm="SHA256",
    )
    assert r["Checksum"] == base64.b64encode(digest).decode(), r

# A block whose checksum is wrong is refused.
try:
    ebs.put_snapshot_block(
        SnapshotId=sid, BlockIndex=2, BlockData=bytes(BLOCK), DataLength=BLOCK,
        Checksum=base64.b64encode(b"0" * 32).decode(), ChecksumAlgorithm="SHA256",
    )
    raise AssertionError("a block with a wrong checksum was taken")
except ClientError as e:
    assert e.response["Error"]["Code"] == "ValidationException", e.response

aggregate = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
done = ebs.complete_snapshot(
    SnapshotId=sid, ChangedBlocksCount=3, Checksum=aggregate,
    ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR",
)
assert done["Status"] == "completed", done

# An EC2 snapshot like any other.
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid])
s = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
assert s["VolumeSize"] == 1 and s["Description"] == "uploaded", s

blocks = ebs.list_snapshot_blocks(SnapshotId=sid)
assert [b["BlockIndex"] for b in blocks["Blocks"]] == [0, 1, 5], blocks
for b in blocks["Blocks"]:
    got = ebs.get_snapshot_block(SnapshotId=sid, BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"])
    data = got["BlockData"].read()
    i = b["BlockIndex"]
    assert data == bytes(image[i * BLOCK:(i + 1) * BLOCK]), i
    assert got["Checksum"] == base64.b64encode(hashlib.sha256(data).digest()).decode()

try:
    ebs.list_snapshot_blocks(SnapshotId="snap-0123456789abcdef0")
    raise AssertionError("listed a snapshot that does not exist")
except ClientError as e:
    assert e.response["Error"]["Code"] == "ResourceNotFoundException", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response

v = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=sid)
ec2.get_waiter("volume_available").wait(VolumeIds=[v["VolumeId"]])
ec2.attach_volume(VolumeId=v["VolumeId"], InstanceId=instance, Device="/dev/sdf")
print(v["VolumeId"])
