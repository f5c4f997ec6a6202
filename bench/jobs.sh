#!/usr/bin/env bash
# bench/jobs.sh BIN: end-to-end no-op jobs per second (enqueue to done) on hearth's two backends,
# against Celery 5 with Redis as broker and result backend running the same no-op task.
#
#   hearth, SQLite:     `hearth serve` as shipped: its in-process job runners (HEARTH_JOB_WORKERS,
#                       default 2), the database in a temp HEARTH_DATA_DIR (WAL, synchronous=NORMAL:
#                       hearth's own settings)
#   hearth, PostgreSQL: the same on scripts/services.sh's PostgreSQL 15, run with PostgreSQL's stock
#                       durability (fsync, synchronous_commit, full_page_writes on) unless
#                       BENCH_JOBS_PG_DURABLE=0 keeps services.sh's test settings (all three off)
#   Celery:             bench/peer_celery, `celery worker -P prefork -c $(nproc)`, task_acks_late,
#                       results stored in Redis (services.sh's Redis)
#
# Each run: N jobs enqueued by one client process (hearth: bench/jobs_client.py, POST /api/jobs
# over BENCH_JOBS_CONNS keep-alive connections; Celery: bench/peer_celery/drive.py, noop.delay() in
# a loop), then waited for until every one is done (hearth: its queue gauges on /metrics reach 0;
# Celery: ResultSet.get()), and checked (every job succeeded with result {}). Enqueue time and
# drain time both count. BENCH_JOBS_ROUNDS interleaved rounds (sqlite, postgres, celery, ...),
# each side scored by its best round. Target: hearth >= 10x Celery's jobs/s, on each backend.
# Needs: PostgreSQL 15 + Redis (scripts/services.sh), Debian's python3-celery python3-redis.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

N="${BENCH_JOBS_N:-10000}"
ROUNDS="${BENCH_JOBS_ROUNDS:-2}"
WARM="${BENCH_JOBS_WARM:-500}"
CONNS="${BENCH_JOBS_CONNS:-16}"
POLL="${BENCH_JOBS_POLL:-0.01}"
TIMEOUT="${BENCH_JOBS_TIMEOUT:-300}"
PG_DURABLE="${BENCH_JOBS_PG_DURABLE:-1}"
WORKER_PROCS="${BENCH_JOBS_WORKER_PROCS:-0}"
WORKER_CONC="${BENCH_JOBS_WORKER_CONC:-4}"
CELERY_CONC="${BENCH_CELERY_CONCURRENCY:-$(nproc)}"
TARGET_RATIO=10
PGBIN=/usr/lib/postgresql/15/bin
EMAIL=bench-admin@hearth.test
PASSWORD="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

[[ -x "$PGBIN/postgres" ]] || die "PostgreSQL 15 is not installed ($PGBIN/postgres; scripts/deps.sh)"
command -v redis-server >/dev/null || die "redis-server is not installed (scripts/deps.sh)"
if ! "$PY" -c 'import celery, redis' 2>/dev/null; then
  die "the Celery peer needs Debian's python3-celery python3-redis for $PY (scripts/deps.sh --bench):
    apt-get install -y python3-celery python3-redis"
fi

# services first; stop them after the servers (bench_cleanup) on any exit. Celery's prefork
# children are stopped by their parent; any left after it (killed after the grace period) are
# stopped here by their recorded pids.
SERVICES_DIR=""
CELERY_KIDS=()
stop_all() {
  bench_cleanup
  local pid
  for pid in "${CELERY_KIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [[ -z "$SERVICES_DIR" ]] || "$ROOT/scripts/services.sh" stop "$SERVICES_DIR" >/dev/null 2>&1 || true
}
trap stop_all EXIT
pg_opts="${HEARTH_PG_OPTS:-}"
[[ "$PG_DURABLE" == 0 ]] || pg_opts="-c fsync=on -c synchronous_commit=on -c full_page_writes=on $pg_opts"
svc_env="$(HEARTH_PG_OPTS="$pg_opts" "$ROOT/scripts/services.sh" start 2>"$BENCH_TMP/services.log")" \
  || { cat "$BENCH_TMP/services.log" >&2; die "scripts/services.sh start failed"; }
eval "$svc_env"
SERVICES_DIR="$HEARTH_SERVICES_DIR"
PG_URL="$DATABASE_URL"
CELERY_REDIS_URL="$REDIS_URL"
unset DATABASE_URL REDIS_URL   # hearth gets exactly what each start below gives it
export CELERY_REDIS_URL
pg_show() { "$PGBIN/psql" -Atq "$PG_URL" -c "SHOW $1"; }

