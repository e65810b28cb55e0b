#!/usr/bin/env python3
"""Side-by-side fio benchmark: this server vs `nbdkit file`, `qemu-nbd --aio=io_uring`, and
`nbdkit memory` (the protocol ceiling: no disk, no page cache).

Each server gets its own copy of one backing file (random data), written through it with
`nbdcopy` so that every copy starts in the same page cache state; fio's nbd engine runs the same
jobs against each, one server at a time, in the same run. Prints Markdown tables:
absolute figures and ratios (ours / peer), QD1-relevant p99 latency, each server's CPU time
per I/O (user + system, from /proc), and fio's own CPU use (which shows when the client, not the
server, was the limit).

    python3 scripts/bench_compare.py [--runtime 10] [--reps 3] [--size-gib 1] [--smoke]
                                     [--chart bench.svg]
    python3 scripts/bench_compare.py --replot saved-output.md --chart bench.svg
    python3 scripts/bench_compare.py --jobs QD1,1M --peers "nbdkit file" --candidate /tmp/other-build
    python3 scripts/bench_compare.py --jobs QD32 --server-cpu 0.5

--server-cpu confines each server to that fraction of one CPU (as root, with cgroups), so that
the server rather than fio is the limit: on a machine where fio shares few cores with the server,
the plain run measures the pair, and this one measures what each server does with the same CPU.

--jobs and --peers narrow a run; --candidate adds a second volume-server build as its own column,
for measuring a change against the build before it in the same run.

Each job runs --reps times per server; the servers take turns job by job, in an order that rotates
each repetition, so drift on a shared machine hits all of them alike. The table shows medians;
its ratios are the medians of the per-repetition ratios (paired runs, seconds apart), followed by
the lowest and the highest of those ratios, so that a reader sees how far apart the repetitions were.
This server's volume is an io2 at its maximum, run with --throttle-scale 100: the throttle runs on
every request but does not bind (unscaled, io2's 4,000 MiB/s would cap the 1 MiB jobs).

Needs: fio (with the nbd engine), nbdkit, qemu-nbd, nbdcopy, and a release build
(`cargo build --release`). `--smoke` runs each job once for one second on a 64 MiB file (used
by CI to prove the harness works; not a measurement).
"""
import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The server's throttle runs on every request but must not bind: an io2 volume at its maximum
# is still capped at 4,000 MiB/s, which 1 MiB jobs reach on loopback and the peers do not have.
THROTTLE_SCALE = 100

JOBS = [
    ("4k randread QD1", dict(rw="randread", bs="4k", iodepth=1)),
    ("4k randwrite QD1", dict(rw="randwrite", bs="4k", iodepth=1)),
    ("4k randread QD32", dict(rw="randread", bs="4k", iodepth=32)),
    ("4k randwrite QD32", dict(rw="randwrite", bs="4k", iodepth=32)),
    ("4k 70/30 randrw QD32", dict(rw="randrw", bs="4k", iodepth=32)),
    ("1M read QD8", dict(rw="read", bs="1m", iodepth=8)),
    ("1M write QD8", dict(rw="write", bs="1m", iodepth=8)),
]
SERVERS = ("volume-server", "nbdkit file", "qemu-nbd io_uring", "nbdkit memory")


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def warm(files, size_mib):
    """Reads the part of each file the jobs use back into the page cache. Some machines reclaim
    idle page cache on their own (this one runs a DAMON `pageout` scheme for memory idle 60 s),
    and a server whose file sat idle would otherwise serve its next job partly from the disk."""
    buf = bytearray(1 << 20)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            for _ in range(size_mib):
                if not f.readinto(buf):
                    break


