#!/usr/bin/env bash
# bench/cache.sh BIN: requests/s of cached GET /api/properties/{id} (a small set of ids, every
# request a cache hit) against GET /health/live on the same server, response cache on Redis as
# shipped (near cache in front, the target) and, for reference, on Redis with the near cache off
# (HEARTH_CACHE_NEAR_MB=0: every hit read from Redis) and in-process (REDIS_URL unset). All three
# servers on PostgreSQL.
# Target: cached /api/properties/{id} req/s >= 0.5 x /health/live req/s, on Redis.
# Needs: wrk, PostgreSQL 15 + Redis (scripts/services.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

WRK_THREADS="${BENCH_WRK_THREADS:-2}"
WRK_CONNS="${BENCH_CACHE_CONNS:-64}"
WRK_SECS="${BENCH_CACHE_SECS:-10}"
WARM_SECS="${BENCH_WARM_SECS:-2}"
ROUNDS="${BENCH_CACHE_ROUNDS:-2}"
NIDS="${BENCH_CACHE_IDS:-64}"
TARGET=0.5
command -v wrk >/dev/null || die "wrk is not installed (scripts/deps.sh --bench)"

# ids 1, 61, 121, ... (NIDS of them, spread over Ames and Sacramento rows)
IDS=()
for k in $(seq 0 $((NIDS - 1))); do IDS+=($((1 + (k * 3862 / NIDS)))); done

SERVICES_DIR=""
stop_all() {
  bench_cleanup
  [[ -z "$SERVICES_DIR" ]] || "$ROOT/scripts/services.sh" stop "$SERVICES_DIR" >/dev/null 2>&1 || true
}
trap stop_all EXIT
svc_env="$("$ROOT/scripts/services.sh" start 2>"$BENCH_TMP/services.log")" \
  || { cat "$BENCH_TMP/services.log" >&2; die "scripts/services.sh start failed"; }
eval "$svc_env"
unset S3_ENDPOINT S3_BUCKET S3_REGION S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY  # objects stay on the filesystem
SERVICES_DIR="$HEARTH_SERVICES_DIR"
REDIS_URL_SAVED="$REDIS_URL"
unset REDIS_URL
export DATABASE_URL

# metric NAME PORT: hearth's NAME{...} samples on /metrics, summed over their labels (the cache
# tiers); NAME may carry a label set, e.g. 'hearth_cache_hits_total{backend="near"'
# (awk reads all of it: an early exit could SIGPIPE curl and, with pipefail, stop the script)
metric() { curl -s "http://127.0.0.1:$2/metrics" | awk -v m="$1" 'index($0, m) == 1 && substr($0, length(m) + 1, 1) ~ /[{,}]/ {v += $2} END {print v + 0}'; }
get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }

# hearth with the Redis cache (started first: it migrates and imports the demo), then in-process
RPORT="$(free_port)"
REDIS_URL="$REDIS_URL_SAVED" HEARTH_CACHE_TTL_MS=600000 HEARTH_LOG_LEVEL=warn \
  start_hearth "$BIN" "$RPORT" "$BENCH_TMP/data-redis" "$BENCH_TMP/hearth-redis.log"
RPID="$HEARTH_PID"
NPORT="$(free_port)"
REDIS_URL="$REDIS_URL_SAVED" HEARTH_CACHE_TTL_MS=600000 HEARTH_LOG_LEVEL=warn HEARTH_CACHE_NEAR_MB=0 \
  start_hearth "$BIN" "$NPORT" "$BENCH_TMP/data-redis-only" "$BENCH_TMP/hearth-redis-only.log"
NPID="$HEARTH_PID"
MPORT="$(free_port)"
HEARTH_CACHE_TTL_MS=600000 HEARTH_LOG_LEVEL=warn \
  start_hearth "$BIN" "$MPORT" "$BENCH_TMP/data-mem" "$BENCH_TMP/hearth-mem.log"
MPID="$HEARTH_PID"

