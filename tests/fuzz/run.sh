#!/usr/bin/env bash
# Run one libFuzzer harness: replay its seed corpus, then fuzz.
#   run.sh HARNESS SEED_CORPUS WORK_DIR SECONDS [RUNS]
# New inputs go to WORK_DIR/corpus (the seeds in the repo are only read); a crash, leak
# or timeout is written to WORK_DIR/crash-* and fails the run. Stops after SECONDS or
# RUNS executions, whichever comes first.
set -euo pipefail
harness=$1 seeds=$2 work=$3 seconds=$4 runs=${5:--1}
mkdir -p "$work/corpus"
# symbolised reports; leaks are findings too
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec "$harness" -max_total_time="$seconds" -runs="$runs" -timeout=20 -rss_limit_mb=3072 \
  -max_len=262144 -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds"
