#!/usr/bin/env python3
"""Encrypted against plain volumes, side by side on one server (issue 25).

One release volume-server; two io2 volumes at their maximum (--throttle-scale 100, so the
throttle runs but never binds), one plain and one encrypted (AES-256-XTS under the AWS managed
key), each filled through NBD with the same random data. fio's nbd engine runs each job on
both, taking turns job by job (the order rotating each repetition), and the server's CPU time
per I/O (user + system from /proc) is read around each run. Prints a Markdown table of medians:
IOPS or MiB/s, p99 latency and CPU per I/O for each, and encrypted / plain ratios (the median
of the per-repetition ratios, with their range).

    python3 scripts/bench_encryption.py [--runtime 10] [--reps 3] [--size-mib 1024]
                                        [--server-cpu 0.5] [--jobs 1M,QD32]

--server-cpu confines the server to that fraction of one CPU (cgroup v1 or v2), so that the
server rather than fio sets the pace and the cost of the cipher shows in throughput too.

Needs fio (nbd engine), nbdcopy and `cargo build --release`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compare import THROTTLE_SCALE, CpuCap, cpu_seconds, run_fio, stop, warm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = [
    ("4k randread QD1", dict(rw="randread", bs="4k", iodepth=1)),
    ("4k randread QD32", dict(rw="randread", bs="4k", iodepth=32)),
    ("4k randwrite QD32", dict(rw="randwrite", bs="4k", iodepth=32)),
    ("1M read QD8", dict(rw="read", bs="1m", iodepth=8)),
    ("1M write QD8", dict(rw="write", bs="1m", iodepth=8)),
]
KINDS = ("plain", "encrypted")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--server-cpu", type=float)
    ap.add_argument("--jobs", help="only the jobs whose label contains one of these comma-separated words")
    ap.add_argument("--exe", default=os.path.join(ROOT, "target", "release", "volume-server"))
    ap.add_argument("--ctl", default=os.path.join(ROOT, "target", "release", "ebsctl"))
    a = ap.parse_args()
    jobs = [(label, job) for label, job in JOBS
            if not a.jobs or any(w in label for w in a.jobs.split(","))]

    tmp = tempfile.mkdtemp(prefix="ebs-bench-enc-")
    data = os.path.join(tmp, "data")
    proc = subprocess.Popen(
        [a.exe, "--data-dir", data, "--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
         "--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0",
         "--throttle-scale", str(THROTTLE_SCALE)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    cap = CpuCap(a.server_cpu) if a.server_cpu else None
    try:
        if cap:
            cap.confine(proc.pid)
        grpc = proc.stdout.readline().split("grpc=")[1].split()[0]
        ep = ["--endpoint", f"http://{grpc}"]

        def ctl(*args):
            return json.loads(subprocess.run([a.ctl, *ep, *args], check=True, capture_output=True,
                                             text=True).stdout)

        host = ctl("register-host", "--name", "bench", "--availability-zone", "us-east-1a")["InstanceId"]
        uris = {}
        for i, kind in enumerate(KINDS):
            extra = ["--encrypted"] if kind == "encrypted" else []
            v = ctl("create-volume", "--size", "256", "--volume-type", "io2", "--iops", "256000",
                    "--availability-zone", "us-east-1a", *extra)
            assert v["Encrypted"] == (kind == "encrypted"), v
            uris[kind] = ctl("attach-volume", "--volume-id", v["VolumeId"], "--instance-id", host,
                             "--device", f"/dev/sd{'fg'[i]}")["NbdUri"]
        backing = os.path.join(tmp, "backing.bin")
        with open(backing, "wb") as f:
            f.write(os.urandom(a.size_mib << 20))
        for kind in KINDS:
            subprocess.run(["nbdcopy", backing, uris[kind]], check=True)
        os.remove(backing)
        files = [os.path.join(r, n) for r, _, ns in os.walk(data) for n in ns if n.endswith(".img")]

        results = {(k, j): [] for k in KINDS for j, _ in jobs}
        for rep in range(a.reps):
            for label, job in jobs:
                order = KINDS if rep % 2 == 0 else KINDS[::-1]
                for kind in order:
                    warm(files, a.size_mib)
                    r = run_fio(uris[kind], job, a.runtime, f"{a.size_mib}M", proc.pid)
                    results[(kind, label)].append(r)
                    print(f"rep {rep} {label} {kind}: {r['iops']:.0f} IOPS {r['mib_s']:.0f} MiB/s "
                          f"p99 {r['p99_us']:.0f} us cpu {r['cpu_us_per_io']:.1f} us/IO "
                          f"fio {r['client_cpu_pct']:.0f}%", file=sys.stderr)
    finally:
        stop(proc)
        if cap:
            cap.close()

    med = lambda xs: statistics.median(xs)
    print(f"runtime {a.runtime}s x {a.reps} reps, {a.size_mib} MiB"
          + (f", server confined to {a.server_cpu} CPU" if a.server_cpu else ""))
    print()
    print("| job | plain | encrypted | ratio (range) | p99 plain / encrypted µs | CPU/IO plain / encrypted µs | CPU ratio | fio CPU % |")
    print("|---|---|---|---|---|---|---|---|")
    for label, job in jobs:
        p, e = results[("plain", label)], results[("encrypted", label)]
        unit = "mib_s" if job["bs"] == "1m" else "iops"
        ratios = [x[unit] / y[unit] for x, y in zip(e, p)]
        cpu_ratios = [x["cpu_us_per_io"] / y["cpu_us_per_io"] for x, y in zip(e, p)]
        fmt = (lambda v: f"{v:.0f} MiB/s") if unit == "mib_s" else (lambda v: f"{v:,.0f}")
        print(f"| {label} | {fmt(med([x[unit] for x in p]))} | {fmt(med([x[unit] for x in e]))} | "
              f"{med(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{med([x['p99_us'] for x in p]):.0f} / {med([x['p99_us'] for x in e]):.0f} | "
              f"{med([x['cpu_us_per_io'] for x in p]):.1f} / {med([x['cpu_us_per_io'] for x in e]):.1f} | "
              f"{med(cpu_ratios):.2f}x | {med([x['client_cpu_pct'] for x in p]):.0f} / "
              f"{med([x['client_cpu_pct'] for x in e]):.0f} |")


if __name__ == "__main__":
    main()
