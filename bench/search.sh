#!/usr/bin/env bash
# bench/search.sh BIN: latency of the three-filter property search (SQLite on a worker thread) on
# the demo data, at 64 keep-alive connections. Target: p99 <= 5 ms.
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

PORT="$(free_port)"
HEARTH_LOG_LEVEL=warn start_hearth "$BIN" "$PORT" "$BENCH_TMP/data" "$BENCH_TMP/hearth.log"
URL="http://127.0.0.1:$PORT$QUERY"

echo "== search: GET $QUERY"
echo "   $(nproc) cores; hearth threads: ${HEARTH_THREADS:-default (cores)}, workers: ${HEARTH_WORKERS:-default}"
# sanity: the query answers 200 with 20 items
n="$(curl -s "$URL" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"
echo "   the query returns $n items"
[[ "$n" == 20 ]] || echo "   WARNING: expected 20 items"

wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARM_SECS}s" "$URL" >/dev/null 2>&1 || true
# for reference: one connection, one request at a time (no queueing)
one="$(wrk -t1 -c1 -d3s -s "$BENCH_DIR/latency.lua" "$URL" 2>&1 | grep '^RESULT ' || true)"
echo "   reference, wrk -t1 -c1 -d3s: ${one#RESULT }"
echo "--- wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s -s bench/latency.lua '$URL'"
out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" -s "$BENCH_DIR/latency.lua" "$URL" 2>&1)" || true
echo "$out" | sed 's/^/   /'
line="$(echo "$out" | grep '^RESULT ' || true)"
[[ -n "$line" ]] || { echo "TARGET search p99 = ? (wrk produced no result; target <= ${TARGET_P99_MS} ms)  MISS"; exit 0; }
get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }
P50="$(get p50_ms)"; P90="$(get p90_ms)"; P99="$(get p99_ms)"; MAX="$(get max_ms)"; RPS="$(get rps)"
ERRS=$(( $(get non2xx) + $(get connect) + $(get read) + $(get write) + $(get timeout) ))
kill -0 "$HEARTH_PID" 2>/dev/null || { echo "   hearth DIED during the run; log:"; tail -20 "$BENCH_TMP/hearth.log"; }
echo "   p50 ${P50} ms   p90 ${P90} ms   p99 ${P99} ms   max ${MAX} ms   ${RPS} req/s   errors ${ERRS}"
OK="$(py_cmp "$P99 <= $TARGET_P99_MS and $ERRS == 0")"
echo "TARGET search p99 = ${P99} ms (p50 ${P50}, p90 ${P90}, max ${MAX} ms, ${RPS} req/s, ${ERRS} errors; target <= ${TARGET_P99_MS} ms, 0 errors)  $(verdict "$OK")"
