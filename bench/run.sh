#!/usr/bin/env bash
# bench/run.sh BIN: run hearth's benchmarks in order (http, search, idle, postgres, cache, cache_zipf, ws, jobs, ml,
# recommend, images, hnsw), print their figures and a
# summary with PASS/MISS per target. Exits 0 even when a target is missed (benchmarks are not
# tests); exits non-zero only when it cannot run at all (no binary, no wrk). See bench/README.md.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${1:-}"
[[ -n "$BIN" && -x "$BIN" ]] || { echo "usage: $0 path/to/hearth" >&2; exit 2; }
command -v wrk >/dev/null || { echo "error: wrk is not installed (scripts/deps.sh --bench)" >&2; exit 2; }

LOG="$(mktemp "${TMPDIR:-/tmp}/hearth-bench-run.XXXXXX")"
child=""
trap 'rm -f "$LOG"' EXIT
# on INT/TERM stop the running benchmark (its own EXIT trap stops its servers), then leave
trap '[[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null && wait "$child"; exit 130' INT TERM

echo "hearth benchmarks — $(date -u '+%Y-%m-%d %H:%M UTC') — $(nproc) cores, $(uname -sr)"
echo "binary: $BIN"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

for b in http search idle postgres cache cache_zipf ws jobs ml recommend images hnsw; do
  "$HERE/$b.sh" "$BIN" > >(tee -a "$LOG") 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  child=""
  sleep 0.2   # let tee flush
  if [[ $rc -ne 0 ]]; then
    echo "TARGET $b  benchmark failed to run (exit $rc)  MISS" | tee -a "$LOG"
  fi
  echo
done

echo "================ summary ================"
grep '^TARGET ' "$LOG" | sed 's/^TARGET //'
pass=$(grep -c '^TARGET .* PASS$' "$LOG" || true)
total=$(grep -c '^TARGET ' "$LOG" || true)
echo "----------------------------------------"
echo "$pass of $total targets met"
exit 0