def run_fio(uri, job, runtime, size, pid):
    cmd = [
        "fio", "--name=bench", "--ioengine=nbd", f"--uri={uri}", f"--rw={job['rw']}",
        f"--bs={job['bs']}", f"--iodepth={job['iodepth']}", f"--size={size}", "--rwmixread=70",
        "--time_based=1", f"--runtime={runtime}", "--ramp_time=0",
        "--output-format=json", "--randrepeat=1", "--norandommap=1",
    ]
    # Write back what earlier jobs left dirty, so that no job pays for another's writeback.
    os.sync()
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(pid) - cpu0
    j = json.loads(out[out.index("{"):])["jobs"][0]
    sides = [j[d] for d in ("read", "write") if j[d]["total_ios"] > 0]
    ios = sum(d["total_ios"] for d in sides)
    p99 = max(d["clat_ns"]["percentile"]["99.000000"] for d in sides) / 1000
    # fio's own user + system time, in % of one CPU over the job: fio runs the job in one thread,
    # so near 100 the client, not the server, sets the pace.
    return {"iops": sum(d["iops"] for d in sides), "mib_s": sum(d["bw_bytes"] for d in sides) / (1 << 20),
            "p99_us": p99, "cpu_us_per_io": cpu / max(ios, 1) * 1e6,
            "client_cpu_pct": j["usr_cpu"] + j["sys_cpu"]}


