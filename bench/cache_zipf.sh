#!/usr/bin/env bash
# bench/cache_zipf.sh BIN: response-cache hit rate of GET /api/properties/{id} under a Zipf(1.1)
# workload over 100,000 listings (the demo replicated with jitter, bench/gen_listings.py, imported
# into SQLite with `hearth import --format json`), the in-process cache capped to hold about 10,000
# entries. Also prints the hit rate of an ideal cache and of a plain LRU of the same size for the
# same distribution (bench/zipf_sim.py), and (BENCH_ZIPF_REDIS=1, the default) the same workload
# with the cache on Redis, maxmemory sized for ~10,000 entries, maxmemory-policy BENCH_REDIS_POLICY (default allkeys-lfu).
# Target: hit rate >= 85% (in-process cache).
REDIS_POLICY="${BENCH_REDIS_POLICY:-allkeys-lfu}"
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

ROWS="${BENCH_ZIPF_ROWS:-100000}"
ZIPF_S="${BENCH_ZIPF_S:-1.1}"
ENTRIES="${BENCH_ZIPF_ENTRIES:-10000}"
MULT=48271                                   # rank k -> id ((k-1)*MULT mod ROWS)+1
WRK_THREADS="${BENCH_WRK_THREADS:-2}"
WRK_CONNS="${BENCH_ZIPF_CONNS:-16}"
WRK_SECS="${BENCH_ZIPF_SECS:-30}"
WARM_SECS="${BENCH_ZIPF_WARM:-10}"
WITH_REDIS="${BENCH_ZIPF_REDIS:-1}"
TARGET=0.85
command -v wrk >/dev/null || die "wrk is not installed (scripts/deps.sh --bench)"
"$PY" -c "import math,sys; sys.exit(0 if math.gcd($MULT, $ROWS) == 1 else 1)" || die "BENCH_ZIPF_ROWS must be coprime with $MULT"

SERVICES_DIR=""
stop_all() {
  bench_cleanup
  [[ -z "$SERVICES_DIR" ]] || "$ROOT/scripts/services.sh" stop "$SERVICES_DIR" >/dev/null 2>&1 || true
}
trap stop_all EXIT
unset REDIS_URL DATABASE_URL   # SQLite in HEARTH_DATA_DIR; Redis only where asked for below

# (awk reads all of it: an early exit could SIGPIPE curl and, with pipefail, stop the script)
metric() { curl -s "http://127.0.0.1:$2/metrics" | awk -v m="$1" 'index($0, m "{") == 1 && v == "" {v = $2} END {print v}'; }
get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }
DATA="$BENCH_TMP/data"

echo "== cache_zipf: hit rate of the response cache, GET /api/properties/{id}, Zipf(s=$ZIPF_S) over $ROWS ids, ~$ENTRIES entries"
echo "   $(nproc) cores; hearth on SQLite; wrk -t$WRK_THREADS -c$WRK_CONNS -s bench/zipf.lua, ${WARM_SECS}s warm-up (not counted) then ${WRK_SECS}s measured"

# --- 1. the listings
t0=$(date +%s.%N)
"$PY" "$BENCH_DIR/gen_listings.py" --rows "$ROWS" --seed 1 >"$BENCH_TMP/listings.jsonl" 2>/dev/null
t1=$(date +%s.%N)
out="$(HEARTH_DATA_DIR="$DATA" HEARTH_LOG_LEVEL=warn "$BIN" import "$BENCH_TMP/listings.jsonl" --format json 2>"$BENCH_TMP/import.err")" \
  || { tail -5 "$BENCH_TMP/import.err" >&2; die "import failed"; }
t2=$(date +%s.%N)
echo "-- listings: bench/gen_listings.py --rows $ROWS: $(du -m "$BENCH_TMP/listings.jsonl" | cut -f1) MB of JSON lines in $("$PY" -c "print(f'{$t1 - $t0:.1f}')") s"
echo "   hearth import --format json: $("$PY" -c "print(f'{$t2 - $t1:.1f}')") s ($("$PY" -c "print(f'{$ROWS / ($t2 - $t1):,.0f}')") rows/s): $out"
[[ "$(grep -c . "$BENCH_TMP/import.err" || true)" == 0 ]] || { echo "   import stderr:"; head -5 "$BENCH_TMP/import.err" | sed 's/^/     /'; }

# --- 2. the ideal and LRU hit rates for this distribution (simulated)
"$PY" "$BENCH_DIR/zipf_sim.py" --n "$ROWS" --s "$ZIPF_S" --top "$ENTRIES" --mult "$MULT" >"$BENCH_TMP/top_ids"

# start_plain PORT LOG: `hearth serve` (no --demo: the imported listings only) on DATA in the
# background, with the caller's HEARTH_* settings; waits for /health/live; sets HEARTH_PID
start_plain() {
  HEARTH_DATA_DIR="$DATA" "$BIN" serve --listen "127.0.0.1:$1" 2>"$2" &
  HEARTH_PID=$!
  BENCH_PIDS+=("$HEARTH_PID")
  wait_http "http://127.0.0.1:$1/health/live" "$HEARTH_PID" hearth || { tail -n 20 "$2" >&2; exit 2; }
}
stop_hearth() { kill "$HEARTH_PID" 2>/dev/null || true; wait "$HEARTH_PID" 2>/dev/null || true; }