echo "== cache: cached GET /api/properties/{id} vs GET /health/live, same server"
echo "   $(nproc) cores; PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), $(redis-server --version | awk '{print $1, $2, $3}') (scripts/services.sh)"
echo "   hearth: serve --demo on PostgreSQL, HEARTH_CACHE_TTL_MS=600000, threads ${HEARTH_THREADS:-default (cores)}, workers ${HEARTH_WORKERS:-default}"
echo "   ids: $NIDS (${IDS[0]}, ${IDS[1]}, ${IDS[2]}, ..., ${IDS[$((NIDS - 1))]}), each fetched once before measuring"
echo "   wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s (each after a ${WARM_SECS}s warm-up): -s bench/latency.lua /health/live, -s bench/ids.lua /api/properties/{id}; $ROUNDS interleaved round(s), best of each scored"

# warm NAME PORT: one GET per id, then check the next pass is all hits
warm() {
  local name="$1" port="$2" h0 m0 h1 m1
  printf '%s\n' "${IDS[@]}" | "$PY" "$BENCH_DIR/cache_client.py" "http://127.0.0.1:$port" >/dev/null \
    || die "$name: warming failed"
  h0="$(metric hearth_cache_hits_total "$port")"; m0="$(metric hearth_cache_misses_total "$port")"
  printf '%s\n' "${IDS[@]}" | "$PY" "$BENCH_DIR/cache_client.py" "http://127.0.0.1:$port" >/dev/null
  h1="$(metric hearth_cache_hits_total "$port")"; m1="$(metric hearth_cache_misses_total "$port")"
  echo "   $name: warmed; a second pass over the $NIDS ids: $((h1 - h0)) hits, $((m1 - m0)) misses"
}

