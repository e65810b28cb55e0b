"""Races on one booted instance, driven by boto3 from several threads at once.

Usage: boto3_boot_races.py ENDPOINT AMI_ID DATA_DIR

Each round, on a running booted instance with a data volume at /dev/sdf: StopInstances,
DetachVolume of /dev/sdf, AttachVolume of a new volume at /dev/sdg and RebootInstances, all at
once. Every call either succeeds or fails with an EC2 code that its state allows; then the
instance is stopped, nothing of it is left on the host (no init, nbdfuse or loop device), every
volume is attached or available as DescribeVolumes says, and the next start boots with a node
inside for exactly the volumes attached.
"""
import os
import subprocess
import sys
import threading
import time

from botocore.exceptions import ClientError

from ec2util import ec2_client

ENDPOINT, AMI, DATA = sys.argv[1], sys.argv[2], sys.argv[3]
FAST = {"Delay": 1, "MaxAttempts": 60}
ALLOWED = {"IncorrectInstanceState", "IncorrectState", "InvalidAttachment.NotFound", "VolumeInUse"}


def client():
    return ec2_client(ENDPOINT)


ec2 = client()


def host_leftovers(instance_id):
    """What of the instance still runs or is attached on the host."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace")
        except OSError:
            continue
        if instance_id in argv and ("__instance-init" in argv or "nbdfuse" in argv):
            out.append(argv.replace("\0", " "))
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True, text=True).stdout
    out += [l for l in loops.splitlines() if instance_id in l]
    return out


def booted_nodes(instance_id):
    deadline = time.time() + 60
    while time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read()
                with open(f"/proc/{pid}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
                if b"__instance-init" in argv and instance_id.encode() in argv and os.path.exists(
                    f"/proc/{pid}/root/run/ebs-init/booted"
                ):
                    return sorted(n for n in os.listdir(f"/proc/{pid}/root/dev") if n.startswith("sd") or n.startswith("xvd"))
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"{instance_id} did not boot")


zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
iid = ec2.run_instances(
    ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone},
    BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "DeleteOnTermination": False}}],
)["Instances"][0]["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
sdf = next(m["Ebs"]["VolumeId"] for m in ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf")

for round_ in range(3):
    assert booted_nodes(iid)  # booted before the race
    extra = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[extra], WaiterConfig=FAST)
    attached_sdf = any(a["InstanceId"] == iid for a in ec2.describe_volumes(VolumeIds=[sdf])["Volumes"][0]["Attachments"])
    calls = {
        "stop": lambda c: c.stop_instances(InstanceIds=[iid]),
        "reboot": lambda c: c.reboot_instances(InstanceIds=[iid]),
        "attach": lambda c: c.attach_volume(VolumeId=extra, InstanceId=iid, Device="/dev/sdg"),
    }
    if attached_sdf:
        calls["detach"] = lambda c: c.detach_volume(VolumeId=sdf)
    results, go = {}, threading.Barrier(len(calls))

    def run(name, call):
        c = client()
        go.wait()
        try:
            call(c)
            results[name] = "ok"
        except ClientError as e:
            results[name] = e.response["Error"]["Code"]

    threads = [threading.Thread(target=run, args=(n, f)) for n, f in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == "ok" or r in ALLOWED for r in results.values()), results
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    deadline = time.time() + 20
    while (left := host_leftovers(iid)) and time.time() < deadline:
        time.sleep(0.2)
    assert not left, f"round {round_}: left on the host after the stop: {left} ({results})"
    # Volumes settle: attached ones are in-use on the instance, the rest available.
    for v in (sdf, extra):
        for _ in range(100):
            vol = ec2.describe_volumes(VolumeIds=[v])["Volumes"][0]
            if vol["State"] in ("available", "in-use") and all(a["State"] == "attached" for a in vol["Attachments"]):
                break
            time.sleep(0.1)
        assert vol["State"] in ("available", "in-use"), vol
    devices = sorted(
        a["Device"] for v in ec2.describe_volumes(VolumeIds=[sdf, extra])["Volumes"] for a in v["Attachments"]
    )
    ec2.start_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    inside = booted_nodes(iid)
    want = sorted(d.removeprefix("/dev/") for d in devices)
    assert [n for n in inside if n in ("sdf", "sdg")] == want, (inside, want, results)
    # Put the round's volumes back as they were: sdf attached, sdg gone.
    if "sdg" in want:
        ec2.detach_volume(VolumeId=extra)
        ec2.get_waiter("volume_available").wait(VolumeIds=[extra], WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=extra)
    if "sdf" not in want:
        ec2.attach_volume(VolumeId=sdf, InstanceId=iid, Device="/dev/sdf")
        ec2.get_waiter("volume_in_use").wait(VolumeIds=[sdf], WaiterConfig=FAST)
    print(f"round {round_}: {results}")

ec2.terminate_instances(InstanceIds=[iid])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
print("races: ok")