def ours(tmp, backing, size_mib, exe, ctl):
    data = tempfile.mkdtemp(prefix="ebs-data-", dir=tmp)
    proc = subprocess.Popen(
        [exe, "--data-dir", data, "--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0",
         "--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0", "--throttle-scale", str(THROTTLE_SCALE)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    grpc = line.split("grpc=")[1].split()[0]
    ep = ["--endpoint", f"http://{grpc}"]

    def ctl_json(*args):
        return json.loads(subprocess.run([ctl, *ep, *args], check=True, capture_output=True, text=True).stdout)

    # io2 at its maximum (256,000 IOPS, 4,000 MiB/s; times THROTTLE_SCALE) needs >= 256 GiB;
    # fio touches only the first size_mib.
    vol = ctl_json("create-volume", "--size", str(max(256, -(-size_mib // 1024))), "--volume-type", "io2", "--iops", "256000",
                   "--availability-zone", "us-east-1a")["VolumeId"]
    host = ctl_json("register-host", "--name", "bench", "--availability-zone", "us-east-1a")["InstanceId"]
    uri = ctl_json("attach-volume", "--volume-id", vol, "--instance-id", host, "--device", "/dev/sdf")["NbdUri"]
    return proc, uri, glob.glob(os.path.join(data, "*", "volumes", "*.img"))


class CpuCap:
    """Confines each server to a fraction of one CPU with the kernel's CFS bandwidth control
    (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), one cgroup per server. fio keeps the rest
    of the machine, so the server, not the client, is what runs out. The kernel's default period
    (100 ms) is kept: a capped server runs at full speed until its quota is spent, then waits."""
    PERIOD_US = 100_000

    def __init__(self, fraction):
        self.quota_us = int(fraction * self.PERIOD_US)
        self.v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        self.root = "/sys/fs/cgroup" if self.v2 else "/sys/fs/cgroup/cpu"
        self.dirs = []
        if not os.path.isdir(self.root):
            sys.exit("--server-cpu needs the cgroup cpu controller (v2, or v1 at /sys/fs/cgroup/cpu)")
        if self.v2:
            with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                f.write("+cpu")

    def confine(self, pid):
        d = os.path.join(self.root, f"ebs-bench-{os.getpid()}-{len(self.dirs)}")
        os.mkdir(d)
        self.dirs.append(d)
        if self.v2:
            limits = {"cpu.max": f"{self.quota_us} {self.PERIOD_US}"}
        else:
            limits = {"cpu.cfs_period_us": str(self.PERIOD_US), "cpu.cfs_quota_us": str(self.quota_us)}
        for name, value in limits.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(value)
        # Every thread of the process moves, and threads it starts later are born inside.
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def close(self):
        """Removes the cgroups (their processes must have exited)."""
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError as e:
                print(f"could not remove {d}: {e}", file=sys.stderr)


def empty_image(path, like):
    """A sparse file of `like`'s size: each server gets its copy of the data through NBD."""
    with open(path, "wb") as f:
        f.truncate(os.path.getsize(like))
    return path


def nbdkit(tmp, backing):
    img = empty_image(os.path.join(tmp, "nbdkit.img"), backing)
    port = free_port()
    proc = subprocess.Popen(["nbdkit", "-f", "-p", str(port), "-i", "127.0.0.1", "file", img],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"nbd://127.0.0.1:{port}/", [img]


def nbdkit_memory(size_mib):
    port = free_port()
    proc = subprocess.Popen(["nbdkit", "-f", "-p", str(port), "-i", "127.0.0.1", "memory", f"{size_mib}M"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"nbd://127.0.0.1:{port}/", []


def qemu_nbd(tmp, backing):
    img = empty_image(os.path.join(tmp, "qemu.img"), backing)
    port = free_port()
    proc = subprocess.Popen(["qemu-nbd", "-f", "raw", "--aio=io_uring", "-t", "-e", "16", "-b", "127.0.0.1",
                             "-p", str(port), img], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"nbd://127.0.0.1:{port}/", [img]


COLORS = {"volume-server": "#1f77b4", "nbdkit file": "#ff7f0e",
          "qemu-nbd io_uring": "#2ca02c", "nbdkit memory": "#9a9a9a"}


PEERS = SERVERS[1:]


def chart(ratios, title, path):
    """A grouped bar chart (SVG, no dependencies): one group per job, one bar per peer, each
    bar this server's throughput relative to that peer's in the job (1.0 = parity), its value
    printed on it. `ratios`: {(peer, job): ratio}, as the headline table's ratio columns."""
    w, h, left, top, bottom = 900, 420, 60, 50, 90
    peers = [n for n in PEERS if any(k[0] == n for k in ratios)]
    groups = [label for label, _ in JOBS if peers and all((n, label) in ratios for n in peers)]
    if not groups:
        print(f"no ratios to chart; {path} not written", file=sys.stderr)
        return
    top_ratio = max(2.0, max(ratios[(n, g)] for n in peers for g in groups) * 1.1)
    gw = (w - left - 20) / len(groups)
    bw = gw * 0.8 / len(peers)
    y = lambda r: top + (h - top - bottom) * (1 - r / top_ratio)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for t in [x / 2 for x in range(int(top_ratio * 2) + 1)]:
        out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{"#444" if t == 1 else "#ddd"}"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.1f}x</text>')
    for gi, label in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si, name in enumerate(peers):
            r = ratios[(name, label)]
            x = x0 + si * bw
            out.append(f'<rect x="{x:.1f}" y="{y(r):.1f}" width="{bw - 1:.1f}" height="{y(0) - y(r):.1f}" fill="{COLORS[name]}"/>')
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y(r) - 3:.1f}" text-anchor="middle" font-size="8">{r:.2f}</text>')
        out.append(f'<text x="{x0 + gw * 0.4:.1f}" y="{h - bottom + 16}" text-anchor="middle">{label}</text>')
    for si, name in enumerate(peers):
        lx = left + si * 190
        out.append(f'<rect x="{lx}" y="{h - 40}" width="12" height="12" fill="{COLORS[name]}"/>')
        out.append(f'<text x="{lx + 16}" y="{h - 30}">vs {name}</text>')
    out.append(f'<text x="{left}" y="{h - 10}" font-size="10">Bars: volume-server throughput over the peer\'s in the same job (IOPS for 4k jobs, MiB/s for 1M jobs); above 1.0, volume-server is faster.</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def parse_table(path):
    """The ratio columns of the headline table of a saved run of this script: {(peer, job): ratio}."""
    ratios, columns = {}, None
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] == "job" and columns is None:
                columns = {c[3:]: i for i, c in enumerate(cells) if c.startswith("vs ")}
                continue
            if columns is None or len(cells) < 5 or cells[0] not in dict(JOBS):
                if ratios and not line.strip():
                    break  # the end of the first (headline) table
                continue
            for name in PEERS:
                i = columns.get(short(name))
                if i is not None and i < len(cells):
                    # "1.05x" or "1.05x (1.02-1.08)": the median comes first.
                    ratios[(name, cells[0])] = float(cells[i].split()[0].rstrip("x"))
    return ratios


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--size-gib", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--chart", help="also draw the headline table as an SVG bar chart here")
    ap.add_argument("--replot", help="draw --chart from a saved run's output instead of running")
    ap.add_argument("--jobs", help="only the jobs whose label contains one of these comma-separated words")
    ap.add_argument("--peers", help="only these comma-separated peers (default: all three)")
    ap.add_argument("--exe", default=os.path.join(ROOT, "target", "release", "volume-server"),
                    help="the volume-server binary to measure")
    ap.add_argument("--ctl", default=os.path.join(ROOT, "target", "release", "ebsctl"),
                    help="the ebsctl binary that sets up the volume")
    ap.add_argument("--server-cpu", type=float,
                    help="confine each server to this fraction of one CPU (cgroup CFS quota), so that "
                    "the server, not fio, is the limit; needs root")
    ap.add_argument("--candidate", help="a second volume-server binary, measured as its own column "
                    "(for A/B runs of a change)")
    args = ap.parse_args()
    if args.server_cpu is not None and not 0 < args.server_cpu <= os.cpu_count():
        sys.exit(f"--server-cpu must be in (0, {os.cpu_count()}]")
    if args.replot:
        title = f"volume-server vs peers (from {os.path.basename(args.replot)})"
        chart(parse_table(args.replot), title, args.chart or "bench.svg")
        return
    runtime = 1 if args.smoke else args.runtime
    # A smoke run proves the harness works end to end; it measures nothing.
    size_mib = 64 if args.smoke else args.size_gib * 1024
    size = f"{size_mib}m"
    for tool in ("fio", "nbdkit", "qemu-nbd", "nbdcopy"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required")
    samples = {}
    jobs = [(label, job) for label, job in JOBS
            if not args.jobs or any(w in label for w in args.jobs.split(","))]
    peers = args.peers.split(",") if args.peers else list(SERVERS[1:])
    for p in peers:
        if p not in SERVERS[1:]:
            sys.exit(f"unknown peer {p!r}; peers are {', '.join(SERVERS[1:])}")
    servers = [("volume-server", lambda: ours(tmp, backing, size_mib, args.exe, args.ctl))]
    if args.candidate:
        servers.append(("candidate", lambda: ours(tmp, backing, size_mib, args.candidate, args.ctl)))
    servers += [(name, start) for name, start in (
        ("nbdkit file", lambda: nbdkit(tmp, backing)),
        ("qemu-nbd io_uring", lambda: qemu_nbd(tmp, backing)),
        ("nbdkit memory", lambda: nbdkit_memory(size_mib))) if name in peers]
    names = [name for name, _ in servers]
    reps = 1 if args.smoke else args.reps
    with tempfile.TemporaryDirectory(prefix="ebs-bench-") as tmp:
        backing = os.path.join(tmp, "backing.img")
        with open(backing, "wb") as f:
            for _ in range(size_mib // 16):
                f.write(os.urandom(16 << 20))
        started = [(name,) + start() for name, start in servers]
        # Every server, nbdkit memory included, gets the data the same way: nbdcopy through NBD.
        # How a file was written shapes its page cache (the kernel sizes folios by the writes
        # that created them, and small writes into large folios cost more), so copying files
        # behind the servers' backs would measure the copy, not the server.
        for _, _, uri, _ in started:
            subprocess.run(["nbdcopy", backing, uri], check=True)
        cap = CpuCap(args.server_cpu) if args.server_cpu else None
        try:
            if cap:
                for _, proc, _, _ in started:
                    cap.confine(proc.pid)
            # The servers take turns job by job, in an order that rotates each repetition, so
            # that drift on a shared machine (its speed moves by minutes) hits all of them alike.
            for rep in range(reps):
                turn = started[rep % len(started):] + started[:rep % len(started)]
                for (label, job), (name, proc, uri, files) in ((j, s) for j in jobs for s in turn):
                    warm(files, size_mib)
                    r = run_fio(uri, job, runtime, size, proc.pid)
                    samples.setdefault((name, label), []).append(r)
                    print(f"rep {rep + 1} {name:18} {label:18} {r['iops']:>10.0f} IOPS {r['mib_s']:>8.1f} MiB/s",
                          file=sys.stderr)
        finally:
            for _, proc, _, _ in started:
                stop(proc)
            if cap:
                cap.close()
    metrics = ("iops", "mib_s", "p99_us", "cpu_us_per_io", "client_cpu_pct")
    results = {k: {m: statistics.median(x[m] for x in v) for m in metrics} for k, v in samples.items()}
    key = lambda label: "mib_s" if dict(JOBS)[label]["bs"] == "1m" else "iops"
    # Paired: this server's run and the peer's in the same repetition were seconds apart, so a
    # slow phase of the machine hits both; the median of those ratios, not a ratio of medians.
    others = names[1:]
    paired = {(n, label): [a[key(label)] / b[key(label)]
                           for a, b in zip(samples[(names[0], label)], samples[(n, label)])]
              for n in others for label, _ in jobs}
    ratio = {k: statistics.median(v) for k, v in paired.items()}
    print(f"\nfio nbd engine, {runtime}s per job, median of {reps}, {size_mib} MiB file, {os.cpu_count()} CPUs; "
          f"volume-server: io2 at 256,000 IOPS and 4,000 MiB/s, run with --throttle-scale {THROTTLE_SCALE} "
          "(the throttle runs but does not bind). Ratios: the median of the per-repetition ratios "
          "(the runs of one job take turns, seconds apart), with the lowest and highest of them "
          "in parentheses"
          + (f"; each server confined to {args.server_cpu:g} of a CPU (CFS quota, 100 ms period)"
             if args.server_cpu else "") + "\n")
    print("| job | " + " | ".join(names) + " | " + " | ".join(f"vs {short(n)}" for n in others) + " |")
    print("|---|" + "---:|" * (len(names) + len(others)))
    for label, _ in jobs:
        unit = " MiB/s" if key(label) == "mib_s" else " IOPS"
        v = [results[(n, label)][key(label)] for n in names]
        print(f"| {label} | " + " | ".join(f"{x:,.0f}{unit}" for x in v) + " | "
              + " | ".join(spread(ratio[(n, label)], paired[(n, label)]) for n in others) + " |")
    print("\nQD1 p99 completion latency (µs) and server CPU time per I/O (µs, user + system from /proc):\n")
    print("| job | " + " | ".join(f"{n} p99" for n in names) + " | " + " | ".join(f"{n} CPU/IO" for n in names) + " |")
    print("|---|" + "---:|" * (2 * len(names)))
    for label, _ in jobs:
        p99 = " | ".join(f"{results[(n, label)]['p99_us']:,.0f}" for n in names)
        cpu = " | ".join(f"{results[(n, label)]['cpu_us_per_io']:.1f}" for n in names)
        print(f"| {label} | {p99} | {cpu} |")
    print("\nfio's own CPU use over each job (% of one CPU, user + system, from fio): fio runs a job in "
          "one thread, so near 100 % it was the client, not the server, that set the pace:\n")
    print("| job | " + " | ".join(f"fio with {n}" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, _ in jobs:
        print(f"| {label} | " + " | ".join(f"{results[(n, label)]['client_cpu_pct']:.0f} %" for n in names) + " |")
    if args.chart:
        chart({k: r for k, r in ratio.items() if k[0] in PEERS},
              f"volume-server vs peers: fio nbd engine, {runtime}s per job, median of {reps}, "
              f"{os.cpu_count()} CPUs", args.chart)


def spread(median, values):
    """A ratio cell: the median, and with more than one repetition the range it comes from."""
    if len(values) < 2:
        return f"{median:.2f}x"
    return f"{median:.2f}x ({min(values):.2f}-{max(values):.2f})"


def short(name):
    """A peer's name as the ratio columns have it."""
    return "qemu-nbd" if name.startswith("qemu-nbd") else name

if __name__ == "__main__":
    main()