# --- 3. the average entry size (sizeof(entry_t) + key + value, as hearth_cache_bytes counts it):
# a roomy cache, one GET for each of the ENTRIES most popular ids (the set an ideal cache holds)
PORT="$(free_port)"
HEARTH_CACHE_MB=512 HEARTH_CACHE_TTL_MS=600000 HEARTH_LOG_LEVEL=warn start_plain "$PORT" "$BENCH_TMP/size.log"
w="$("$PY" "$BENCH_DIR/cache_client.py" "http://127.0.0.1:$PORT" <"$BENCH_TMP/top_ids")" || die "warming failed: $w"
CB="$(metric hearth_cache_bytes "$PORT")"; CE="$(metric hearth_cache_entries "$PORT")"
n="$(curl -s "http://127.0.0.1:$PORT/api/properties?limit=1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')"
[[ "$n" == "$ROWS" ]] || echo "   WARNING: the newest listing has id $n, expected $ROWS"
stop_hearth
AVG="$("$PY" -c "print(round($CB / $CE))")"
# HEARTH_CACHE_MB is whole MiB: the nearest to ENTRIES x AVG
MB="$("$PY" -c "print(max(1, round($ENTRIES * $CB / $CE / 1048576)))")"
echo "-- entry size: ${w#WARM } (the $ENTRIES most popular ids) -> $CE entries, $CB bytes: $AVG bytes per entry"
echo "   (entry_t 56 bytes + key ~45 + value: status, content type, headers, body); $ENTRIES x $AVG = $("$PY" -c "print(f'{$ENTRIES * $AVG / 1048576:.2f}')") MiB -> HEARTH_CACHE_MB=$MB"

