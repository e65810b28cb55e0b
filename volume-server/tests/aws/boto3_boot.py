"""Instances that boot the Debian AMI, driven by boto3, looked at from inside with nsenter.

Usage: boto3_boot.py ENDPOINT AMI_ID METRICS_ADDR

Launches the AMI with a data volume at /dev/sdf and user data; inside: os-release, the hostname
(the private DNS name), nproc and the memory total of the type; mkfs.ext4 and a mount of /dev/sdf;
a volume attached while it runs appears as /dev/sdg and goes on detach;
instance store written before a reboot is still there after it and gone after a stop; the data
volume's file survives stop and start; user data ran once. Then a package is installed inside
(a .deb made here), the instance stopped and imaged, and a new instance of that image has the
package, the file under /etc, and runs its own user data. Last, the private network: two
instances of one subnet talk TCP, the host reaches them, an instance of another VPC does not.
"""
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from ec2util import ec2_client

ENDPOINT, AMI, METRICS = sys.argv[1], sys.argv[2], sys.argv[3]
ec2 = ec2_client(ENDPOINT)
FAST = {"Delay": 1, "MaxAttempts": 60}
TYPE = "m5d.large"  # 2 vCPUs, 8 GiB, one NVMe instance store disk
USER_DATA = """#!/bin/sh
echo "$(date +%s%N)" >> /root/user-data-runs
mknod /tmp/hostdisk b 8 0 2>/dev/null && echo made > /root/mknod || echo refused > /root/mknod
"""


def init_pid(instance_id):
    """PID (on the host) of the instance's PID 1 (the init process whose parent is its leader),
    once it has booted."""
    deadline = time.time() + 30
    while time.time() < deadline:
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if b"__instance-init" in argv and any(
                a.endswith(f"{instance_id}/boot.json".encode()) for a in argv
            ):
                found[int(pid)] = ppid
        inner = [p for p, parent in found.items() if parent in found]
        # Booted: the init makes this when sshd and user data have started.
        if inner and os.path.exists(f"/proc/{inner[0]}/root/run/ebs-init/booted"):
            return inner[0]
        time.sleep(0.1)
    raise AssertionError(f"no init process for {instance_id}")


def inside(instance_id, script, stdin=None):
    """Runs `script` with sh inside the instance (all its namespaces); returns stdout."""
    pid = init_pid(instance_id)
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-a", "--", "/bin/sh", "-c", script],
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, f"inside {instance_id}: {script!r}: {out}"
    return out.stdout.decode()


def wait_inside(instance_id, script, want, timeout=30):
    deadline = time.time() + timeout
    while True:
        got = inside(instance_id, script)
        if want in got or time.time() > deadline:
            assert want in got, f"{script!r}: {got!r} lacks {want!r}"
            return got
        time.sleep(0.2)


def launch(image):
    r = ec2.run_instances(
        ImageId=image,
        InstanceType=TYPE,
        MinCount=1,
        MaxCount=1,
        UserData=USER_DATA,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "VolumeType": "gp3"}}
        ],
    )
    iid = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    return iid


def metric(volume_id, name):
    """A volume's series from the server's /metrics."""
    text = urllib.request.urlopen(f"http://{METRICS}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{volume_id="{volume_id}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} for {volume_id}")


def describe(iid):
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def stop(iid):
    ec2.stop_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)


def start(iid):
    ec2.start_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)


