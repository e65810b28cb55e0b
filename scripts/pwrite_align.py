#!/usr/bin/env python3
"""How the alignment of a write's source buffer changes what a buffered `pwrite` costs.

Writes 1 MiB at a time into a 256 MiB file (page cache only, nothing waits for the disk) from a
page-aligned buffer at several offsets, and prints the CPU time per write for each offset. The
first pass over the file also allocates its page cache, so the first figure of the first round
is not comparable; later rounds are.

    python3 scripts/pwrite_align.py [--dir /var/tmp] [--rounds 3]

This is what the NBD session's payload alignment (`PAYLOAD_ALIGN` in
volume-server/src/nbd/session.rs) rests on; see BENCHMARKS.md.
"""
import argparse
import mmap
import os
import tempfile
import time

MIB = 1 << 20
FILE_MIB = 256
WRITES = 400


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the scratch file goes")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(prefix="pwrite-align-", dir=args.dir)
    try:
        os.ftruncate(fd, FILE_MIB * MIB)
        # An anonymous mapping is page-aligned, so offset k is exactly k bytes past a page.
        buf = mmap.mmap(-1, 2 * MIB + 4096)
        buf.write(os.urandom(len(buf)))
        for _ in range(args.rounds):
            for offset in (0, 16, 48, 64, 2048):
                with memoryview(buf)[offset:offset + MIB] as src:
                    cpu = time.process_time()
                    for i in range(WRITES):
                        os.pwrite(fd, src, (i % FILE_MIB) * MIB)
                    per_write = (time.process_time() - cpu) / WRITES * 1e6
                print(f"source offset {offset:5} bytes: {per_write:6.1f} us of CPU per 1 MiB pwrite")
            print()
        buf.close()
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