# run NAME PORT LUA PATH [ARGS...]: warm-up, measured run; sets RPS (empty if no result)
run() {
  local name="$1" port="$2" lua="$3" path="$4" out
  shift 4
  local url="http://127.0.0.1:$port$path"
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARM_SECS}s" -s "$BENCH_DIR/$lua" "$url" -- "$@" >/dev/null 2>&1 || true
  out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" -s "$BENCH_DIR/$lua" "$url" -- "$@" 2>&1)" || true
  line="$(echo "$out" | grep '^RESULT ' || true)"
  RPS=""
  if [[ -z "$line" ]]; then
    echo "   $name: wrk produced no result:"; echo "$out" | sed 's/^/     /'
    return 0
  fi
  RPS="$(get rps)"
  local errs=$(( $(get non2xx) + $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  echo "   $name: ${RPS} req/s  p50 $(get p50_ms) ms  p99 $(get p99_ms) ms  max $(get max_ms) ms  errors $errs"
  [[ "$errs" == 0 ]] || echo "   WARNING: $name had errors"
}

# backend NAME PORT PID: rounds of /health/live and cached ids; sets B_LIVE B_IDS B_HITS B_MISSES
backend() {
  local name="$1" port="$2" pid="$3" h0 m0 h1 m1
  warm "$name" "$port"
  h0="$(metric hearth_cache_hits_total "$port")"; m0="$(metric hearth_cache_misses_total "$port")"
  B_LIVE=0; B_IDS=0; local all_live=() all_ids=()
  for r in $(seq "$ROUNDS"); do
    run "$name /health/live (round $r/$ROUNDS)" "$port" latency.lua /health/live
    [[ -z "$RPS" ]] || { all_live+=("$RPS"); B_LIVE="$("$PY" -c "print(max($B_LIVE, $RPS))")"; }
    run "$name /api/properties/{id} cached (round $r/$ROUNDS)" "$port" ids.lua / "${IDS[@]}"
    [[ -z "$RPS" ]] || { all_ids+=("$RPS"); B_IDS="$("$PY" -c "print(max($B_IDS, $RPS))")"; }
    kill -0 "$pid" 2>/dev/null || { echo "   hearth ($name) DIED during the run"; break; }
  done
  h1="$(metric hearth_cache_hits_total "$port")"; m1="$(metric hearth_cache_misses_total "$port")"
  B_HITS=$((h1 - h0)); B_MISSES=$((m1 - m0))
  echo "   $name rounds: /health/live ${all_live[*]}  ids ${all_ids[*]} req/s; cache during the runs: $B_HITS hits, $B_MISSES misses"
}

# redis_calls CMD: calls of CMD (e.g. get) Redis has answered so far
redis_calls() { redis-cli -u "$REDIS_URL_SAVED" INFO commandstats | tr -d '\r' | awk -F'[:=,]' -v c="cmdstat_$1" '$1==c {n=$3} END {print n+0}'; }
# redis_backend NAME PORT PID: backend, then where the hits came from and Redis GETs per request
redis_backend() {
  local n0 n1 h0 h1 g0 g1 r0 r1
  n0="$(metric 'hearth_cache_hits_total{backend="near"' "$2")"; h0="$(metric hearth_cache_hits_total "$2")"
  r0="$(metric 'hearth_http_requests_total{route="/api/properties/{id}"' "$2")"
  g0="$(redis_calls get)"
  backend "$@"
  g1="$(redis_calls get)"
  n1="$(metric 'hearth_cache_hits_total{backend="near"' "$2")"; h1="$(metric hearth_cache_hits_total "$2")"
  r1="$(metric 'hearth_http_requests_total{route="/api/properties/{id}"' "$2")"
  echo "   $1, warm-up and runs: $((h1 - h0)) cache hits, $((n1 - n0)) of them from the near cache; Redis GET calls $((g1 - g0)) for $((r1 - r0)) GET /api/properties/{id} ($("$PY" -c "print(f'{($g1 - $g0) / max(1, $r1 - $r0):.2f}')") per request)"
}
echo "-- response cache on Redis (REDIS_URL set), as shipped: near cache in front"
redis_backend redis "$RPORT" "$RPID"
R_LIVE="$B_LIVE"; R_IDS="$B_IDS"; R_MISSES="$B_MISSES"
echo "-- response cache on Redis, near cache off (HEARTH_CACHE_NEAR_MB=0), for reference"
redis_backend redis-only "$NPORT" "$NPID"
N_LIVE="$B_LIVE"; N_IDS="$B_IDS"; N_MISSES="$B_MISSES"
echo "-- response cache in-process (REDIS_URL unset), for reference"
backend memory "$MPORT" "$MPID"
M_LIVE="$B_LIVE"; M_IDS="$B_IDS"; M_MISSES="$B_MISSES"

for f in "$BENCH_TMP/hearth-redis.log" "$BENCH_TMP/hearth-redis-only.log" "$BENCH_TMP/hearth-mem.log"; do
  n="$(grep -c . "$f" || true)"
  [[ "$n" == 0 ]] || { echo "   $(basename "$f"): $n line(s) at warn or above; last ones:"; tail -n 3 "$f" | cut -c1-300 | sed 's/^/     /'; }
done

ratio() { "$PY" -c "print(f'{$1 / $2:.3f}' if $2 > 0 else '0.000')"; }
RR="$(ratio "$R_IDS" "$R_LIVE")"; NR="$(ratio "$N_IDS" "$N_LIVE")"; MR="$(ratio "$M_IDS" "$M_LIVE")"
OK="$(py_cmp "$R_LIVE > 0 and $R_IDS / $R_LIVE >= $TARGET and $R_MISSES == 0")"
echo "TARGET cache redis  cached-id/health req/s ratio = $RR (ids $R_IDS, /health/live $R_LIVE req/s; $R_MISSES misses during the runs; target >= $TARGET)  $(verdict "$OK")"
OK="$(py_cmp "$N_LIVE > 0 and $N_IDS / $N_LIVE >= $TARGET and $N_MISSES == 0")"
echo "INFO   cache redis, near cache off, cached-id/health req/s ratio = $NR (ids $N_IDS, /health/live $N_LIVE req/s; $N_MISSES misses during the runs; same target would be $(verdict "$OK"))"
OK="$(py_cmp "$M_LIVE > 0 and $M_IDS / $M_LIVE >= $TARGET and $M_MISSES == 0")"
echo "INFO   cache memory cached-id/health req/s ratio = $MR (ids $M_IDS, /health/live $M_LIVE req/s; $M_MISSES misses during the runs; same target would be $(verdict "$OK"))"