# zipf_run NAME PORT: warm-up, metrics, measured run, metrics; sets HR (hit rate) and prints
zipf_run() {
  local name="$1" port="$2" url="http://127.0.0.1:$2/" h0 m0 h1 m1 out errs
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARM_SECS}s" -s "$BENCH_DIR/zipf.lua" "$url" -- "$ROWS" "$ZIPF_S" 7 "$MULT" >/dev/null 2>&1 || true
  h0="$(metric hearth_cache_hits_total "$port")"; m0="$(metric hearth_cache_misses_total "$port")"
  out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" -s "$BENCH_DIR/zipf.lua" "$url" -- "$ROWS" "$ZIPF_S" 1 "$MULT" 2>&1)" || true
  h1="$(metric hearth_cache_hits_total "$port")"; m1="$(metric hearth_cache_misses_total "$port")"
  line="$(echo "$out" | grep '^RESULT ' || true)"
  [[ -n "$line" ]] || { echo "   $name: wrk produced no result:"; echo "$out" | sed 's/^/     /'; }
  errs=0
  [[ -z "$line" ]] || errs=$(( $(get non2xx) + $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  HITS=$((h1 - h0)); MISSES=$((m1 - m0))
  HR="$("$PY" -c "print(f'{$HITS / max(1, $HITS + $MISSES):.4f}')")"
  echo "   $name: ${line:+$(get rps) req/s, $(get requests) requests, p50 $(get p50_ms) ms, p99 $(get p99_ms) ms, }errors $errs"
  echo "   $name: measured run: $HITS hits, $MISSES misses -> hit rate $HR"
  [[ "$errs" == 0 ]] || echo "   WARNING: $name had errors"
}

# --- 4. the in-process cache, capped
PORT="$(free_port)"
HEARTH_CACHE_MB="$MB" HEARTH_CACHE_TTL_MS=600000 HEARTH_LOG_LEVEL=warn start_plain "$PORT" "$BENCH_TMP/memory.log"
echo "-- in-process cache, HEARTH_CACHE_MB=$MB, HEARTH_CACHE_TTL_MS=600000"
zipf_run memory "$PORT"
M_HR="$HR"
ME="$(metric hearth_cache_entries "$PORT")"; MBY="$(metric hearth_cache_bytes "$PORT")"; MEV="$(metric hearth_cache_evictions_total "$PORT")"
echo "   memory: held at the end: $ME entries, $MBY bytes ($("$PY" -c "print(f'{$MBY / max(1, $ME):.0f}')") per entry); evictions so far $MEV"
kill -0 "$HEARTH_PID" 2>/dev/null || echo "   hearth DIED during the run"
stop_hearth
n="$(grep -c . "$BENCH_TMP/memory.log" || true)"
[[ "$n" == 0 ]] || { echo "   hearth logged $n line(s) at warn or above; last ones:"; tail -n 3 "$BENCH_TMP/memory.log" | cut -c1-300 | sed 's/^/     /'; }

echo "-- model caches, same distribution (bench/zipf_sim.py; ideal = the K most probable ids held)"
SIM="$("$PY" "$BENCH_DIR/zipf_sim.py" --n "$ROWS" --s "$ZIPF_S" --k "$ENTRIES" --k "$ME")"
echo "$SIM" | sed 's/^/   /'
simval() { echo "$SIM" | awk -v k="k=$1" -v f="$2=" '$2==k {for (i=3;i<=NF;i++) if (index($i,f)==1) {print substr($i,length(f)+1); exit}}'; }
IDEAL="$(simval "$ENTRIES" ideal)"; LRU="$(simval "$ENTRIES" lru)"
IDEAL_H="$(simval "$ME" ideal)"; LRU_H="$(simval "$ME" lru16)"

# --- 5. Redis, maxmemory for ~ENTRIES entries, $REDIS_POLICY
R_LINE=""
if [[ "$WITH_REDIS" == 1 ]]; then
  svc_env="$("$ROOT/scripts/services.sh" start 2>"$BENCH_TMP/services.log")" \
    || { cat "$BENCH_TMP/services.log" >&2; die "scripts/services.sh start failed"; }
  eval "$svc_env"
  unset S3_ENDPOINT S3_BUCKET S3_REGION S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY  # objects stay on the filesystem
  SERVICES_DIR="$HEARTH_SERVICES_DIR"
  unset DATABASE_URL              # hearth stays on the SQLite listings; only the cache moves
  RURL="$REDIS_URL"
  rc() { redis-cli -u "$RURL" "$@" | tr -d '\r'; }
  rinfo() { rc INFO "$1" | awk -F: -v k="$2" '$1==k {print $2}'; }
  PORT="$(free_port)"
  REDIS_URL="$RURL" HEARTH_CACHE_NEAR_MB=0 HEARTH_CACHE_TTL_MS=600000 HEARTH_LOG_LEVEL=warn start_plain "$PORT" "$BENCH_TMP/redis.log"
  # size: the ENTRIES most popular ids stored, then used_memory per key
  rc CONFIG SET maxmemory-policy $REDIS_POLICY >/dev/null
  base="$(rinfo memory used_memory)"
  "$PY" "$BENCH_DIR/cache_client.py" "http://127.0.0.1:$PORT" <"$BENCH_TMP/top_ids" >/dev/null || die "warming (redis) failed"
  ckeys() { rc EVAL "return #redis.call('KEYS', 'hearth:c:*')" 0; }   # response-cache keys
  used="$(rinfo memory used_memory)"; keys="$(ckeys)"
  PER="$("$PY" -c "print(round(($used - $base) / max(1, $keys)))")"
  MAXMEM="$("$PY" -c "print($base + $ENTRIES * $PER)")"
  rc CONFIG SET maxmemory "$MAXMEM" >/dev/null
  echo "-- Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) cache (REDIS_URL set), HEARTH_CACHE_TTL_MS=600000, HEARTH_CACHE_NEAR_MB=0 (Redis's own hit rate, no near cache in front)"
  echo "   sizing: used_memory $base bytes before, $used after storing the $ENTRIES most popular ids ($keys cache keys): $PER bytes per key"
  echo "   redis-cli CONFIG SET maxmemory-policy $REDIS_POLICY; CONFIG SET maxmemory $MAXMEM ($base + $ENTRIES x $PER; maxmemory-samples $(rc CONFIG GET maxmemory-samples | tail -1))"
  ev0="$(rinfo stats evicted_keys)"
  zipf_run redis "$PORT"
  R_HR="$HR"
  RK="$(ckeys)"; ev1="$(rinfo stats evicted_keys)"
  echo "   redis: held at the end: $RK cache keys, used_memory $(rinfo memory used_memory) (maxmemory $MAXMEM); evicted_keys $ev0 -> $ev1"
  kill -0 "$HEARTH_PID" 2>/dev/null || echo "   hearth DIED during the run"
  stop_hearth
  n="$(grep -c . "$BENCH_TMP/redis.log" || true)"
  [[ "$n" == 0 ]] || { echo "   hearth logged $n line(s) at warn or above; last ones:"; tail -n 3 "$BENCH_TMP/redis.log" | cut -c1-300 | sed 's/^/     /'; }
  R_LINE="redis $R_HR with $RK keys held"
fi

OK="$(py_cmp "$M_HR >= $TARGET")"
echo "TARGET cache_zipf hit rate = $M_HR (in-process, HEARTH_CACHE_MB=$MB holding $ME entries; ideal cache of $ENTRIES $IDEAL, plain LRU of $ENTRIES $LRU; for $ME entries: ideal $IDEAL_H, 16-shard LRU $LRU_H; target >= $TARGET)  $(verdict "$OK")"
if [[ -n "$R_LINE" ]]; then
  OK="$(py_cmp "$R_HR >= $TARGET")"
  echo "INFO   cache_zipf hit rate on Redis = $R_HR ($REDIS_POLICY, maxmemory $MAXMEM, $RK cache keys held at the end; same target would be $(verdict "$OK"))"
fi
