#!/usr/bin/env python3
"""Measures booted instances of the Debian AMI (issue 21): boot time, memory per instance, and
I/O inside an instance against fio on the host through NBD.

usage: bench_instances.py ENDPOINT AMI [--boots N] [--seconds S]

* Boot: N instances (t3.micro) launched one after another; each is timed from the RunInstances
  call to its init running inside its root volume (pivoted), and to its having booted
  (/run/ebs-init/booted inside: host keys made at first boot, sshd and user data started).
  Prints p50 and the spread.
* Memory: with the N instances running, each one's cgroup (memory.usage_in_bytes: its processes
  and the page cache they caused) and the resident memory of its nbdfuse helper on the host.
* I/O: an io2 volume (100 GiB, 50,000 IOPS) as /dev/sdf of an m5.24xlarge (its cap, 80,000
  IOPS, above the volume's): fio inside the instance's PID, network, UTS and IPC namespaces and
  its cgroups, on its /dev/sdf; then the same volume on a registered host, fio's nbd engine on
  its export. 4 KiB random reads at queue depth 32 and 1 MiB sequential reads at depth 8, S
  seconds each. Prints both and their ratio.

Run as root against a release server started with --nbd-socket.
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import boto3
from botocore.config import Config

p = argparse.ArgumentParser()
p.add_argument("endpoint")
p.add_argument("ami")
p.add_argument("--boots", type=int, default=10)
p.add_argument("--seconds", type=int, default=10)
args = p.parse_args()

ec2 = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
).client("ec2", endpoint_url=args.endpoint, config=Config(retries={"max_attempts": 1}))
FAST = {"Delay": 1, "MaxAttempts": 120}


def leader_and_init(instance_id):
    """(leader pid, init pid) of a booted instance, once its init exists."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if b"__instance-init" in argv and any(a.endswith(f"{instance_id}/boot.json".encode()) for a in argv):
            found[int(pid)] = ppid
    for pid, parent in found.items():
        if parent in found:
            return parent, pid
    return None, None


def wait_booted(instance_id, timeout=60, t0=None, started=None):
    """Waits until the instance has booted; returns its init's pid. With `t0`, appends to
    `started` when its init first ran inside its root."""
    deadline = time.time() + timeout
    seen = False
    while time.time() < deadline:
        _, init = leader_and_init(instance_id)
        if init and not seen and t0 is not None:
            try:
                # Its root is the root volume's filesystem, not the host's: it has pivoted.
                if os.stat(f"/proc/{init}/root").st_dev != os.stat("/").st_dev:
                    seen = True
                    started.append(time.monotonic() - t0)
            except OSError:
                pass
        if init and os.path.exists(f"/proc/{init}/root/run/ebs-init/booted"):
            return init
        time.sleep(0.002)
    raise SystemExit(f"{instance_id} did not boot in {timeout} s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- boot time
boots, started, ids = [], [], []
for _ in range(args.boots):
    t0 = time.monotonic()
    iid = ec2.run_instances(ImageId=args.ami, InstanceType="t3.micro", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    wait_booted(iid, t0=t0, started=started)
    boots.append(time.monotonic() - t0)
    ids.append(iid)


def spread(name, xs):
    ms = sorted(x * 1000 for x in xs)
    print(f"{name}, {len(ms)} instances: p50 {statistics.median(ms):.0f} ms, "
          f"min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms")


spread("RunInstances to the init running in its root", started)
spread("RunInstances to booted (sshd and user data started)", boots)

# --- memory per running instance (after a moment, so first-boot key generation is done)
time.sleep(3)
cg, helpers = [], []
for iid in ids:
    for root in ("/sys/fs/cgroup/memory/ebs-instances", "/sys/fs/cgroup/ebs-instances"):
        for name in ("memory.usage_in_bytes", "memory.current"):
            path = f"{root}/{iid}/{name}"
            if os.path.exists(path):
                with open(path) as f:
                    cg.append(int(f.read()) / 2**20)
    out = subprocess.run(["pgrep", "-f", f"nbdfuse .*{iid}/disks/"], capture_output=True, text=True)
    helpers.append(sum(rss_kib(int(p)) for p in out.stdout.split()) / 1024)
if cg:
    print(f"memory per instance: cgroup p50 {statistics.median(cg):.1f} MiB "
          f"(min {min(cg):.1f}, max {max(cg):.1f}); nbdfuse RSS on the host p50 {statistics.median(helpers):.1f} MiB")
else:
    print(f"memory per instance: no cgroup found; nbdfuse RSS p50 {statistics.median(helpers):.1f} MiB")
ec2.terminate_instances(InstanceIds=ids)
ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=FAST)


# --- I/O inside an instance against fio through NBD
def fio(target_args, rw, bs, depth, wrapper=()):
    cmd = list(wrapper) + [
        "fio", "--name=b", f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}", "--direct=1",
        "--time_based", f"--runtime={args.seconds}", "--ramp_time=2", "--size=8g",
        "--output-format=json",
    ] + target_args
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]["read"]
    return job["iops"], job["bw_bytes"] / 2**20


zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
vol = ec2.create_volume(AvailabilityZone=zone, Size=100, VolumeType="io2", Iops=50000)["VolumeId"]
ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST)
# Written once so that reads hit data, not holes.
iid = ec2.run_instances(ImageId=args.ami, InstanceType="m5.24xlarge", MinCount=1, MaxCount=1,
                        Placement={"AvailabilityZone": zone})["Instances"][0]["InstanceId"]
init = wait_booted(iid)
ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
ec2.get_waiter("volume_in_use").wait(VolumeIds=[vol], WaiterConfig=FAST)
dev = f"/proc/{init}/root/dev/sdf"
deadline = time.time() + 10
while not os.path.exists(dev) and time.time() < deadline:
    time.sleep(0.05)
subprocess.run(["fio", "--name=fill", "--rw=write", "--bs=1m", "--iodepth=8", "--direct=1",
                "--ioengine=libaio", "--size=8g", f"--filename={dev}"], capture_output=True, check=True)
cgroups = [f"{root}/{iid}/cgroup.procs" for root in
           ("/sys/fs/cgroup/cpu/ebs-instances", "/sys/fs/cgroup/memory/ebs-instances", "/sys/fs/cgroup/ebs-instances")
           if os.path.exists(f"{root}/{iid}/cgroup.procs")]
join = "".join(f"echo $$ > {c}; " for c in cgroups)
inside = ("nsenter", "-t", str(init), "-p", "-n", "-u", "-i", "--", "sh", "-c", join + 'exec "$@"', "sh")
loop_target = ["--ioengine=libaio", f"--filename={dev}"]
in_rand = fio(loop_target, "randread", "4k", 32, inside)
in_seq = fio(loop_target, "read", "1m", 8, inside)
ec2.terminate_instances(InstanceIds=[iid])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST)

# The same volume through NBD from the host: a registered host, over gRPC's RegisterHost (the
# CLI `ebsctl register-host`), is what fio's nbd engine attaches as.
ebsctl = os.environ.get("EBSCTL", "ebsctl")
grpc = os.environ["EBS_ENDPOINT"]
host = json.loads(subprocess.run([ebsctl, "--endpoint", grpc, "--output", "json", "register-host",
                                  "--name", "bench", "--availability-zone", zone],
                                 capture_output=True, text=True, check=True).stdout)
hid = host.get("InstanceId") or host["Host"]["InstanceId"]
att = json.loads(subprocess.run([ebsctl, "--endpoint", grpc, "--output", "json", "attach-volume",
                                 "--volume-id", vol, "--instance-id", hid, "--device", "/dev/sdf"],
                                capture_output=True, text=True, check=True).stdout)
uri = att.get("NbdUri") or att["Attachment"]["NbdUri"]
nbd_target = ["--ioengine=nbd", f"--uri={uri}"]
out_rand = fio(nbd_target, "randread", "4k", 32)
out_seq = fio(nbd_target, "read", "1m", 8)
subprocess.run([ebsctl, "--endpoint", grpc, "detach-volume", "--volume-id", vol], capture_output=True)
ec2.delete_volume(VolumeId=vol)

print(f"4 KiB random reads, QD32: inside {in_rand[0]:.0f} IOPS, host fio nbd {out_rand[0]:.0f} IOPS, "
      f"ratio {in_rand[0] / out_rand[0]:.2f}")
print(f"1 MiB sequential reads, QD8: inside {in_seq[1]:.0f} MiB/s, host fio nbd {out_seq[1]:.0f} MiB/s, "
      f"ratio {in_seq[1] / out_seq[1]:.2f}")
