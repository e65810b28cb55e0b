#!/usr/bin/env python3
"""Measures reaching instances (issue 22): key pair generation against ssh-keygen, the
Elastic IP path against the private address, the metadata service, and AssociateAddress.

usage: bench_reach.py ENDPOINT AMI [--rounds N] [--bytes B]

* Key pairs: CreateKeyPair (rsa 2048, ed25519) through boto3, N each, against `ssh-keygen -t`
  making the same keys (a process each), p50s and their ratio.
* The Elastic IP path: one booted instance (t3.micro) with an Elastic IP; a TCP sink (python,
  in the instance's network namespace) takes B bytes from the host, to the Elastic IP (DNAT,
  marked routing) and to the private address (the bridge's plain route; needs the host to
  reach the subnet directly, so run it with no other server's VPC on the host), five times
  each, alternated: MB/s and the machine's CPU seconds per GB (sender and receiver are both
  here, so CPU per byte is the steadier figure), medians and ratios; then 1,000 connections
  (connect, one byte, close) each: connections/s and ratio.
* The metadata service, from the instance's namespace: a v2 session, then N*100 GETs of
  meta-data/instance-id on one keep-alive connection (p50, p99, requests/s), and N*10 with a
  new connection each (what curl does).
  With --server-pid, the server's CPU time per request.
* AssociateAddress: N reassociations between two instances (each rewrites the host's nftables
  table, routes and rules): p50, against DescribeAddresses' p50.

Run as root against a release server started with --nbd-socket.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

p = argparse.ArgumentParser()
p.add_argument("endpoint")
p.add_argument("ami")
p.add_argument("--rounds", type=int, default=20)
p.add_argument("--bytes", type=int, default=1 << 30)
p.add_argument("--server-pid", type=int, help="the server's pid: its CPU per IMDS request")
args = p.parse_args()

ec2 = boto3.session.Session(
    aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
).client("ec2", endpoint_url=args.endpoint, config=Config(retries={"max_attempts": 1}))
FAST = {"Delay": 1, "MaxAttempts": 120}
N = args.rounds


def ms(xs):
    return f"p50 {statistics.median(xs) * 1000:.1f} ms"


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# ---------------------------------------------------------------- key pairs
work = tempfile.mkdtemp()
for key_type, bits in (("rsa", ["-b", "2048"]), ("ed25519", [])):
    ours, theirs = [], []
    for i in range(N):
        name = f"bench-{key_type}-{i}"
        ours.append(timed(lambda: ec2.create_key_pair(KeyName=name, KeyType=key_type)))
        ec2.delete_key_pair(KeyName=name)
        path = f"{work}/{name}"
        theirs.append(timed(lambda: subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, *bits, "-N", "", "-f", path], check=True)))
    print(f"CreateKeyPair {key_type}: {ms(ours)}; ssh-keygen: {ms(theirs)}; "
          f"ratio {statistics.median(theirs) / statistics.median(ours):.2f}")


# ---------------------------------------------------------------- the Elastic IP path
def launch():
    i = ec2.run_instances(ImageId=args.ami, MinCount=1, MaxCount=1,
                          InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    return i


i1, i2 = launch(), launch()
ec2.get_waiter("instance_status_ok").wait(InstanceIds=[i1, i2], WaiterConfig=FAST)
alloc = ec2.allocate_address(Domain="vpc")
eip = alloc["PublicIp"]
ec2.associate_address(AllocationId=alloc["AllocationId"], InstanceId=i1)
private = ec2.describe_instances(InstanceIds=[i1])["Reservations"][0]["Instances"][0][
    "PrivateIpAddress"]

SINK = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        n += len(b)
    c.sendall(str(n).encode())
    c.close()
"""
sink = subprocess.Popen(["ip", "netns", "exec", f"ebs-{i1}", "python3", "-c", SINK],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
assert sink.stdout.readline().strip() == b"ready"


def send(addr, n):
    buf = b"\0" * (1 << 20)
    s = socket.create_connection((addr, 5001), timeout=30)
    left = n
    while left > 0:
        s.sendall(buf[: min(left, len(buf))])
        left -= min(left, len(buf))
    s.shutdown(socket.SHUT_WR)
    got = int(s.recv(64))
    s.close()
    assert got == n, (got, n)


def busy_seconds():
    """CPU time the whole machine has spent busy so far (all cores), in seconds."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def transfer(addr):
    """(MB/s, CPU seconds per GB) of one transfer of B bytes."""
    cpu = busy_seconds()
    t = timed(lambda: send(addr, args.bytes))
    cpu = busy_seconds() - cpu
    return args.bytes / t / 1e6, cpu / (args.bytes / 1e9)


def connections(addr, count=1000):
    t = timed(lambda: [send(addr, 1) for _ in range(count)])
    return count / t


def route_dev(addr):
    out = subprocess.run(["ip", "-j", "route", "get", addr], capture_output=True, text=True)
    return json.loads(out.stdout or "[{}]")[0].get("dev")


# Direct only when the host's route to the private address is the instance's own bridge (the
# one its Elastic IP is routed into), not another VPC's with the same block.
reach_private = subprocess.run(["ip", "route", "get", private], capture_output=True, text=True)
direct = route_dev(private) == route_dev(eip)
if direct:
    # Alternated, so both paths see the same machine: medians of five each.
    runs = {eip: [], private: []}
    for _ in range(5):
        for addr in (eip, private):
            runs[addr].append(transfer(addr))
    med = {a: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for a, rs in runs.items()}
    (e_tp, e_cpu), (p_tp, p_cpu) = med[eip], med[private]
    e_cps, p_cps = connections(eip), connections(private)
    print(f"TCP host->instance, {args.bytes >> 20} MiB x5 each, alternated: Elastic IP "
          f"{e_tp:.0f} MB/s at {e_cpu:.2f} CPU-s/GB, private address {p_tp:.0f} MB/s at "
          f"{p_cpu:.2f} CPU-s/GB; throughput ratio {e_tp / p_tp:.2f}, CPU per GB ratio "
          f"{e_cpu / p_cpu:.2f}")
    print(f"connections/s: Elastic IP {e_cps:.0f}, private address {p_cps:.0f}, "
          f"ratio {e_cps / p_cps:.2f}")
else:
    e_tp, e_cpu = transfer(eip)
    print(f"TCP host->instance: Elastic IP {e_tp:.0f} MB/s at {e_cpu:.2f} CPU-s/GB; the "
          f"private address is not reachable from the host ({reach_private.stdout.strip()})")
sink.kill()

# ---------------------------------------------------------------- the metadata service
IMDS = r"""
import http.client, statistics, sys, time
n = int(sys.argv[1])
c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5)
c.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = c.getresponse().read().decode()
h = {"X-aws-ec2-metadata-token": token}
lat = []
t0 = time.perf_counter()
for _ in range(n * 100):
    t = time.perf_counter()
    c.request("GET", "/latest/meta-data/instance-id", headers=h)
    r = c.getresponse(); r.read(); assert r.status == 200
    lat.append(time.perf_counter() - t)
