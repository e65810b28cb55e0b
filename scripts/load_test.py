#!/usr/bin/env python3
"""Load test: many NBD connections at a deep queue, with data verification, while the server's
memory and file descriptors are watched (Reliability §4: "64 NBD connections at QD32 for 60 s over
16 volumes with verification: no errors, memory bounded").

    python3 scripts/load_test.py [--runtime 60] [--volumes 16] [--jobs-per-volume 4] [--iodepth 32]

Starts a release `volume-server` (port 0, temp data dir), creates --volumes io2 volumes (16 GiB,
16,000 IOPS each: well above what one machine's loopback delivers, so the throttle does not shape
the run), attaches them all to one registered host (/dev/sdf, /dev/sdg, …), and runs ONE fio
process with --volumes x --jobs-per-volume jobs, each its own NBD connection (fio's nbd engine
opens one libnbd handle per job) at --iodepth. Each job owns a disjoint --region-mib slice of its
volume (--offset/--size; job j of a volume at j x size/jobs-per-volume), so no two jobs ever write
the same block and each job's verification is valid.

Verification (the fio job file is in `job_file` below):
`rw=randwrite norandommap serialize_overlap verify=crc32c verify_backlog=1024 verify_fatal=1`.
Every 4 KiB write carries a header (magic, offset, length, the job's write sequence number
`numberio`) and a crc32c of the block; after every 1,024 writes the job reads the blocks it logged
back *while the other 63 connections keep writing* and checks them. So the traffic is a read/write
mix, and every read fio reports is a check of data written during the run (`randrw` would add
plain reads that check nothing: in a job that writes, fio verifies only the reads of its own write
log). Slices are small (32 MiB: 2 GiB of disk at most, whatever the runtime), so blocks are
overwritten many times: fio's write log keeps only
the latest write of each block, and the numberio check fails a read that returns an older version
of it (a stale cache, a lost or reordered write), another job's block, a torn or zeroed block.
`serialize_overlap` keeps two I/Os on one block from being in flight at once (their order would be
undefined, by NBD as by any disk). The job is NOT `time_based`: fio skips the numberio check in
time_based jobs, which would leave stale versions undetected; instead an `io_size` no run reaches
and `runtime=N` end it after N seconds all the same. (The final verify pass fio would run after
its write phase is cut by the runtime; the backlog is what verifies.) verify_fatal stops a job at
its first mismatch, and fio exits non-zero. Checked by hand: two jobs given the same slice fail
with `verify: bad header numberio` at once; as here, on disjoint slices, they pass.

Memory bound (the run fails if it is broken): the server's VmRSS, sampled every second, must stay
below --rss-max-mib (512 MiB), and the mean RSS of the last --window seconds of the run must not
exceed the mean of the first --window seconds after --warmup by more than --growth-pct (20 %):
a server that keeps allocating per request grows across the run; one that is bounded plateaus.
(For short runs, --warmup and --window shrink to a third of the runtime.) File descriptors: after
fio disconnects, the server's open fds must return to within 8 of what they were before it started.

Prints a Markdown summary; exits 1 on any fio error, verify failure, missing verify reads, broken
bound, or an unclean server exit. Needs fio (with the nbd engine) and `cargo build --release`.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AZ = "us-east-1a"
GIB = 1 << 30
MIB = 1 << 20
# A line fio prints (log_err) when a block fails verification.
VERIFY_ERR = re.compile(r"verify: bad|verify failed|bad magic|bad header|crc32c: verify", re.I)


def proc_status_kib(pid, field):
    """A `kB` field of /proc/PID/status (VmRSS, RssAnon, …); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """Samples the server's VmRSS, RssAnon and open fds every `period` seconds until stopped."""

    def __init__(self, pid, period=1.0):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []  # (seconds since start, VmRSS KiB, RssAnon KiB, fds)
        self.done = threading.Event()
        self.t0 = time.monotonic()

    def sample(self):
        rss = proc_status_kib(self.pid, "VmRSS")
        if rss is not None:
            self.samples.append((time.monotonic() - self.t0, rss, proc_status_kib(self.pid, "RssAnon"),
                                 open_fds(self.pid)))

    def run(self):
        while True:
            self.sample()
            if self.done.wait(self.period):
                return

    def stop(self):
        self.done.set()
        self.join()
        self.sample()


