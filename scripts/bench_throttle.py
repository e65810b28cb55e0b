#!/usr/bin/env python3
"""Throttle accuracy: delivered vs provisioned, per EBS type, I/O size and queue depth.

    python3 scripts/bench_throttle.py [--runtime 10]

Starts a release `volume-server`, creates one volume per type, and drives each with fio's nbd
engine (random reads of 4 KiB / 16 KiB / 256 KiB / 1 MiB at QD1 and QD32) for --runtime seconds
after a 2 s ramp. The expected rate follows the model: a random I/O of size s counts
ceil(s / unit) operations (unit 256 KiB SSD, 1 MiB HDD); expected IOPS = min(IOPS limit / ops
per I/O, throughput limit / bytes per I/O), where an I/O spends s bytes of throughput, except on
st1 and sc1, whose every operation spends a whole 1 MiB I/O token (ops per I/O × 1 MiB). QD1 rows whose round trip alone is slower than the limit are
marked latency-bound. Also measures the latency the throttle adds under
the limit: QD1 at 1,000 IOPS on a 3,000 IOPS gp3 volume vs an io2 volume at its maximum.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20

KIB = 1 << 10
SSD, HDD = 256 * KIB, MIB
# (label, create-volume args, IOPS limit, throughput limit bytes/s, unit): the EBS model of
# `EBS-REFERENCE.md` §1 for each type, as this server implements it.
# st1 and sc1 spend their throughput in whole 1 MiB I/O tokens (AWS Knowledge Center, "Why
# isn't my SC1 or ST1 EBS volume achieving the rated throughput performance?").
TOKENS = ("st1", "sc1")
VOLUMES = [
    ("gp2 100 GiB (bursting)", ["--size", "100", "--volume-type", "gp2"], 3000, 128 * MIB, SSD),
    ("gp3 100 GiB", ["--size", "100", "--volume-type", "gp3"], 3000, 125 * MIB, SSD),
    ("io1 100 GiB, 5,000 IOPS", ["--size", "100", "--volume-type", "io1", "--iops", "5000"], 5000, 500 * MIB, SSD),
    ("io2 100 GiB, 10,000 IOPS", ["--size", "100", "--volume-type", "io2", "--iops", "10000"], 10000, 2560 * MIB, SSD),
    ("st1 500 GiB", ["--size", "500", "--volume-type", "st1"], 500, 250 * MIB * 500 // 1024, HDD),
    ("sc1 500 GiB", ["--size", "500", "--volume-type", "sc1"], 250, 80 * MIB * 500 // 1024, HDD),
    ("standard 100 GiB (bursting)", ["--size", "100", "--volume-type", "standard"], 300, 90 * MIB, HDD),
]
SIZES = [4 * KIB, 16 * KIB, 256 * KIB, MIB]
DEPTHS = [1, 32]


def scrape(metrics_addr, volume_id):
    """The volume's series from the server's Prometheus endpoint."""
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if f'volume_id="{volume_id}"' in line:
            out[line.split("{")[0]] = float(line.split()[-1])
    return out


def measure(metrics_addr, volume_id, uri, bs, qd, window):
    """Delivered reads/s over a `window`-second window in the middle of a fio run, counted by the
    server (fio's own figure loses the requests in flight when its window closes), and the
    seconds the throttle held requests in that window."""
    cmd = ["fio", "--name=t", "--ioengine=nbd", f"--uri={uri}", "--rw=randread", f"--bs={bs}",
           f"--iodepth={qd}", "--size=4g", "--time_based=1", f"--runtime={window + 4}", "--norandommap=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        a, t0 = scrape(metrics_addr, volume_id), time.monotonic()
        time.sleep(window)
        b, t1 = scrape(metrics_addr, volume_id), time.monotonic()
    finally:
        proc.wait()
    ops = b["ebs_volume_read_ops_total"] - a["ebs_volume_read_ops_total"]
    waited = b["ebs_volume_throttle_wait_seconds_total"] - a["ebs_volume_throttle_wait_seconds_total"]
    return ops / (t1 - t0), waited


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
    ap.add_argument("--types", default="", help="comma list of volume types to run (default: all)")
    args = ap.parse_args()
    wanted = [t for t in args.types.split(",") if t]
    exe = os.path.join(ROOT, "target", "release", "volume-server")
    ctl = os.path.join(ROOT, "target", "release", "ebsctl")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="ebs-throttle-") as tmp:
        proc = subprocess.Popen([exe, "--data-dir", tmp, "--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
                                 "--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = proc.stdout.readline()
            grpc = line.split("grpc=")[1].split()[0]
            metrics_addr = line.split("metrics=")[1].split()[0]

            def ctl_json(*a):
                r = subprocess.run([ctl, "--endpoint", f"http://{grpc}", *a], check=True, capture_output=True, text=True)
                return json.loads(r.stdout)

            host = ctl_json("register-host", "--name", "bench", "--availability-zone", "us-east-1a")["InstanceId"]
            dev = iter(f"/dev/sd{c}" for c in "fghijklmnopqrstuvwxyz")

            def attach(create_args):
                vol = ctl_json("create-volume", "--availability-zone", "us-east-1a", *create_args)["VolumeId"]
                uri = ctl_json("attach-volume", "--volume-id", vol, "--instance-id", host, "--device", next(dev))["NbdUri"]
                return vol, uri

            print(f"fio nbd engine, random reads; delivered = reads completed by the server in a {args.runtime} s "
                  "window after 2 s of warm-up\n")
            print("| volume | I/O size | QD | expected | delivered | delivered / expected | held in throttle |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            worst = 1.0
            for label, create, ops, byts, unit in VOLUMES:
                if wanted and label.split()[0] not in wanted:
                    continue
                vol, uri = attach(create)
                for bs in SIZES:
                    for qd in DEPTHS:
                        got, waited = measure(metrics_addr, vol, uri, bs, qd, args.runtime)
                        per_io = math.ceil(bs / unit)
                        spent = per_io * unit if label.split()[0] in TOKENS else bs
                        expected = min(ops / per_io, byts / spent)
                        ratio = got / expected
                        # "held in throttle" is the average number of requests waiting in the
                        # throttle over the window. A row is throttle-bound when the throttle
                        # held requests (>= 0.05 on average) or delivered the limit; rows below
                        # both are bound by the round trip (QD1) or by the machine (large random
                        # reads), and say nothing about the limit's accuracy.
                        bound = waited >= 0.05 * args.runtime or ratio >= 0.98
                        if bound:
                            worst = min(worst, ratio)
                        size = f"{bs >> 10} KiB" if bs < MIB else "1 MiB"
                        note = "" if bound else " (not throttle-bound)"
                        print(f"| {label} | {size} | {qd} | {expected:,.0f} IOPS = {expected * bs / MIB:,.1f} MiB/s "
                              f"| {got:,.1f} IOPS | {ratio:.3f}{note} | {waited / args.runtime:.2f} |")
                        sys.stdout.flush()
            print(f"\nLowest delivered / expected among throttle-bound rows: {worst:.3f}")
            print("\nLatency added under the limit: 4k randread QD1 at 1,000 IOPS (fio --rate_iops)\n")
            print("| volume | p50 µs | p99 µs |")
            print("|---|---:|---:|")
            for label, create in (("io2 256 GiB at 256,000 IOPS (never binds)", ["--size", "256", "--volume-type", "io2", "--iops", "256000"]),
                                  ("gp3 100 GiB at 3,000 IOPS", ["--size", "100", "--volume-type", "gp3"])):
                _, uri = attach(create)
                r = fio(uri, "randread", 4096, 1, args.runtime, ("--rate_iops=1000",))
                pct = r["clat_ns"]["percentile"]
                print(f"| {label} | {pct['50.000000'] / 1000:,.1f} | {pct['99.000000'] / 1000:,.1f} |")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