iid = launch(AMI)
# Its instance check passes once its init has booted (`initializing` until then).
ec2.get_waiter("instance_status_ok").wait(InstanceIds=[iid], WaiterConfig=FAST)
me = describe(iid)
assert "Debian GNU/Linux 12" in inside(iid, "cat /etc/os-release")
assert inside(iid, "hostname").strip() == me["PrivateDnsName"], me["PrivateDnsName"]
assert inside(iid, "nproc").strip() == "2"
total = int(inside(iid, "free -b | awk '/^Mem:/ {print $2}'"))
assert total == 8 << 30, total
runs = lambda i: len(inside(i, "cat /root/user-data-runs 2>/dev/null || true").split())
wait_inside(iid, "test -s /root/user-data-runs && echo ran || true", "ran")
# Root inside (user data, run by the init) cannot make device nodes: CAP_MKNOD is out of the
# bounding set of the instance's PID 1 and so of everything it starts.
assert wait_inside(iid, "cat /root/mknod 2>/dev/null || true", "refused")
cap_bnd = int(inside(iid, "awk '/^CapBnd/ {print $2}' /proc/1/status"), 16)
# What the init starts has no signal blocked (so it dies of SIGTERM at shutdown).
assert inside(iid, "awk '/^SigBlk/ {print $2}' /proc/$(pidof -s sshd)/status").strip() == "0" * 16
assert not cap_bnd & (1 << 27) and not cap_bnd & (1 << 16), hex(cap_bnd)
assert runs(iid) == 1