def start_server(exe, data):
    proc = subprocess.Popen(
        [exe, "--data-dir", data, "--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
         "--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(os.path.dirname(data), "server.log"), "w"),
        text=True, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        sys.exit(f"volume-server printed no `listening` line: {line!r}")
    addrs = dict(word.split("=", 1) for word in line.split()[1:])
    return proc, addrs


def stop_server(proc):
    """SIGTERM; the exit status (None if it had to be killed)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def device(i):
    """/dev/sdf … /dev/sdz, then /dev/sdaa …: 16 volumes on one host use sdf…sdu."""
    n = ord("f") - ord("a") + i
    return "/dev/sd" + (chr(ord("a") + n) if n < 26 else chr(ord("a") + n // 26 - 1) + chr(ord("a") + n % 26))


def job_file(uris, args, region, stride):
    lines = [
        "[global]",
        "ioengine=nbd",
        "thread=1",  # one fio process; each job (thread) still opens its own NBD connection
        "rw=randwrite",
        "norandommap=1",  # overwrites: reads check the latest version of a block
        "serialize_overlap=1",  # never two in-flight I/Os on one block (their order is undefined)
        f"bs={args.bs}",
        f"iodepth={args.iodepth}",
        f"size={region}",
        # Not time_based: fio skips its check of the write sequence number (numberio) in
        # time_based jobs, and that check is what catches a stale version of a block. An
        # io_size no run reaches, with a runtime, stops the job at the runtime all the same.
        "io_size=64t",
        f"runtime={args.runtime}",
        "verify=crc32c",
        f"verify_backlog={args.verify_backlog}",
        "verify_fatal=1",
        "verify_dump=0",
        "verify_state_save=0",
        "randrepeat=0",
        "",
    ]
    for v, uri in enumerate(uris):
        for j in range(args.jobs_per_volume):
            lines += [f"[v{v:02d}-j{j}]", f"uri={uri}", f"offset={j * stride}", ""]
    return "\n".join(lines)


def windows(samples, runtime, warmup, window):
    """Mean RSS (KiB) of [warmup, warmup+window) and of the last `window` seconds of the load."""
    warmup, window = min(warmup, runtime / 3), min(window, runtime / 3)
    t_start, t_end = samples[0][0], samples[-1][0]
    early = [s[1] for s in samples if warmup <= s[0] - t_start < warmup + window]
    late = [s[1] for s in samples if s[0] > t_end - window]
    return (statistics.mean(early) if early else samples[0][1]), (statistics.mean(late) if late else samples[-1][1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtime", type=int, default=60, help="seconds of load (default 60; 5 is a smoke)")
    ap.add_argument("--volumes", type=int, default=16)
    ap.add_argument("--jobs-per-volume", type=int, default=4, help="NBD connections (fio jobs) per volume")
    ap.add_argument("--iodepth", type=int, default=32)
    ap.add_argument("--bs", default="4k")
    ap.add_argument("--size-gib", type=int, default=16, help="volume size (io2)")
    ap.add_argument("--iops", type=int, default=16000, help="provisioned IOPS per io2 volume")
    ap.add_argument("--region-mib", type=int, default=32,
                    help="each job's slice of its volume (default 32 MiB: blocks get overwritten, disk use stays bounded)")
    ap.add_argument("--verify-backlog", type=int, default=1024, help="writes between verify batches")
    ap.add_argument("--rss-max-mib", type=float, default=512)
    ap.add_argument("--growth-pct", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--window", type=float, default=10)
    args = ap.parse_args()

    exe = os.path.join(ROOT, "target", "release", "volume-server")
    ctl = os.path.join(ROOT, "target", "release", "ebsctl")
    for path in (exe, ctl):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: run `cargo build --release` (or "
                     "`cargo build --release -p volume-server -p ebsctl`) first")
    if subprocess.run(["fio", "--enghelp=nbd"], capture_output=True).returncode != 0:
        sys.exit("fio with the nbd engine is required")

    stride = args.size_gib * GIB // args.jobs_per_volume
    region = args.region_mib * MIB
    if region > stride:
        sys.exit(f"--region-mib {args.region_mib} does not fit {args.jobs_per_volume} times in {args.size_gib} GiB")
    conns = args.volumes * args.jobs_per_volume
    failures = []
    with tempfile.TemporaryDirectory(prefix="ebs-load-") as tmp:
        proc, addrs = start_server(exe, os.path.join(tmp, "data"))
        ep = ["--endpoint", f"http://{addrs['grpc']}"]

        def ctl_json(*a):
            return json.loads(subprocess.run([ctl, *ep, *a], check=True, capture_output=True, text=True).stdout)

        try:
            t_setup = time.monotonic()
            host = ctl_json("register-host", "--name", "load", "--availability-zone", AZ)["InstanceId"]
            uris = []
            for i in range(args.volumes):
                vol = ctl_json("create-volume", "--size", str(args.size_gib), "--volume-type", "io2",
                               "--iops", str(args.iops), "--availability-zone", AZ)["VolumeId"]
                uris.append(ctl_json("attach-volume", "--volume-id", vol, "--instance-id", host,
                                     "--device", device(i))["NbdUri"])
            jobs = os.path.join(tmp, "load.fio")
            with open(jobs, "w") as f:
                f.write(job_file(uris, args, region, stride))
            print(f"server up, {args.volumes} volumes attached in {time.monotonic() - t_setup:.1f} s", file=sys.stderr)
            print(f"{conns} NBD connections ({args.volumes} volumes x {args.jobs_per_volume}), QD{args.iodepth}, "
                  f"{args.bs} randwrite + verify, {args.runtime} s …", file=sys.stderr)

            sampler = Sampler(proc.pid)
            fds_before = open_fds(proc.pid)
            rss_before = proc_status_kib(proc.pid, "VmRSS")
            sampler.start()
            t0 = time.monotonic()
            fio = subprocess.run(["fio", "--output-format=json", jobs], capture_output=True, text=True,
                                 timeout=args.runtime + 600)
            elapsed = time.monotonic() - t0
            sampler.stop()
            load = list(sampler.samples)
            time.sleep(2)  # let the server tear down the sessions fio just closed
            fds_after = open_fds(proc.pid)
            rss_after = proc_status_kib(proc.pid, "VmRSS")
            alive = proc.poll() is None
        finally:
            t_stop = time.monotonic()
            status = stop_server(proc)
            print(f"server stopped in {time.monotonic() - t_stop:.1f} s", file=sys.stderr)
        with open(os.path.join(tmp, "server.log")) as f:
            server_log = f.read()
        t_rm = time.monotonic()
        # Every 4 KiB written is its own extent of a sparse file: unlinking takes a while.
        print("removing the data dir …", file=sys.stderr)
    print(f"data dir removed in {time.monotonic() - t_rm:.1f} s", file=sys.stderr)

    # ---- fio's verdict
    try:
        report = json.loads(fio.stdout[fio.stdout.index("{"):])
    except ValueError:
        sys.stderr.write(fio.stdout + fio.stderr)
        sys.exit(f"fio exited {fio.returncode} without a JSON report")
    js = report["jobs"]
    job_errors = [(j["jobname"], j["error"]) for j in js if j["error"]]
    verify_lines = [l for l in (fio.stderr + fio.stdout[:fio.stdout.index("{")]).splitlines() if VERIFY_ERR.search(l)]
    verify_failures = len(verify_lines) + sum(1 for _, e in job_errors if e == 84)  # EILSEQ: a mismatch
    writes = sum(j["write"]["total_ios"] for j in js)
    reads = sum(j["read"]["total_ios"] for j in js)
    # fio times a verifying job's write phase only (its verify reads show runtime 0), and that
    # phase's wall time includes the verify reads: rates are each job's I/Os over that time.
    secs = lambda j: max(j["write"]["runtime"], 1) / 1000
    w_iops = sum(j["write"]["total_ios"] / secs(j) for j in js)
    r_iops = sum(j["read"]["total_ios"] / secs(j) for j in js)
    mib_s = sum((j["read"]["io_bytes"] + j["write"]["io_bytes"]) / secs(j) for j in js) / MIB
    w_p99 = max(j["write"]["clat_ns"]["percentile"]["99.000000"] for j in js if j["write"]["total_ios"]) / 1e6
    if fio.returncode != 0:
        failures.append(f"fio exited {fio.returncode}")
    if len(js) != conns:
        failures.append(f"fio ran {len(js)} jobs, expected {conns}")
    if job_errors:
        failures.append(f"{len(job_errors)} fio jobs ended with an error: {job_errors[:5]}")
    if verify_failures:
        failures.append(f"{verify_failures} verify failures: {verify_lines[:5]}")
    if reads == 0 or writes == 0:
        failures.append(f"no verification happened ({writes} writes, {reads} verify reads)")

    # ---- the server's verdict
    rss = [s[1] / 1024 for s in load]
    anon = [s[2] / 1024 for s in load if s[2] is not None]
    fds = [s[3] for s in load if s[3] is not None]
    early, late = (x / 1024 for x in windows(load, args.runtime, args.warmup, args.window))
    growth = (late / early - 1) * 100
    if max(rss) >= args.rss_max_mib:
        failures.append(f"server RSS reached {max(rss):.0f} MiB (bound {args.rss_max_mib:.0f} MiB)")
    if growth > args.growth_pct:
        failures.append(f"server RSS grew {growth:.1f}% from the early to the late window (bound {args.growth_pct:.0f}%)")
    if fds_after is None or fds_before is None or fds_after > fds_before + 8:
        failures.append(f"server fds {fds_before} before the load, {fds_after} after it (connections leaked?)")
    if not alive or status != 0:
        failures.append(f"server exit status {status} (alive after the load: {alive})")
    for level in ("ERROR", "panicked"):
        n = server_log.count(level)
        if n:
            failures.append(f"server log has {n} `{level}` lines, e.g. "
                            f"{next(l for l in server_log.splitlines() if level in l)!r}")

    mib = lambda kib: f"{kib / 1024:.1f}"
    print(f"\n## Load test: {conns} NBD connections, QD{args.iodepth}, {args.runtime} s, "
          f"{args.volumes} io2 volumes ({args.size_gib} GiB, {args.iops:,} IOPS), {os.cpu_count()} CPUs\n")
    print(f"fio: one process, {len(js)} jobs (threads), {args.bs} randwrite, verify=crc32c "
          f"verify_backlog={args.verify_backlog} verify_fatal=1, each job on its own "
          f"{region // MIB} MiB slice (at {stride // GIB} GiB steps), norandommap + serialize_overlap, runtime-bound (not time_based, so numberio is checked); wall {elapsed:.1f} s\n")
    print("| metric | value |")
    print("|---|---:|")
    print(f"| total IOPS (writes + verify reads) | {w_iops + r_iops:,.0f} |")
    print(f"| write IOPS / verify-read IOPS | {w_iops:,.0f} / {r_iops:,.0f} |")
    print(f"| MiB/s (both directions) | {mib_s:,.1f} |")
    print(f"| write p99 completion latency | {w_p99:.2f} ms |")
    print(f"| blocks written / read back and verified | {writes:,} / {reads:,} |")
    print(f"| fio errors (jobs with error != 0) | {len(job_errors)} |")
    print(f"| verify failures | {verify_failures} |")
    print(f"| server RSS min / median / max | {min(rss):.1f} / {statistics.median(rss):.1f} / {max(rss):.1f} MiB |")
    print(f"| server RssAnon min / max | {min(anon):.1f} / {max(anon):.1f} MiB |" if anon else "| RssAnon | n/a |")
    print(f"| server RSS before load / at fio exit / 2 s after | {mib(rss_before)} / {rss[-1]:.1f} / {mib(rss_after)} MiB |")
    print(f"| RSS early window (after warmup) vs last window | {early:.1f} vs {late:.1f} MiB ({growth:+.1f}%) |")
    print(f"| server fds before / max during / after | {fds_before} / {max(fds)} / {fds_after} |")
    print(f"| server exit after SIGTERM | {status} |")
    print(f"\nBounds: RSS < {args.rss_max_mib:.0f} MiB; late-window mean <= early-window mean + {args.growth_pct:.0f}%; "
          f"fds after <= before + 8.\n")
    if failures:
        print("**FAIL**\n")
        for f in failures:
            print(f"- {f}")
        if fio.stderr.strip():
            print("\nfio stderr (first lines):\n```\n" + "\n".join(fio.stderr.splitlines()[:20]) + "\n```")
        sys.exit(1)
    print("**PASS**")


if __name__ == "__main__":
    main()
