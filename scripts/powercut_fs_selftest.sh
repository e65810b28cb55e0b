#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Self-test of scripts/powercut_fs.py: writes files through the mount, some fsync'ed and some
# not, checks the mount shows everything, then cuts the power (kill -9), detaches the mount and
# checks that the backing directory holds exactly what was synced. Needs root, python3 with
# fusepy, libfuse2 and fusermount3 (or umount). Exits non-zero on any mismatch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
backing="$tmp/backing"
mnt="$tmp/mnt"
mkdir "$backing" "$mnt"
pid=""

detach() {
    fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
}
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" || true; fi
    detach
    rm -rf "$tmp"
}
trap cleanup EXIT

python3 "$here/powercut_fs.py" "$backing" "$mnt" >"$tmp/fs.out" 2>"$tmp/fs.err" &
pid=$!
for _ in $(seq 100); do
    grep -q "^mounted " "$tmp/fs.out" && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "powercut_fs exited before mounting:"; cat "$tmp/fs.err"; exit 1
    fi
    sleep 0.1
done
grep -q "^mounted " "$tmp/fs.out" || { echo "powercut_fs did not mount in 10 s"; exit 1; }

# Phase 1: work through the mount, checking reads there.
MNT="$mnt" python3 - <<'EOF'
import ctypes, mmap, os, sys, threading
m = os.environ["MNT"]
libc = ctypes.CDLL(None, use_errno=True)
P = 4096
bad = []

def check(what, got, want):
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                 min(len(got), len(want)))
        bad.append(f"{what}: {len(got)} bytes, want {len(want)}; first difference at {i}")

def put(name, data, offset=0, sync=False, flags=0):
    fd = os.open(f"{m}/{name}", os.O_RDWR | os.O_CREAT | flags, 0o644)
    os.pwrite(fd, data, offset)
    if sync:
        os.fsync(fd)
    os.close(fd)

def get(name):
    with open(f"{m}/{name}", "rb") as f:
        return f.read()

def punch(name, offset, length, mode=3):  # PUNCH_HOLE | KEEP_SIZE; 0x11 = ZERO_RANGE | KEEP_SIZE
    fd = os.open(f"{m}/{name}", os.O_RDWR)
    if libc.fallocate(fd, mode, ctypes.c_int64(offset), ctypes.c_int64(length)) != 0:
        bad.append(f"fallocate({name}, mode {mode:#x}): {os.strerror(ctypes.get_errno())}")
    os.close(fd)

a1 = bytes((i * 7) % 251 for i in range(10000))
put("A", a1, sync=True)                      # synced
put("A", b"X" * 100, 50)                     # then changed ...
put("A", b"Y" * 5000, 10000)                 # ... and grown, unsynced
a = bytearray(a1); a[50:150] = b"X" * 100; a += b"Y" * 5000
check("A through the mount", get("A"), bytes(a))
check("A size", os.stat(f"{m}/A").st_size, len(a))

put("B", b"B" * 8192)                        # never synced
check("B through the mount", get("B"), b"B" * 8192)

c1 = b"c" * (3 * P)
put("C", c1, sync=True)
punch("C", P, P)                             # a whole page, unsynced
punch("C", 100, 100)                         # part of a page, unsynced
punch("C", 2 * P + 10, 20, mode=0x11)        # zero range, unsynced
c = bytearray(c1); c[P:2 * P] = bytes(P); c[100:200] = bytes(100); c[2 * P + 10:2 * P + 30] = bytes(20)
check("C through the mount", get("C"), bytes(c))
with open(f"{m}/C", "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
    check("C through a shared mapping", mm[:], bytes(c))

put("D", b"D" * 5000)                        # unsynced data follows a rename ...
os.rename(f"{m}/D", f"{m}/D2")
fd = os.open(f"{m}/D2", os.O_RDWR); os.fsync(fd); os.close(fd)  # ... and is synced there
put("E", b"E" * 300, flags=os.O_DSYNC)       # O_DSYNC writes are synced by the kernel

# Concurrent unaligned writes from 4 threads to one file, then fdatasync.
f_want = bytearray(64 * 1000)
def writer(t):
    fd = os.open(f"{m}/F", os.O_RDWR)
    for k in range(t, 64, 4):
        os.pwrite(fd, bytes([k + 1]) * 1000, k * 1000)
    os.close(fd)
for k in range(64):
    f_want[k * 1000:(k + 1) * 1000] = bytes([k + 1]) * 1000
put("F", b"")
ts = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
for t in ts: t.start()
for t in ts: t.join()
fd = os.open(f"{m}/F", os.O_RDWR); os.fdatasync(fd); os.close(fd)
check("F through the mount", get("F"), bytes(f_want))

put("G", b"G" * 9000, sync=True)             # truncate is metadata: it persists at once,
os.truncate(f"{m}/G", 5000)                  # and the unsynced write past it is gone
put("G", b"g" * 10, 4995)
check("G through the mount", get("G"), b"G" * 4995 + b"g" * 10)

if bad:
    print("through the mount:\n  " + "\n  ".join(bad)); sys.exit(1)
print("through the mount: ok")
EOF

# Phase 2: the power cut.
{ kill -9 "$pid" && wait "$pid"; } 2>/dev/null || true
pid=""
detach

# Phase 3: the backing directory holds exactly what was synced.
BACKING="$backing" python3 - <<'EOF'
import os, sys
b = os.environ["BACKING"]
P = 4096
bad = []

def check(what, got, want):
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                 min(len(got), len(want)))
        bad.append(f"{what}: {len(got)} bytes, want {len(want)}; first difference at {i}")

def get(name):
    with open(f"{b}/{name}", "rb") as f:
        return f.read()

check("A after the cut", get("A"), bytes((i * 7) % 251 for i in range(10000)))
check("B after the cut", get("B"), b"")
check("C after the cut", get("C"), b"c" * (3 * P))
check("D2 after the cut", get("D2"), b"D" * 5000)
if os.path.exists(f"{b}/D"):
    bad.append("D still exists after its rename")
check("E after the cut", get("E"), b"E" * 300)
check("F after the cut", get("F"), b"".join(bytes([k + 1]) * 1000 for k in range(64)))
check("G after the cut", get("G"), b"G" * 5000)
left = sorted(set(os.listdir(b)) - {"A", "B", "C", "D2", "E", "F", "G"})
if left:
    bad.append(f"unexpected files: {left}")
if bad:
    print("after the power cut:\n  " + "\n  ".join(bad)); sys.exit(1)
print("after the power cut: ok")
EOF
echo "powercut_fs selftest: 1 passed, 0 failed"