# start_serve NAME PORT DATADIR LOG [ENV...]: `hearth serve` (no demo data) with the given extra
# environment; waits for /health/live; sets HEARTH_PID. Then makes the benchmark's admin account
# and, when asked, the extra `hearth worker` processes.
start_serve() {
  local name="$1" port="$2" dir="$3" log="$4"
  shift 4
  mkdir -p "$dir"
  env "$@" HEARTH_DATA_DIR="$dir" HEARTH_LOG_LEVEL=warn "$BIN" serve --listen "127.0.0.1:$port" 2>"$log" &
  HEARTH_PID=$!
  BENCH_PIDS+=("$HEARTH_PID")
  if ! wait_http "http://127.0.0.1:$port/health/live" "$HEARTH_PID" "hearth ($name)"; then
    tail -n 20 "$log" >&2
    exit 2
  fi
  env "$@" HEARTH_DATA_DIR="$dir" HEARTH_LOG_LEVEL=warn "$BIN" user create --email "$EMAIL" --role admin \
    --password "$PASSWORD" >/dev/null 2>>"$log" || { tail -n 5 "$log" >&2; die "hearth user create ($name) failed"; }
  local i
  for i in $(seq "$WORKER_PROCS"); do
    env "$@" HEARTH_DATA_DIR="$dir" HEARTH_LOG_LEVEL=warn "$BIN" worker --concurrency "$WORKER_CONC" 2>>"$log.worker" &
    BENCH_PIDS+=("$!")
  done
}

SPORT="$(free_port)"
start_serve sqlite "$SPORT" "$BENCH_TMP/sqlite" "$BENCH_TMP/hearth-sqlite.log"
SPID="$HEARTH_PID"
PPORT="$(free_port)"
start_serve postgres "$PPORT" "$BENCH_TMP/pg" "$BENCH_TMP/hearth-pg.log" DATABASE_URL="$PG_URL"
PPID_="$HEARTH_PID"

# Celery: one prefork worker, one child per core
(cd "$BENCH_DIR/peer_celery" && exec "$PY" -m celery -A app worker -P prefork -c "$CELERY_CONC" --loglevel=warning) \
  >"$BENCH_TMP/celery.log" 2>&1 &
CPID=$!
BENCH_PIDS+=("$CPID")
(cd "$BENCH_DIR/peer_celery" && timeout 60 "$PY" drive.py ping --timeout 50 >/dev/null) \
  || { tail -n 20 "$BENCH_TMP/celery.log" >&2; die "the Celery worker did not run a task within 60 s"; }
kill -0 "$CPID" 2>/dev/null || die "the Celery worker exited"
mapfile -t CELERY_KIDS < <(ps -o pid= --ppid "$CPID" | tr -d ' ')

echo "== jobs: end-to-end no-op jobs/s (enqueue to done), $N jobs per run"
echo "   $(nproc) cores; PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync=$(pg_show fsync), synchronous_commit=$(pg_show synchronous_commit), full_page_writes=$(pg_show full_page_writes)), $(redis-server --version | awk '{print $3}') (scripts/services.sh: no persistence)"
echo "   hearth: serve, in-process job runners ${HEARTH_JOB_WORKERS:-2 (default)}, HTTP workers ${HEARTH_WORKERS:-default}, db pool ${HEARTH_DB_POOL:-default (= workers)}; $WORKER_PROCS extra \`hearth worker --concurrency $WORKER_CONC\` process(es)"
echo "          SQLite: WAL, synchronous=NORMAL (hearth's settings); PostgreSQL: hearth's defaults on the server above"
echo "          client: bench/jobs_client.py, POST /api/jobs {\"type\":\"noop\"} over $CONNS keep-alive connections, then GET /metrics every ${POLL}s until no job waits or runs"
echo "   celery: $("$PY" -c 'import celery, kombu, redis; print(f"Celery {celery.__version__}, kombu {kombu.__version__}, redis-py {redis.__version__}")'), -P prefork -c $CELERY_CONC (${#CELERY_KIDS[@]} child processes), task_acks_late, Redis broker + result backend"
echo "          client: bench/peer_celery/drive.py, noop.delay() x $N, then ResultSet.get(interval=$POLL)"
echo "   $ROUNDS interleaved round(s) after a warm-up of $WARM jobs each; best jobs/s of each side scored"

kv() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

# run_hearth NAME PORT JOBS: sets RES (the RESULT line, empty on failure)
run_hearth() {
  local out
  out="$("$PY" "$BENCH_DIR/jobs_client.py" --base "http://127.0.0.1:$2" --email "$EMAIL" --password "$PASSWORD" \
    --jobs "$3" --conns "$CONNS" --poll "$POLL" --timeout "$TIMEOUT" 2>&1)" || true
  RES="$(echo "$out" | grep '^RESULT ' || true)"
  if [[ -z "$RES" ]] || ! echo "$out" | grep -q 'missing=0 .*errors=0 bad=0'; then
    echo "   hearth ($1): FAILED:"; echo "$out" | tail -n 8 | sed 's/^/     /'
    RES=""
  fi
}
# run_celery JOBS: sets RES
run_celery() {
  local out
  out="$(cd "$BENCH_DIR/peer_celery" && "$PY" drive.py run --jobs "$1" --poll "$POLL" --timeout "$TIMEOUT" 2>&1)" || true
  RES="$(echo "$out" | grep '^RESULT ' || true)"
  if [[ -z "$RES" ]] || ! echo "$out" | grep -q 'errors=0'; then
    echo "   celery: FAILED:"; echo "$out" | tail -n 8 | sed 's/^/     /'
    RES=""
  fi
}
show() {  # NAME: prints RES in short
  echo "   $1: $(kv "$RES" jobs_per_s) jobs/s  (enqueue $(kv "$RES" enqueue_s) s = $(kv "$RES" enqueue_per_s)/s, enqueue to done $(kv "$RES" total_s) s$(
    [[ -z "$(kv "$RES" server_done_s)" ]] || echo ", last finished_at at $(kv "$RES" server_done_s) s"))"
}