total = time.perf_counter() - t0
lat.sort()
print(f"IMDS keep-alive: p50 {lat[len(lat)//2]*1e6:.0f} us, p99 {lat[int(len(lat)*0.99)]*1e6:.0f} us, "
      f"{len(lat)/total:.0f} requests/s")
new = []
for _ in range(n * 10):
    t = time.perf_counter()
    c = http.client.HTTPConnection("169.254.169.254", 80, timeout=5)
    c.request("GET", "/latest/meta-data/instance-id", headers=h)
    r = c.getresponse(); r.read(); c.close()
    new.append(time.perf_counter() - t)
print(f"IMDS new connection each: p50 {statistics.median(new)*1e6:.0f} us")
"""
def server_cpu():
    """The server's CPU time so far (user + system), in seconds."""
    with open(f"/proc/{args.server_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


cpu = server_cpu() if args.server_pid else 0
out = subprocess.run(["ip", "netns", "exec", f"ebs-{i1}", "python3", "-c", IMDS, str(N)],
                     capture_output=True, text=True, check=True)
print(out.stdout.strip())
if args.server_pid:
    requests = N * 100 + N * 10 + 1
    print(f"IMDS server CPU: {(server_cpu() - cpu) / requests * 1e6:.0f} us per request")

# ---------------------------------------------------------------- AssociateAddress
assoc, desc = [], []
for k in range(N):
    target = i2 if k % 2 == 0 else i1
    assoc.append(timed(lambda: ec2.associate_address(
        AllocationId=alloc["AllocationId"], InstanceId=target, AllowReassociation=True)))
    desc.append(timed(lambda: ec2.describe_addresses()))
print(f"AssociateAddress: {ms(assoc)}; DescribeAddresses: {ms(desc)}")

ec2.terminate_instances(InstanceIds=[i1, i2])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[i1, i2], WaiterConfig=FAST)
ec2.release_address(AllocationId=alloc["AllocationId"])
sys.exit(0)
