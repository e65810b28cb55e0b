#!/usr/bin/env bash
# Counts the user-space instructions a volume-server build spends per I/O, with callgrind: a
# figure that does not move with this machine's slow phases, for comparing two builds of the
# data path. The kernel's share (system calls, TCP) is not counted; CPU time per I/O from
# scripts/bench_compare.py is the figure that includes it.
#
#   scripts/callgrind_io.sh target/release/volume-server [rw] [bs] [iodepth] [ios]
#   scripts/callgrind_io.sh /tmp/old-build randread 4k 32 40000
#
# It starts the server under callgrind (the sync I/O engine: valgrind does not run io_uring
# here), fills 64 MiB of an io2 volume through NBD, zeroes the counters, runs one fio job of
# exactly `ios` I/Os with a fixed seed, and prints the instructions counted during that job
# divided by `ios`. KEEP=FILE keeps the profile. Needs valgrind, fio (nbd engine) and jq; ebsctl from target/release.
set -euo pipefail

bin=${1:?usage: callgrind_io.sh VOLUME_SERVER [rw] [bs] [iodepth] [ios]}
rw=${2:-randread}
bs=${3:-4k}
qd=${4:-32}
ios=${5:-40000}
ctl=${EBSCTL:-$(dirname "$0")/../target/release/ebsctl}
for tool in valgrind callgrind_control callgrind_annotate fio jq; do
    command -v "$tool" >/dev/null || { echo "callgrind_io.sh: $tool is missing" >&2; exit 1; }
done

dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

EBS_IO_ENGINE=sync valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" \
    --data-dir "$dir/data" --grpc-addr 127.0.0.1:0 --nbd-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --aws-addr 127.0.0.1:0 --throttle-scale 100 >"$dir/stdout" 2>"$dir/stderr" &
pid=$!
# Under valgrind the server takes seconds to start.
for _ in $(seq 120); do
    grep -q 'grpc=' "$dir/stdout" 2>/dev/null && break
    sleep 1
done
grpc=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' "$dir/stdout" | head -n 1)
[ -n "$grpc" ] || { echo "callgrind_io.sh: the server did not start" >&2; cat "$dir/stderr" >&2; exit 1; }
export EBS_ENDPOINT=http://$grpc
vol=$("$ctl" create-volume --size 256 --volume-type io2 --iops 256000 \
    --availability-zone us-east-1a | jq -r .VolumeId)
host=$("$ctl" register-host --name callgrind --availability-zone us-east-1a | jq -r .InstanceId)
uri=$("$ctl" attach-volume --volume-id "$vol" --instance-id "$host" --device /dev/sdf | jq -r .NbdUri)

fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1m --iodepth=8 --size=64m \
    --output=/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
# `number_ios` only stops a job early; `io_size` lets it go on past the 64 MiB region.
fio --name=job --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" --size=64m \
    --io_size=1t --number_ios="$ios" --randseed=7 --output-format=json --output="$dir/fio.json"
# The dump holds what was counted since the zeroing: the job alone.
callgrind_control -d "$pid" >/dev/null 2>&1
done_ios=$(jq '.jobs[0].read.total_ios + .jobs[0].write.total_ios' "$dir/fio.json")
[ "$done_ios" -eq "$ios" ] || { echo "callgrind_io.sh: fio did $done_ios I/Os, not $ios" >&2; exit 1; }
# KEEP=FILE keeps the profile, for callgrind_annotate.
[ -n "${KEEP:-}" ] && cp "$dir/cg.out.1" "$KEEP"
total=$(callgrind_annotate "$dir/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$(basename "$bin"): $rw $bs QD$qd: $total instructions over $ios I/Os = $((total / ios)) per I/O"
