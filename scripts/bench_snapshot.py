#!/usr/bin/env python3
"""Snapshot benchmark: full-snapshot throughput against `zstd -3 -T2` on the same data,
compression ratio, incremental cost against the changed fraction, and the first-read latency of
cold blocks on a lazily restored volume (against the same reads once warm).

    python3 scripts/bench_snapshot.py [--data-mib 1024] [--volume-gib 64] [--smoke]

The data is real files (a tar stream of /usr/lib and /usr/share, cut to --data-mib), copied
onto a volume with nbdcopy. Snapshot time is the snapshot's own CompletionTime - StartTime
(the server's clock, millisecond precision); zstd reads the same bytes from the page cache and
writes its output next to the snapshot store, so both do the same I/O.

Needs: a release build (`cargo build --release`), nbdcopy, qemu-io, fio (nbd engine), zstd.
`--smoke` uses 64 MiB of data (a quick check of the script, not a measurement).
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 512 * 1024


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def ts(s):
    return datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class Server:
    def __init__(self, data_dir, extra=()):
        exe = os.path.join(ROOT, "target/release/volume-server")
        self.proc = subprocess.Popen(
            [exe, "--data-dir", data_dir, "--grpc-addr", "127.0.0.1:0", "--nbd-addr",
             "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0", "--snapshot-min-interval", "0s",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        self.endpoint = "http://" + fields["grpc"]
        self.data_dir = data_dir
        self.host = {}

    def ctl(self, *args):
        out = sh([os.path.join(ROOT, "target/release/ebsctl"), "--endpoint", self.endpoint,
                  *args])
        return json.loads(out) if out.strip() else None

    def attach(self, vol, az):
        if az not in self.host:
            self.host[az] = self.ctl("register-host", "--name", f"bench-{az}",
                                     "--availability-zone", az)["InstanceId"]
        return self.ctl("attach-volume", "--volume-id", vol, "--instance-id", self.host[az],
                        "--device", "/dev/sdf")["NbdUri"]

    def snapshot(self, vol):
        sid = self.ctl("create-snapshot", "--volume-id", vol)["SnapshotId"]
        while True:
            s = self.ctl("describe-snapshots", "--snapshot-ids", sid)["Snapshots"][0]
            if s["State"] == "completed":
                s["Seconds"] = ts(s["CompletionTime"]) - ts(s["StartTime"])
                return s
            if s["State"] == "error":
                raise RuntimeError(s.get("StateMessage"))
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def make_data(path, mib):
    """Real files: a tar stream of system directories, cut to `mib` MiB."""
    with open(path, "wb") as out:
        tar = subprocess.Popen(["tar", "cf", "-", "/usr/lib", "/usr/share", "/usr/bin"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        left = mib << 20
        while left:
            chunk = tar.stdout.read(min(left, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
        tar.kill()
        tar.wait()
        # Pad (if the tree was small) with more of the same bytes.
        size = out.tell()
    while size < mib << 20:
        with open(path, "rb") as f, open(path, "ab") as out:
            out.write(f.read(min(size, (mib << 20) - size)))
        size = os.path.getsize(path)


def fio_lat(uri, size_mib, label):
    """4 KiB reads at every 512 KiB boundary (each a different snapshot block), QD1."""
    out = sh(["fio", "--name=" + label, "--ioengine=nbd", f"--uri={uri}", "--rw=read:508k",
              "--bs=4k", "--iodepth=1", f"--size={size_mib}m", "--output-format=json"])
    job = json.loads(out[out.index("{"):])["jobs"][0]["read"]
    pct = job["clat_ns"]["percentile"]
    return {"ios": job["total_ios"], "mean_us": job["clat_ns"]["mean"] / 1e3,
            "p50_us": pct["50.000000"] / 1e3, "p99_us": pct["99.000000"] / 1e3}


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-mib", type=int, default=1024)
    ap.add_argument("--volume-gib", type=int, default=64)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.data_mib = 64
    for tool in ("nbdcopy", "qemu-io", "fio", "zstd"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required")
    work = tempfile.mkdtemp(prefix="bench-snap-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    results = {}
    servers = []
    try:
        data = os.path.join(work, "data.bin")
        make_data(data, a.data_mib)
        nbytes = os.path.getsize(data)
        # zstd on the same bytes, same machine, output on the same file system.
        subprocess.run(["cat", data], stdout=subprocess.DEVNULL, check=True)  # page cache
        t = time.time()
        sh(["zstd", "-3", "-T2", "-q", "-f", data, "-o", os.path.join(work, "data.zst")])
        zstd_s = time.time() - t
        zstd_bytes = os.path.getsize(os.path.join(work, "data.zst"))

        srv = Server(os.path.join(work, "d"), ["--default-initialization-rate", "1"])
        servers.append(srv)
        vol = srv.ctl("create-volume", "--size", str(a.volume_gib), "--volume-type", "io2",
                      "--iops", "64000", "--availability-zone", "us-east-1a")["VolumeId"]
        uri = srv.attach(vol, "us-east-1a")
        sh(["nbdcopy", data, uri])
        full = srv.snapshot(vol)
        store = os.path.join(work, "d", "snapshots", "us-east-1")
        stored = dir_bytes(os.path.join(store, "blocks"))
        results["full"] = {
            "data_mib": nbytes / 2**20, "snapshot_s": full["Seconds"],
            "snapshot_mib_s": nbytes / 2**20 / full["Seconds"], "zstd_s": zstd_s,
            "zstd_mib_s": nbytes / 2**20 / zstd_s, "stored_bytes": stored,
            "ratio": nbytes / stored, "zstd_ratio": nbytes / zstd_bytes,
            "blocks": full["Ebsemu"]["BlockCount"],
        }

        # Incremental cost against the changed fraction.
        nblocks = nbytes // BLOCK
        results["incremental"] = []
        for frac in (0.01, 0.1, 0.5):
            picks = random.sample(range(nblocks), max(1, int(nblocks * frac)))
            cmds = []
            for b in picks:
                cmds += ["-c", f"write -P {random.randrange(1, 255)} {b * BLOCK + 4096} 4k"]
            for i in range(0, len(cmds), 400):
                sh(["qemu-io", "-f", "raw", *cmds[i:i + 400], uri])
            s = srv.snapshot(vol)
            results["incremental"].append({
                "changed": frac, "blocks_changed": len(picks), "seconds": s["Seconds"],
                "blocks_written": s["Ebsemu"]["BlocksWritten"],
                "bytes_written": s["FullSnapshotSizeInBytes"],
                "vs_full_time": s["Seconds"] / full["Seconds"],
            })

        # Lazy restore: cold first reads (fetch + verify + decompress + write) vs warm ones.
        mib = nbytes >> 20
        restored = srv.ctl("create-volume", "--availability-zone", "us-east-1b",
                           "--snapshot-id", full["SnapshotId"], "--volume-type", "io2",
                           "--iops", "64000")["VolumeId"]
        ruri = srv.attach(restored, "us-east-1b")
        cold = fio_lat(ruri, mib, "cold")
        warm = fio_lat(ruri, mib, "warm")
        plain = fio_lat(uri, mib, "source")
        results["restore"] = {"cold": cold, "warm": warm, "never_restored": plain}
        srv.stop()
    finally:
        for srv in servers:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    f = results["full"]
    print(f"## Snapshot benchmark ({f['data_mib']:.0f} MiB of real files, 2 vCPUs)\n")
    print("| measure | volume-server snapshot | zstd -3 -T2 | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| full snapshot throughput, MiB/s | {f['snapshot_mib_s']:.0f} | {f['zstd_mib_s']:.0f} "
          f"| {f['snapshot_mib_s'] / f['zstd_mib_s']:.2f}x |")
    print(f"| compression ratio (data / stored) | {f['ratio']:.2f} | {f['zstd_ratio']:.2f} "
          f"| {f['ratio'] / f['zstd_ratio']:.2f}x |")
    print("\n| changed | blocks changed | blocks stored | bytes stored | seconds | time vs full |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results["incremental"]:
        print(f"| {r['changed']:.0%} | {r['blocks_changed']} | {r['blocks_written']} | "
              f"{r['bytes_written']} | {r['seconds']:.2f} | {r['vs_full_time']:.2f} |")
    r = results["restore"]
    print("\n| 4 KiB read at QD1, one per 512 KiB block | mean µs | p50 µs | p99 µs |")
    print("|---|---:|---:|---:|")
    for k, label in (("cold", "restored volume, first read (cold)"),
                     ("warm", "restored volume, second read (local)"),
                     ("never_restored", "source volume")):
        print(f"| {label} | {r[k]['mean_us']:.0f} | {r[k]['p50_us']:.0f} | {r[k]['p99_us']:.0f} |")
    print("\n```json\n" + json.dumps(results, indent=1) + "\n```")


if __name__ == "__main__":
    main()
