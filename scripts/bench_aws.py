#!/usr/bin/env python3
"""Control-plane latency and throughput, one run, three servers: DescribeVolumes of N volumes
(default 1,000) through this server's AWS endpoint (boto3), through its gRPC API (the Python
grpcio client, stubs generated from proto/ with grpcio-tools), and through moto's server (boto3).

    python3 scripts/bench_aws.py [--volumes 1000] [--calls 200] [--smoke]

Each call lists every volume (one page: the endpoint caps MaxResults at 500, so no MaxResults is
sent and the whole set comes back, as on gRPC). Reported per target: p50 and p99 latency of a
call, calls per second (one client, sequential), and server CPU per call (user + system of the
server process over the timed calls, from /proc): with a Python client, parsing 1,000 volumes
costs the client more than the server, so CPU per call is the server-side comparison.

Needs: a release build (`cargo build --release`), boto3, grpcio and grpcio-tools, moto[server].
`--smoke` uses 50 volumes and 20 calls (a check of the script, not a measurement).
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn, calls, pid):
    fn()  # warm up (connections, caches)
    lat = []
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    lat.sort()
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        "calls_per_s": calls / wall,
        "server_cpu_ms_per_call": cpu / calls * 1e3,
    }


def grpc_stubs(tmp):
    from grpc_tools import protoc

    out = os.path.join(tmp, "stubs")
    os.makedirs(out)
    proto = os.path.join(ROOT, "proto/proto")
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(proto) for f in fs if f.endswith(".proto")]
    rc = protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
    if rc != 0:
        sys.exit("grpcio-tools could not compile proto/")
    sys.path.insert(0, out)
    from ebs.v1 import ebs_pb2, ebs_pb2_grpc  # noqa: E402

    return ebs_pb2, ebs_pb2_grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--volumes", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.volumes, a.calls = 50, 20
    import boto3
    import grpc

    tmp = tempfile.mkdtemp(prefix="bench-aws-")
    exe = os.path.join(ROOT, "target/release/volume-server")
    server = subprocess.Popen(
        [exe, "--data-dir", os.path.join(tmp, "data"), "--grpc-addr", "127.0.0.1:0",
         "--nbd-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    fields = dict(f.split("=", 1) for f in server.stdout.readline().split()[1:])
    moto_port = free_port()
    moto = subprocess.Popen(["moto_server", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                        region_name="us-east-1")
        ours = session.client("ec2", endpoint_url="http://" + fields["aws"])
        deadline = time.time() + 30
        while True:
            try:
                theirs = session.client("ec2", endpoint_url=f"http://127.0.0.1:{moto_port}")
                theirs.describe_volumes()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        for client in (ours, theirs):
            for i in range(a.volumes):
                client.create_volume(AvailabilityZone="us-east-1a", Size=1, VolumeType="gp3",
                                     TagSpecifications=[{"ResourceType": "volume",
                                                         "Tags": [{"Key": "n", "Value": str(i)}]}])
        pb2, pb2_grpc = grpc_stubs(tmp)
        channel = grpc.insecure_channel(fields["grpc"])
        stub = pb2_grpc.VolumeServiceStub(channel)

        def via_endpoint():
            n = len(ours.describe_volumes()["Volumes"])
            assert n == a.volumes, n

        def via_grpc():
            n = len(stub.DescribeVolumes(pb2.DescribeVolumesRequest()).volumes)
            assert n == a.volumes, n

        def via_moto():
            n = len(theirs.describe_volumes()["Volumes"])
            assert n == a.volumes, n

        results = {
            "endpoint (boto3)": timed(via_endpoint, a.calls, server.pid),
            "gRPC (grpcio)": timed(via_grpc, a.calls, server.pid),
            "moto_server (boto3)": timed(via_moto, a.calls, moto.pid),
        }
        print(f"DescribeVolumes of {a.volumes} volumes, {a.calls} sequential calls each")
        print(f"{'target':<22}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>9}{'server CPU ms/call':>20}")
        for name, r in results.items():
            print(f"{name:<22}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['calls_per_s']:>9.1f}"
                  f"{r['server_cpu_ms_per_call']:>20.2f}")
        e, g, m = (results[k] for k in results)

        def ratio(a, b):
            return f"{a / b:.2f}x" if b > 0 else "n/a (below the CPU clock's resolution)"

        print(f"ratios: moto/endpoint p50 {ratio(m['p50_ms'], e['p50_ms'])}, "
              f"server CPU moto/endpoint {ratio(m['server_cpu_ms_per_call'], e['server_cpu_ms_per_call'])}, "
              f"endpoint/gRPC p50 {ratio(e['p50_ms'], g['p50_ms'])}, "
              f"server CPU endpoint/gRPC {ratio(e['server_cpu_ms_per_call'], g['server_cpu_ms_per_call'])}")
    finally:
        for p in (server, moto):
            p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    main()
