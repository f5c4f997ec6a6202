#!/usr/bin/env bash
# bench/postgres.sh BIN: property search on PostgreSQL, hearth vs the seeds' stack as a peer
# (bench/peer_fastapi: FastAPI + psycopg2, pooled connections, uvicorn with one worker per core),
# same database, same SQL, same JSON, a different query on every request (bench/search_vary.lua),
# no result caching on either side. Targets: hearth >= 15x the peer's requests/s at 64 connections,
# with a lower p99. Also reports pgbench running the same SQL (the database's own ceiling here).
# Needs: wrk, PostgreSQL 15 (scripts/services.sh; pgbench from its bin dir) and the Debian packages
# python3-fastapi python3-uvicorn python3-psycopg2 (run with /usr/bin/python3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

WRK_THREADS="${BENCH_WRK_THREADS:-2}"
WRK_CONNS="${BENCH_PG_CONNS:-64}"
WRK_SECS="${BENCH_PG_SECS:-15}"
WARM_SECS="${BENCH_WARM_SECS:-3}"
ROUNDS="${BENCH_PG_ROUNDS:-1}"
PGBENCH_CLIENTS="${BENCH_PGBENCH_CLIENTS:-8}"
PGBENCH_SECS="${BENCH_PGBENCH_SECS:-10}"
PEER_WORKERS="${BENCH_PEER_WORKERS:-$(nproc)}"
TARGET_RATIO=15
PGBIN=/usr/lib/postgresql/15/bin

command -v wrk >/dev/null || die "wrk is not installed (scripts/deps.sh --bench)"
[[ -x "$PGBIN/pgbench" && -x "$PGBIN/postgres" ]] || die "PostgreSQL 15 is not installed ($PGBIN/pgbench, $PGBIN/postgres)"
if ! "$PY" -c 'import fastapi, uvicorn, psycopg2' 2>/dev/null; then
  die "the FastAPI peer needs Debian's python3-fastapi python3-uvicorn python3-psycopg2 for $PY:
    apt-get install -y python3-fastapi python3-uvicorn python3-psycopg2"
fi

# services first; stop them after the servers (bench_cleanup) on any exit
SERVICES_DIR=""
stop_all() {
  bench_cleanup
  [[ -z "$SERVICES_DIR" ]] || "$ROOT/scripts/services.sh" stop "$SERVICES_DIR" >/dev/null 2>&1 || true
}
trap stop_all EXIT
# (its own temp dir: the postgres user cannot enter BENCH_TMP, which is mode 700)
svc_env="$("$ROOT/scripts/services.sh" start 2>"$BENCH_TMP/services.log")" \
  || { cat "$BENCH_TMP/services.log" >&2; die "scripts/services.sh start failed"; }
eval "$svc_env"
unset S3_ENDPOINT S3_BUCKET S3_REGION S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY  # objects stay on the filesystem
SERVICES_DIR="$HEARTH_SERVICES_DIR"
export DATABASE_URL

# hearth: migrates and imports the demo (3,862 rows) into PostgreSQL at first start; no response cache
HPORT="$(free_port)"
HLOG="$BENCH_TMP/hearth.log"
HEARTH_CACHE_MB=0 HEARTH_LOG_LEVEL=warn start_hearth "$BIN" "$HPORT" "$BENCH_TMP/data" "$HLOG"
HEARTH_MAIN_PID="$HEARTH_PID"

# the peer: uvicorn, one worker process per core, each with its own psycopg2 pool
PPORT="$(free_port)"
PLOG="$BENCH_TMP/peer.log"
(cd "$BENCH_DIR/peer_fastapi" && exec "$PY" -m uvicorn app:app --workers "$PEER_WORKERS" --no-access-log \
  --host 127.0.0.1 --port "$PPORT") >"$PLOG" 2>&1 &
PEER_PID=$!
BENCH_PIDS+=("$PEER_PID")
wait_http "http://127.0.0.1:$PPORT/health/live" "$PEER_PID" "the FastAPI peer" || { tail -20 "$PLOG" >&2; exit 2; }

rows="$("$PGBIN/psql" -Atq "$DATABASE_URL" -c 'SELECT count(*) FROM properties')"
echo "== postgres: GET /api/properties, a different search per request (bench/search_vary.lua)"
echo "   $(nproc) cores; PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (scripts/services.sh), $rows rows"
echo "   hearth: HEARTH_CACHE_MB=0, threads ${HEARTH_THREADS:-default (cores)}, workers ${HEARTH_WORKERS:-default}, db pool ${HEARTH_DB_POOL:-default (= workers)}"
echo "   peer:   FastAPI $("$PY" -c 'import fastapi; print(fastapi.__version__)'), uvicorn $("$PY" -c 'import uvicorn; print(uvicorn.__version__)'), psycopg2 $("$PY" -c 'import psycopg2; print(psycopg2.__version__.split()[0])'), $PEER_WORKERS workers x ${PEER_POOL:-4} connections"
echo "-- same answers (hearth vs peer):"
"$PY" "$BENCH_DIR/peer_fastapi/compare.py" "http://127.0.0.1:$HPORT" "http://127.0.0.1:$PPORT" \
  || { echo "--- last lines of the peer's log:"; tail -n 30 "$PLOG"; echo "--- hearth's:"; tail -n 10 "$HLOG"; die "hearth and the peer do not answer alike; not measuring"; }

get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }

