#!/usr/bin/env bash
# The long crash series: kill -9 the server N times (default 50) during fio verify jobs, a
# stamping gRPC writer and control-plane churn, checking after every restart that each flushed
# write is present and the catalog holds no half-made state (volume-server/tests/crash_harness.rs).
# Runs against a release build; prints one line per trial and the totals.
set -euo pipefail
cd "$(dirname "$0")/.."
EBS_CRASH_TRIALS="${1:-50}" cargo test --release -p volume-server --test crash_harness -- --nocapture 2>&1 \
    | grep -E '^(trial|crash harness|test result)|panicked|FAILED'
