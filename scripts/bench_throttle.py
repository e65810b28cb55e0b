#!/usr/bin/env python3
"""Throttle accuracy: delivered vs provisioned, per EBS type, I/O size and queue depth.

    python3 scripts/bench_throttle.py [--runtime 10]

Starts a release `volume-server`, creates one volume per configuration, and drives it with fio's
nbd engine for --runtime seconds (after a 2 s ramp). The expected rate follows the model: an I/O
of size s counts ceil(s / unit) operations (unit 256 KiB SSD, 1 MiB HDD); expected IOPS =
min(IOPS limit / units, throughput limit / s). Also measures the latency the throttle adds under
the limit: QD1 at 1,000 IOPS on a 3,000 IOPS gp3 volume vs an io2 volume at its maximum.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20

# (label, create-volume args, rw, bs bytes, iodepth, ops limit, bytes limit, unit)
CASES = [
    ("gp3 100 GiB", ["--size", "100", "--volume-type", "gp3"], "randread", 4096, 1, 3000, 125 * MIB, 256 << 10),
    ("gp3 100 GiB", ["--size", "100", "--volume-type", "gp3"], "randread", 4096, 32, 3000, 125 * MIB, 256 << 10),
    ("gp3 100 GiB", ["--size", "100", "--volume-type", "gp3"], "randread", 16384, 32, 3000, 125 * MIB, 256 << 10),
    ("gp3 100 GiB", ["--size", "100", "--volume-type", "gp3"], "randwrite", 256 << 10, 32, 3000, 125 * MIB, 256 << 10),
    ("gp3 100 GiB", ["--size", "100", "--volume-type", "gp3"], "write", 1 << 20, 8, 3000, 125 * MIB, 256 << 10),
    ("io2 100 GiB 10k", ["--size", "100", "--volume-type", "io2", "--iops", "10000"], "randread", 4096, 32, 10000, 2560 * MIB, 256 << 10),
    ("io2 100 GiB 10k", ["--size", "100", "--volume-type", "io2", "--iops", "10000"], "randwrite", 16384, 32, 10000, 2560 * MIB, 256 << 10),
    ("io1 100 GiB 5k", ["--size", "100", "--volume-type", "io1", "--iops", "5000"], "randread", 4096, 32, 5000, 500 * MIB, 256 << 10),
    ("gp2 100 GiB (burst)", ["--size", "100", "--volume-type", "gp2"], "randread", 4096, 32, 3000, 128 * MIB, 256 << 10),
    ("st1 500 GiB", ["--size", "500", "--volume-type", "st1"], "randread", 4096, 32, 500, 122 * MIB, 1 << 20),
    ("st1 500 GiB", ["--size", "500", "--volume-type", "st1"], "read", 1 << 20, 8, 500, int(250 * MIB * 500 / 1024), 1 << 20),
    ("sc1 500 GiB", ["--size", "500", "--volume-type", "sc1"], "read", 1 << 20, 8, 250, int(80 * MIB * 500 / 1024), 1 << 20),
]


def fio(uri, rw, bs, qd, runtime, extra=()):
    cmd = ["fio", "--name=t", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}", f"--bs={bs}",
           f"--iodepth={qd}", "--size=4g", "--time_based=1", f"--runtime={runtime}", "--ramp_time=2",
           "--norandommap=1", "--output-format=json", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out[out.index("{"):])["jobs"][0]
    return j["read"] if "read" in rw else j["write"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", type=int, default=10)
    args = ap.parse_args()
    exe = os.path.join(ROOT, "target", "release", "volume-server")
    ctl = os.path.join(ROOT, "target", "release", "ebsctl")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="ebs-throttle-") as tmp:
        proc = subprocess.Popen([exe, "--data-dir", tmp, "--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
                                 "--metrics-addr", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            grpc = proc.stdout.readline().split("grpc=")[1].split()[0]

            def ctl_json(*a):
                r = subprocess.run([ctl, "--endpoint", f"http://{grpc}", *a], check=True, capture_output=True, text=True)
                return json.loads(r.stdout)

            host = ctl_json("register-host", "--name", "bench", "--availability-zone", "us-east-1a")["InstanceId"]
            dev = iter(f"/dev/sd{c}" for c in "fghijklmnopqrstuvwxyz")

            def attach(create_args):
                vol = ctl_json("create-volume", "--availability-zone", "us-east-1a", *create_args)["VolumeId"]
                return ctl_json("attach-volume", "--volume-id", vol, "--instance-id", host, "--device", next(dev))["NbdUri"]

            print(f"fio nbd engine, {args.runtime} s per job after a 2 s ramp\n")
            print("| volume | job | expected | delivered | delivered / expected |")
            print("|---|---|---:|---:|---:|")
            for label, create, rw, bs, qd, ops, byts, unit in CASES:
                uri = attach(create)
                r = fio(uri, rw, bs, qd, args.runtime)
                units = 1 if rw in ("read", "write") and bs < unit else math.ceil(bs / unit)
                # Sequential I/O smaller than a unit merges: ops counted = bytes / unit.
                per_io_ops = (bs / unit) if rw in ("read", "write") and bs < unit else units
                expected = min(ops / per_io_ops, byts / bs)
                got = r["iops"]
                name = f"{'4k' if bs == 4096 else f'{bs >> 10}k' if bs < MIB else f'{bs >> 20}M'} {rw} QD{qd}"
                if bs >= MIB:
                    print(f"| {label} | {name} | {expected * bs / MIB:,.1f} MiB/s | {got * bs / MIB:,.1f} MiB/s | {got / expected:.3f} |")
                else:
                    print(f"| {label} | {name} | {expected:,.0f} IOPS | {got:,.0f} IOPS | {got / expected:.3f} |")
                sys.stdout.flush()
            print("\nLatency added under the limit: 4k randread QD1 at 1,000 IOPS (fio --rate_iops)\n")
            print("| volume | p50 µs | p99 µs |")
            print("|---|---:|---:|")
            for label, create in (("io2 256 GiB at 256,000 IOPS (never binds)", ["--size", "256", "--volume-type", "io2", "--iops", "256000"]),
                                  ("gp3 100 GiB at 3,000 IOPS", ["--size", "100", "--volume-type", "gp3"])):
                uri = attach(create)
                r = fio(uri, "randread", 4096, 1, args.runtime, ("--rate_iops=1000",))
                pct = r["clat_ns"]["percentile"]
                print(f"| {label} | {pct['50.000000'] / 1000:,.1f} | {pct['99.000000'] / 1000:,.1f} |")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
