#!/usr/bin/env bash
# bench/search.sh BIN: latency of the three-filter property search (SQLite on a worker thread) on
# the demo data, at 64 keep-alive connections, as shipped (response cache on) and with the cache
# off (every request runs the query). Target: p99 <= 5 ms.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"

WRK_THREADS="${BENCH_WRK_THREADS:-2}"
WRK_CONNS="${BENCH_SEARCH_CONNS:-64}"
WRK_SECS="${BENCH_SEARCH_SECS:-15}"
WARM_SECS="${BENCH_WARM_SECS:-2}"
TARGET_P99_MS=5
QUERY='/api/properties?city=Ames&min_bedrooms=3&max_price=250000&sort=price&limit=20'
command -v wrk >/dev/null || die "wrk is not installed (scripts/deps.sh --bench)"

get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }

# measure LABEL CACHE_MB: one server, warm-up, a one-connection reference, then the measured run;
# sets P50 P90 P99 MAX RPS ERRS (P99 empty when wrk gave no result).
measure() {
  local label="$1" cache_mb="$2" port url out one
  port="$(free_port)"
  HEARTH_CACHE_MB="$cache_mb" HEARTH_LOG_LEVEL=warn start_hearth "$BIN" "$port" "$BENCH_TMP/data-$cache_mb" "$BENCH_TMP/hearth-$cache_mb.log"
  url="http://127.0.0.1:$port$QUERY"
  echo "== search ($label): GET $QUERY"
  echo "   $(nproc) cores; hearth threads: ${HEARTH_THREADS:-default (cores)}, workers: ${HEARTH_WORKERS:-default}, HEARTH_CACHE_MB=$cache_mb"
  n="$(curl -s "$url" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"
  echo "   the query returns $n items"
  [[ "$n" == 20 ]] || echo "   WARNING: expected 20 items"
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARM_SECS}s" "$url" >/dev/null 2>&1 || true
  one="$(wrk -t1 -c1 -d3s -s "$BENCH_DIR/latency.lua" "$url" 2>&1 | grep '^RESULT ' || true)"
  echo "   reference, wrk -t1 -c1 -d3s: ${one#RESULT }"
  echo "--- wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s -s bench/latency.lua '$url'"
  out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" -s "$BENCH_DIR/latency.lua" "$url" 2>&1)" || true
  echo "$out" | sed 's/^/   /'
  line="$(echo "$out" | grep '^RESULT ' || true)"
  kill -0 "$HEARTH_PID" 2>/dev/null || { echo "   hearth DIED during the run; log:"; tail -20 "$BENCH_TMP/hearth-$cache_mb.log"; }
  kill "$HEARTH_PID" 2>/dev/null; wait "$HEARTH_PID" 2>/dev/null || true
  P99=""
  [[ -n "$line" ]] || return 0
  P50="$(get p50_ms)"; P90="$(get p90_ms)"; P99="$(get p99_ms)"; MAX="$(get max_ms)"; RPS="$(get rps)"
  ERRS=$(( $(get non2xx) + $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  echo "   p50 ${P50} ms   p90 ${P90} ms   p99 ${P99} ms   max ${MAX} ms   ${RPS} req/s   errors ${ERRS}"
}

# 1. as shipped: repeated searches are answered from the response cache on the event loop
measure "response cache on, as shipped" 64
if [[ -z "$P99" ]]; then
  echo "TARGET search p99 = ? (wrk produced no result; target <= ${TARGET_P99_MS} ms)  MISS"
else
  OK="$(py_cmp "$P99 <= $TARGET_P99_MS and $ERRS == 0")"
  echo "TARGET search p99 = ${P99} ms (p50 ${P50}, p90 ${P90}, max ${MAX} ms, ${RPS} req/s, ${ERRS} errors; target <= ${TARGET_P99_MS} ms, 0 errors)  $(verdict "$OK")"
fi
echo
# 2. every request through SQLite on the worker pool (the cost of a cache miss), for the record
measure "response cache off: every request runs the query" 0
if [[ -n "$P99" ]]; then
  OK="$(py_cmp "$P99 <= $TARGET_P99_MS and $ERRS == 0")"
  echo "TARGET search p99 uncached = ${P99} ms (p50 ${P50}, p90 ${P90}, max ${MAX} ms, ${RPS} req/s, ${ERRS} errors; target <= ${TARGET_P99_MS} ms)  $(verdict "$OK")"
fi