# run_wrk NAME URL: warm-up, then the measured run; sets RPS P50 P99 MAX ERRS (RPS empty if no result)
run_wrk() {
  local name="$1" url="$2" out
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARM_SECS}s" -s "$BENCH_DIR/search_vary.lua" "$url" >/dev/null 2>&1 || true
  out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" -s "$BENCH_DIR/search_vary.lua" "$url" 2>&1)" || true
  line="$(echo "$out" | grep '^RESULT ' || true)"
  RPS=""
  if [[ -z "$line" ]]; then
    echo "   $name: wrk produced no result:"; echo "$out" | sed 's/^/     /'
    return 0
  fi
  RPS="$(get rps)"; P50="$(get p50_ms)"; P99="$(get p99_ms)"; MAX="$(get max_ms)"
  ERRS=$(( $(get non2xx) + $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  echo "   $name: ${RPS} req/s   p50 ${P50} ms   p99 ${P99} ms   max ${MAX} ms   errors ${ERRS}  (${line#RESULT })"
}

echo "--- wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s -s bench/search_vary.lua (each after a ${WARM_SECS}s warm-up), $ROUNDS interleaved round(s), best req/s of each scored"
H_RPS=""; F_RPS=""
for r in $(seq "$ROUNDS"); do
  run_wrk "hearth  (round $r/$ROUNDS)" "http://127.0.0.1:$HPORT"
  if [[ -n "$RPS" ]] && { [[ -z "$H_RPS" ]] || [[ "$(py_cmp "$RPS > $H_RPS")" == 1 ]]; }; then
    H_RPS="$RPS"; H_P50="$P50"; H_P99="$P99"; H_MAX="$MAX"; H_ERRS="$ERRS"
  fi
  run_wrk "fastapi (round $r/$ROUNDS)" "http://127.0.0.1:$PPORT"
  if [[ -n "$RPS" ]] && { [[ -z "$F_RPS" ]] || [[ "$(py_cmp "$RPS > $F_RPS")" == 1 ]]; }; then
    F_RPS="$RPS"; F_P50="$P50"; F_P99="$P99"; F_MAX="$MAX"; F_ERRS="$ERRS"
  fi
done
kill -0 "$HEARTH_MAIN_PID" 2>/dev/null || echo "   hearth DIED during the run"
nlog="$(grep -c . "$HLOG" || true)"
if [[ "$nlog" -gt 0 ]]; then
  echo "   hearth logged $nlog line(s) at warn or above; last ones:"
  tail -n 5 "$HLOG" | cut -c1-300 | sed 's/^/     /'
fi

# the database's ceiling: pgbench, the same SQL and random draws, prepared statements like hearth's
echo "--- pgbench -n -M prepared -c $PGBENCH_CLIENTS -j 2 -T $PGBENCH_SECS -f bench/peer_fastapi/pgbench_{price,price_desc,created_at,created_at_desc}.sql"
PG_TPS="$(cd "$BENCH_DIR/peer_fastapi" && "$PGBIN/pgbench" -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -T "$PGBENCH_SECS" \
  -f pgbench_price.sql -f pgbench_price_desc.sql -f pgbench_created_at.sql -f pgbench_created_at_desc.sql \
  "$DATABASE_URL" 2>"$BENCH_TMP/pgbench.err" | tee "$BENCH_TMP/pgbench.out" | awk '/^tps = / {print $3; exit}')" || true
if [[ -n "$PG_TPS" ]]; then
  echo "   pgbench: $PG_TPS tps ($(grep -E '^latency average' "$BENCH_TMP/pgbench.out" | head -1); $(grep -E '^number of failed' "$BENCH_TMP/pgbench.out" | head -1))"
else
  echo "   pgbench produced no result:"; sed 's/^/     /' "$BENCH_TMP/pgbench.err" | tail -5
fi

if [[ -z "$H_RPS" || -z "$F_RPS" ]]; then
  echo "TARGET postgres hearth/fastapi req/s ratio = ? (wrk produced no result; target >= $TARGET_RATIO)  MISS"
  echo "TARGET postgres p99 = ? (wrk produced no result; target: hearth lower)  MISS"
  exit 0
fi
RATIO="$("$PY" -c "print(f'{$H_RPS / $F_RPS:.2f}')")"
OK="$(py_cmp "$H_RPS / $F_RPS >= $TARGET_RATIO and $H_ERRS == 0")"
echo "TARGET postgres hearth/fastapi req/s ratio = $RATIO (hearth $H_RPS, fastapi $F_RPS; errors $H_ERRS / $F_ERRS; target >= $TARGET_RATIO)  $(verdict "$OK")"
OK="$(py_cmp "$H_P99 < $F_P99 and $H_ERRS == 0")"
echo "TARGET postgres p99 hearth $H_P99 ms vs fastapi $F_P99 ms (p50 $H_P50 / $F_P50, max $H_MAX / $F_MAX ms; target: lower)  $(verdict "$OK")"
if [[ -n "$PG_TPS" ]]; then
  echo "INFO postgres hearth req/s / pgbench tps (same SQL, $PGBENCH_CLIENTS clients) = $("$PY" -c "print(f'{$H_RPS / $PG_TPS:.2f}')") (hearth $H_RPS, pgbench $PG_TPS; fastapi/pgbench $("$PY" -c "print(f'{$F_RPS / $PG_TPS:.2f}')"))"
fi
