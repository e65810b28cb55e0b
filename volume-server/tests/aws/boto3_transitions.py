"""EC2's transitional states through boto3 and its waiters (tests/aws_endpoint.rs), against a
server whose --transition-time is long enough to poll through: CreateVolume answers
`creating` and the volume_available waiter waits it out; AttachVolume answers `attaching`
(the volume is `in-use` at once) and the attachment becomes `attached`; DetachVolume answers
`detaching`, the volume stays `in-use` with the attachment `detaching`, then the
volume_available waiter sees it `available`. Each state is seen by polling, as a script on AWS
would see it.

usage: boto3_transitions.py ENDPOINT INSTANCE_ID TRANSITION_SECONDS
"""
import sys
import time

import boto3
from botocore.config import Config

endpoint, host, transition = sys.argv[1], sys.argv[2], float(sys.argv[3])
AZ = "us-east-1a"
WAIT = {"Delay": 0.2, "MaxAttempts": int(transition * 20) + 20}
ec2 = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
).client("ec2", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


def seen(poll, states, limit):
    """The states `poll()` goes through, each once, until it returns the last of `states`."""
    got = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        s = poll()
        if not got or got[-1] != s:
            got.append(s)
        if s == states[-1]:
            return got
        time.sleep(0.05)
    raise AssertionError(f"still {got} after {limit} s; expected {states}")


def volume(vid):
    return ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]


# creating → available.
started = time.monotonic()
v = ec2.create_volume(AvailabilityZone=AZ, Size=1)
vid = v["VolumeId"]
assert v["State"] == "creating", v
states = seen(lambda: volume(vid)["State"], ["creating", "available"], transition * 5)
assert states == ["creating", "available"], states
assert time.monotonic() - started >= transition * 0.9, "available before the transition time"
# A waiter started on a fresh volume waits through `creating`.
w = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
assert volume(w)["State"] == "creating"
ec2.get_waiter("volume_available").wait(VolumeIds=[w], WaiterConfig=WAIT)
assert volume(w)["State"] == "available"
# The creating state is also what a status filter sees.
fresh = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
creating = ec2.describe_volumes(Filters=[{"Name": "status", "Values": ["creating"]}])["Volumes"]
assert fresh in [c["VolumeId"] for c in creating], creating

# attaching → attached, the volume in-use throughout.
a = ec2.attach_volume(VolumeId=vid, InstanceId=host, Device="/dev/sdf")
assert a["State"] == "attaching", a
assert volume(vid)["State"] == "in-use"
ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=WAIT)
states = seen(lambda: volume(vid)["Attachments"][0]["State"], ["attaching", "attached"], transition * 5)
assert states == ["attaching", "attached"], states

# detaching (volume in-use) → available, no attachment.
d = ec2.detach_volume(VolumeId=vid)
assert d["State"] == "detaching", d
shown = volume(vid)
assert shown["State"] == "in-use" and shown["Attachments"][0]["State"] == "detaching", shown
ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
assert volume(vid)["Attachments"] == []
for x in (vid, w, fresh):
    ec2.delete_volume(VolumeId=x)
print("transitions ok")