echo "--- warm-up ($WARM jobs each, not scored)"
run_hearth sqlite "$SPORT" "$WARM"; [[ -z "$RES" ]] || show "hearth sqlite  "
run_hearth postgres "$PPORT" "$WARM"; [[ -z "$RES" ]] || show "hearth postgres"
run_celery "$WARM"; [[ -z "$RES" ]] || show "celery         "

S_BEST=""; P_BEST=""; C_BEST=""; S_ALL=(); P_ALL=(); C_ALL=()
best() { if [[ -z "$1" ]] || [[ "$(py_cmp "$2 > $1")" == 1 ]]; then echo "$2"; else echo "$1"; fi; }
for r in $(seq "$ROUNDS"); do
  echo "--- round $r/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  run_hearth sqlite "$SPORT" "$N"
  if [[ -n "$RES" ]]; then show "hearth sqlite  "; S_ALL+=("$(kv "$RES" jobs_per_s)"); S_BEST="$(best "$S_BEST" "$(kv "$RES" jobs_per_s)")"; fi
  run_hearth postgres "$PPORT" "$N"
  if [[ -n "$RES" ]]; then show "hearth postgres"; P_ALL+=("$(kv "$RES" jobs_per_s)"); P_BEST="$(best "$P_BEST" "$(kv "$RES" jobs_per_s)")"; fi
  run_celery "$N"
  if [[ -n "$RES" ]]; then show "celery         "; C_ALL+=("$(kv "$RES" jobs_per_s)"); C_BEST="$(best "$C_BEST" "$(kv "$RES" jobs_per_s)")"; fi
done

for p in "$SPID:sqlite" "$PPID_:postgres" "$CPID:celery"; do
  kill -0 "${p%%:*}" 2>/dev/null || echo "   ${p#*:} server DIED during the runs"
done
for f in "$BENCH_TMP/hearth-sqlite.log" "$BENCH_TMP/hearth-pg.log"; do
  n="$(grep -c . "$f" || true)"
  [[ "$n" == 0 ]] || { echo "   $(basename "$f"): $n line(s) at warn or above; last ones:"; tail -n 3 "$f" | cut -c1-300 | sed 's/^/     /'; }
done
echo "   rounds: hearth sqlite ${S_ALL[*]:-none}; hearth postgres ${P_ALL[*]:-none}; celery ${C_ALL[*]:-none} jobs/s"

ratio() { "$PY" -c "print(f'{$1 / $2:.2f}')"; }
durability="PostgreSQL fsync=$(pg_show fsync) synchronous_commit=$(pg_show synchronous_commit)"
if [[ -z "$C_BEST" ]]; then
  echo "TARGET jobs sqlite hearth/celery jobs/s ratio = ? (Celery produced no result; target >= $TARGET_RATIO)  MISS"
  echo "TARGET jobs postgres hearth/celery jobs/s ratio = ? (Celery produced no result; target >= $TARGET_RATIO)  MISS"
  exit 0
fi
if [[ -n "$S_BEST" ]]; then
  OK="$(py_cmp "$S_BEST / $C_BEST >= $TARGET_RATIO")"
  echo "TARGET jobs sqlite hearth/celery jobs/s ratio = $(ratio "$S_BEST" "$C_BEST") (hearth $S_BEST, celery $C_BEST jobs/s; $N jobs, enqueue to done; target >= $TARGET_RATIO)  $(verdict "$OK")"
else
  echo "TARGET jobs sqlite hearth/celery jobs/s ratio = ? (hearth failed; target >= $TARGET_RATIO)  MISS"
fi
if [[ -n "$P_BEST" ]]; then
  OK="$(py_cmp "$P_BEST / $C_BEST >= $TARGET_RATIO")"
  echo "TARGET jobs postgres hearth/celery jobs/s ratio = $(ratio "$P_BEST" "$C_BEST") (hearth $P_BEST, celery $C_BEST jobs/s; $durability; target >= $TARGET_RATIO)  $(verdict "$OK")"
else
  echo "TARGET jobs postgres hearth/celery jobs/s ratio = ? (hearth failed; target >= $TARGET_RATIO)  MISS"
fi