# The data volume, made a filesystem and mounted inside.
assert inside(iid, "readlink /dev/sdf").strip() == "nvme1n1"
inside(iid, "mkfs.ext4 -q /dev/sdf && mkdir -p /data && mount /dev/sdf /data && echo kept > /data/file")
# I/O inside goes through the volume's export: its throttle (gp3, 3,000 IOPS) counts every read
# and makes four parallel streams of 3,000 reads wait.
sdf = next(m["Ebs"]["VolumeId"] for m in me["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf")
ops, waited = metric(sdf, "ebs_volume_read_ops_total"), metric(sdf, "ebs_volume_throttle_wait_seconds_total")
inside(iid, "for i in 0 1 2 3; do dd if=/dev/sdf of=/dev/null bs=4k count=3000 skip=$((i * 60000)) "
            "iflag=direct 2>/dev/null & done; wait")
assert metric(sdf, "ebs_volume_read_ops_total") - ops >= 12000
assert metric(sdf, "ebs_volume_throttle_wait_seconds_total") > waited, "the gp3 limit never held a read"
# Instance store: the type's disk follows the EBS volumes.
store = inside(iid, "ls /dev | grep -c '^nvme[0-9]n1$'").strip()
assert store == "3", inside(iid, "ls -l /dev")
inside(iid, "printf survivor | dd of=/dev/nvme2n1 conv=fsync 2>/dev/null")

# A volume attached to the running instance appears inside (hot plug), and leaves on detach.
zone = me["Placement"]["AvailabilityZone"]
extra = ec2.create_volume(AvailabilityZone=zone, Size=1, VolumeType="gp3")["VolumeId"]
ec2.get_waiter("volume_available").wait(VolumeIds=[extra], WaiterConfig=FAST)
ec2.attach_volume(VolumeId=extra, InstanceId=iid, Device="/dev/sdg")
ec2.get_waiter("volume_in_use").wait(VolumeIds=[extra], WaiterConfig=FAST)
assert inside(iid, "readlink /dev/sdg").strip() == "nvme3n1", inside(iid, "ls -l /dev")
inside(iid, "mkfs.ext4 -q /dev/sdg && mkdir -p /hot && mount /dev/sdg /hot && echo hot > /hot/f && umount /hot")
ec2.detach_volume(VolumeId=extra)
ec2.get_waiter("volume_available").wait(VolumeIds=[extra], WaiterConfig=FAST)
assert inside(iid, "test -e /dev/sdg || test -e /dev/nvme3n1 || echo gone").strip() == "gone"

ec2.reboot_instances(InstanceIds=[iid])
# The new init: the mount of /data is gone, instance store is not.
wait_inside(iid, "mountpoint -q /data && echo mounted || echo unmounted", "unmounted")
assert inside(iid, "head -c 8 /dev/nvme2n1") == "survivor"
assert runs(iid) == 1, "user data ran again on reboot"

stop(iid)
start(iid)
assert inside(iid, "head -c 8 /dev/nvme2n1") == "\0" * 8, "instance store kept across a stop"
assert inside(iid, "mkdir -p /data && mount /dev/sdf /data && cat /data/file") == "kept\n"
assert runs(iid) == 1, "user data ran again on start"

# A package installed inside lands in an image of the instance.
with tempfile.TemporaryDirectory() as tmp:
    os.makedirs(f"{tmp}/pkg/DEBIAN")
    os.makedirs(f"{tmp}/pkg/usr/share/ebs-boot-test")
    with open(f"{tmp}/pkg/DEBIAN/control", "w") as f:
        f.write(
            "Package: ebs-boot-test\nVersion: 1.0\nArchitecture: all\n"
            "Maintainer: ebs <ebs@localhost>\nDescription: boot test package\n"
        )
    with open(f"{tmp}/pkg/usr/share/ebs-boot-test/hello", "w") as f:
        f.write("hello from a package\n")
    subprocess.run(["dpkg-deb", "--build", f"{tmp}/pkg", f"{tmp}/p.deb"], check=True, capture_output=True)
    with open(f"{tmp}/p.deb", "rb") as f:
        deb = f.read()
inside(iid, "cat > /tmp/p.deb && dpkg -i /tmp/p.deb && echo changed > /etc/ebs-boot-test", stdin=deb)
stop(iid)
image = ec2.create_image(InstanceId=iid, Name="debian-with-package")["ImageId"]
ec2.get_waiter("image_available").wait(ImageIds=[image], WaiterConfig=FAST)
child = launch(image)
assert "install ok installed" in inside(child, "dpkg -s ebs-boot-test")
assert inside(child, "cat /usr/share/ebs-boot-test/hello") == "hello from a package\n"
assert inside(child, "cat /etc/ebs-boot-test") == "changed\n"
# Its own user data ran once (the parent's run is in the image too).
wait_inside(child, "wc -l < /root/user-data-runs", "2")

# The private network: instances of one VPC reach each other's sshd on their private
# addresses, the host reaches them through the VPC's bridge, and an instance of another VPC
# whose block overlaps (its own bridge) reaches neither.
def banner(i, address):
    return inside(
        i,
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/22 && head -c 7 <&3' 2>/dev/null || echo unreachable",
    ).strip()


def wait_banner(i, address):
    deadline = time.time() + 30
    while (got := banner(i, address)) != "SSH-2.0" and time.time() < deadline:
        time.sleep(0.5)
    return got


zone = describe(child)["Placement"]["AvailabilityZone"]
peer = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                         Placement={"AvailabilityZone": zone})["Instances"][0]["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[peer], WaiterConfig=FAST)
child_ip, peer_ip = describe(child)["PrivateIpAddress"], describe(peer)["PrivateIpAddress"]
assert describe(child)["SubnetId"] == describe(peer)["SubnetId"]
assert inside(peer, "ip -4 -o addr show eth0").split()[3] == peer_ip + "/20"
assert wait_banner(peer, child_ip) == "SSH-2.0", "no TCP between two instances of one subnet"
host = subprocess.run(
    ["timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{child_ip}/22 && head -c 7 <&3"],
    capture_output=True,
)
assert host.stdout == b"SSH-2.0", f"the host does not reach {child_ip}: {host}"
vpc = ec2.create_vpc(CidrBlock="172.31.0.0/16")["Vpc"]["VpcId"]
sub = ec2.create_subnet(VpcId=vpc, CidrBlock="172.31.64.0/20", AvailabilityZone=zone)["Subnet"]["SubnetId"]
stranger = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                             SubnetId=sub)["Instances"][0]["InstanceId"]
ec2.get_waiter("instance_running").wait(InstanceIds=[stranger], WaiterConfig=FAST)
stranger_ip = describe(stranger)["PrivateIpAddress"]
assert stranger_ip == "172.31.64.4", stranger_ip
assert banner(stranger, child_ip) == "unreachable", "an instance of another VPC got through"
assert banner(child, stranger_ip) == "unreachable", "an instance reached another VPC"
# Nothing leaves the VPC: no default route inside.
assert "default" not in inside(child, "ip route")

ids = [iid, child, peer, stranger]
ec2.terminate_instances(InstanceIds=ids)
ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig=FAST)
ec2.delete_subnet(SubnetId=sub)
ec2.delete_vpc(VpcId=vpc)
print("boot: ok")
