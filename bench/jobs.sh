#!/usr/bin/env bash
# bench/jobs.sh BIN: end-to-end no-op jobs per second (enqueue to done) on hearth's two backends,
# against Celery 5 with Redis as broker and result backend running the same no-op task.
#
#   hearth sqlite     `hearth serve` as a user gets it: its in-process job runners
#                     (HEARTH_JOB_WORKERS, default 2), the database in a temp HEARTH_DATA_DIR (WAL,
#                     synchronous=NORMAL: hearth's own settings). Target.
#   hearth postgres   the same on scripts/services.sh's PostgreSQL 15, started with PostgreSQL's
#                     stock durability (fsync, synchronous_commit, full_page_writes on; services.sh
#                     turns them off for tests). Target.
#   celery            bench/peer_celery: `celery worker -P prefork -c $(nproc)`, task_acks_late,
#                     results stored in Redis (services.sh's Redis, as the broker).
#   For reference (BENCH_JOBS_REFS=1, the default; not scored):
#   sqlite 1/request, postgres 1/request
#                     the same servers, each job its own POST /api/jobs (BENCH_JOBS_BATCH=1)
#   sqlite+worker     SQLite `hearth serve` plus one `hearth worker` process (--concurrency 4, its
#                     default) on the same database
#   postgres async    hearth on a second database of the same PostgreSQL with
#                     `ALTER DATABASE ... SET synchronous_commit = off` (commits do not wait for the
#                     WAL flush; a crash of PostgreSQL can lose the last few hundred ms of commits)
#
# Each run: N jobs enqueued by one client process (hearth: bench/jobs_client.py, POST /api/jobs
# over BENCH_JOBS_CONNS keep-alive connections, BENCH_JOBS_BATCH (100) jobs a request, the batch
# form of POST /api/jobs: one transaction a request; Celery: bench/peer_celery/drive.py,
# noop.delay() in a loop, its fastest way to enqueue: a group(...).apply_async() of the same tasks
# measured slower here, 515 against 666 jobs/s), then waited for until every one is done (hearth: its queue gauges on /metrics reach 0;
# Celery: ResultSet.get()), then checked (every job succeeded with result {}). Enqueue time and
# drain time both count. BENCH_JOBS_ROUNDS interleaved rounds, each side scored by its best round.
# Target: hearth >= 10x Celery's jobs/s, on each backend.
# Needs: PostgreSQL 15 + Redis (scripts/services.sh), Debian's python3-celery python3-redis.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

N="${BENCH_JOBS_N:-10000}"
ROUNDS="${BENCH_JOBS_ROUNDS:-2}"
WARM="${BENCH_JOBS_WARM:-500}"
CONNS="${BENCH_JOBS_CONNS:-16}"
BATCH="${BENCH_JOBS_BATCH:-100}"
POLL="${BENCH_JOBS_POLL:-0.01}"
TIMEOUT="${BENCH_JOBS_TIMEOUT:-300}"
REFS="${BENCH_JOBS_REFS:-1}"
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
# children exit with their parent; any still there after it are stopped by their recorded pids.
SERVICES_DIR=""
CELERY_KIDS=()
stop_all() {
  bench_cleanup
  local pid
  for pid in "${CELERY_KIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [[ -z "$SERVICES_DIR" ]] || "$ROOT/scripts/services.sh" stop "$SERVICES_DIR" >/dev/null 2>&1 || true
}
trap stop_all EXIT
# PostgreSQL's stock durability; HEARTH_PG_OPTS, given after, can still change it
svc_env="$(HEARTH_PG_OPTS="-c fsync=on -c synchronous_commit=on -c full_page_writes=on ${HEARTH_PG_OPTS:-}" \
  "$ROOT/scripts/services.sh" start 2>"$BENCH_TMP/services.log")" \
  || { cat "$BENCH_TMP/services.log" >&2; die "scripts/services.sh start failed"; }
eval "$svc_env"
unset S3_ENDPOINT S3_BUCKET S3_REGION S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY  # objects stay on the filesystem
SERVICES_DIR="$HEARTH_SERVICES_DIR"
PG_URL="$DATABASE_URL"
CELERY_REDIS_URL="$REDIS_URL"
unset DATABASE_URL REDIS_URL   # each hearth gets exactly what its start below gives it
export CELERY_REDIS_URL
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ left in bench/peer_celery
psql_() { "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 "$@"; }
pg_show() { psql_ "$PG_URL" -c "SHOW $1"; }

# start_serve NAME PORT DATADIR WORKER_PROCS [ENV...]: `hearth serve` (no demo data) with the given
# extra environment, waits for /health/live (sets HEARTH_PID), makes the benchmark's admin account,
# then starts WORKER_PROCS `hearth worker` processes (default concurrency) on the same database.
start_serve() {
  local name="$1" port="$2" dir="$3" procs="$4" log="$BENCH_TMP/hearth-$1.log"
  shift 4
  mkdir -p "$dir"
  env "$@" HEARTH_DATA_DIR="$dir" HEARTH_LOG_LEVEL=warn "$BIN" serve --listen "127.0.0.1:$port" 2>"$log" &
  HEARTH_PID=$!
  BENCH_PIDS+=("$HEARTH_PID")
  wait_http "http://127.0.0.1:$port/health/live" "$HEARTH_PID" "hearth ($name)" || { tail -n 20 "$log" >&2; exit 2; }
  env "$@" HEARTH_DATA_DIR="$dir" HEARTH_LOG_LEVEL=warn "$BIN" user create --email "$EMAIL" --role admin \
    --password "$PASSWORD" >/dev/null 2>>"$log" || { tail -n 5 "$log" >&2; die "hearth user create ($name) failed"; }
  for _ in $(seq "$procs"); do
    env "$@" HEARTH_DATA_DIR="$dir" HEARTH_LOG_LEVEL=warn "$BIN" worker 2>>"$log" &
    BENCH_PIDS+=("$!")
  done
}

# the sides: name, port, pid, jobs a request, log
SIDES=(sqlite postgres)
declare -A PORT SPID BATCH_OF LOG_OF
PORT[sqlite]="$(free_port)"
start_serve sqlite "${PORT[sqlite]}" "$BENCH_TMP/sqlite" 0
SPID[sqlite]="$HEARTH_PID"
PORT[postgres]="$(free_port)"
start_serve postgres "${PORT[postgres]}" "$BENCH_TMP/pg" 0 DATABASE_URL="$PG_URL"
SPID[postgres]="$HEARTH_PID"
if [[ "$REFS" == 1 ]]; then
  SIDES=(sqlite "sqlite 1/request" sqlite+worker postgres "postgres 1/request" "postgres async")
  for b in sqlite postgres; do
    PORT[$b 1/request]="${PORT[$b]}"; SPID[$b 1/request]="${SPID[$b]}"; BATCH_OF[$b 1/request]=1
    LOG_OF[$b 1/request]="$BENCH_TMP/hearth-$b.log"
  done
  PORT[sqlite+worker]="$(free_port)"
  start_serve sqlite+worker "${PORT[sqlite+worker]}" "$BENCH_TMP/sqlite-worker" 1
  SPID[sqlite+worker]="$HEARTH_PID"
  PG_ASYNC_URL="${PG_URL%/*}/hearth_async"
  psql_ "${PG_URL%/*}/postgres" -c "CREATE DATABASE hearth_async" -c "ALTER DATABASE hearth_async SET synchronous_commit = off"
  PORT[postgres async]="$(free_port)"
  start_serve postgres-async "${PORT[postgres async]}" "$BENCH_TMP/pg-async" 0 DATABASE_URL="$PG_ASYNC_URL"
  SPID[postgres async]="$HEARTH_PID"
fi

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
echo "   $(nproc) cores; PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync=$(pg_show fsync), synchronous_commit=$(pg_show synchronous_commit), full_page_writes=$(pg_show full_page_writes)); Redis $(redis-server --version | awk '{sub("v=", "", $3); print $3}') (scripts/services.sh: no persistence)"
echo "   hearth: serve, in-process job runners ${HEARTH_JOB_WORKERS:-2 (default)}, HTTP workers ${HEARTH_WORKERS:-default}, db pool ${HEARTH_DB_POOL:-default (= HTTP workers)}; SQLite: WAL, synchronous=NORMAL (hearth's own settings)"
[[ "$REFS" != 1 ]] || echo "           references: sqlite+worker (one \`hearth worker\` more, concurrency 4), postgres async (synchronous_commit=off on its database)"
echo "           client: bench/jobs_client.py, POST /api/jobs {\"jobs\": [{\"type\":\"noop\"} x $BATCH]} over $CONNS keep-alive connections, then GET /metrics until no job waits or runs (every ${POLL}s, backing off to 2% of the wait)"
echo "   celery: $("$PY" -c 'import celery, kombu, redis; print(f"Celery {celery.__version__}, kombu {kombu.__version__}, redis-py {redis.__version__}")'), -P prefork -c $CELERY_CONC (${#CELERY_KIDS[@]} child processes), task_acks_late, Redis broker + result backend"
echo "           client: bench/peer_celery/drive.py, noop.delay() x $N, then ResultSet.get(interval=$POLL)"
echo "   $ROUNDS interleaved round(s) after a warm-up of $WARM jobs each; best jobs/s of each side scored"

kv() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

# run SIDE JOBS: one run; sets RES (the RESULT line; empty on failure)
run() {
  local side="$1" n="$2" out
  if [[ "$side" == celery ]]; then
    out="$(cd "$BENCH_DIR/peer_celery" && "$PY" drive.py run --jobs "$n" --poll "$POLL" --timeout "$TIMEOUT" 2>&1)" || true
  else
    out="$("$PY" "$BENCH_DIR/jobs_client.py" --base "http://127.0.0.1:${PORT[$side]}" --email "$EMAIL" \
      --password "$PASSWORD" --jobs "$n" --conns "$CONNS" --batch "${BATCH_OF[$side]:-$BATCH}" --poll "$POLL" --timeout "$TIMEOUT" 2>&1)" || true
  fi
  RES="$(echo "$out" | grep '^RESULT ' || true)"
  if [[ -z "$RES" || "$(kv "$RES" succeeded)" != "$n" || "$(kv "$RES" errors)" != 0 ]]; then
    echo "   $side: FAILED:"; echo "$out" | tail -n 8 | sed 's/^/     /'
    RES=""
    return 0
  fi
  printf '   %-16s %8s jobs/s  (enqueue %s s = %s/s, enqueue to done %s s%s)\n' "$side:" "$(kv "$RES" jobs_per_s)" \
    "$(kv "$RES" enqueue_s)" "$(kv "$RES" enqueue_per_s)" "$(kv "$RES" total_s)" \
    "$([[ -z "$(kv "$RES" server_done_s)" ]] || echo ", last finished_at at $(kv "$RES" server_done_s) s")"
}

ALL_SIDES=("${SIDES[@]}" celery)
echo "--- warm-up ($WARM jobs each, not scored)"
for side in "${ALL_SIDES[@]}"; do run "$side" "$WARM"; done

declare -A BEST ROUNDS_OF
for r in $(seq "$ROUNDS"); do
  echo "--- round $r/$ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for side in "${ALL_SIDES[@]}"; do
    run "$side" "$N"
    [[ -n "$RES" ]] || continue
    v="$(kv "$RES" jobs_per_s)"
    ROUNDS_OF[$side]="${ROUNDS_OF[$side]:-}${ROUNDS_OF[$side]:+ / }$v"
    if [[ -z "${BEST[$side]:-}" ]] || [[ "$(py_cmp "$v > ${BEST[$side]}")" == 1 ]]; then BEST[$side]="$v"; fi
  done
done

for side in "${SIDES[@]}"; do
  [[ -z "${BATCH_OF[$side]:-}" ]] || continue   # another mode of a server already looked at
  kill -0 "${SPID[$side]}" 2>/dev/null || echo "   hearth ($side) DIED during the runs"
  f="${LOG_OF[$side]:-$BENCH_TMP/hearth-${side/ /-}.log}"
  n="$(grep -c . "$f" || true)"
  [[ "$n" == 0 ]] || { echo "   hearth ($side) logged $n line(s) at warn or above; last ones:"; tail -n 3 "$f" | cut -c1-300 | sed 's/^/     /'; }
done
kill -0 "$CPID" 2>/dev/null || echo "   the Celery worker DIED during the runs"
for side in "${ALL_SIDES[@]}"; do
  printf '   %-16s rounds %s jobs/s\n' "$side:" "${ROUNDS_OF[$side]:-none}"
done

C="${BEST[celery]:-}"
ratio() { "$PY" -c "print(f'{$1 / $2:.2f}')"; }
target() {  # KEY LABEL DETAIL
  local h="${BEST[$1]:-}"
  if [[ -z "$C" || -z "$h" ]]; then
    echo "TARGET jobs $2 hearth/celery jobs/s ratio = ? ($([[ -z "$h" ]] && echo hearth || echo Celery) produced no result; target >= $TARGET_RATIO)  MISS"
    return
  fi
  echo "TARGET jobs $2 hearth/celery jobs/s ratio = $(ratio "$h" "$C") (hearth $h, celery $C jobs/s; $N jobs, enqueue to done; $3; target >= $TARGET_RATIO)  $(verdict "$(py_cmp "$h / $C >= $TARGET_RATIO")")"
}
target sqlite sqlite "serve, ${HEARTH_JOB_WORKERS:-2} in-process runners"
target postgres postgres "serve, ${HEARTH_JOB_WORKERS:-2} in-process runners, fsync=$(pg_show fsync) synchronous_commit=$(pg_show synchronous_commit)"
if [[ "$REFS" == 1 && -n "$C" ]]; then
  for side in "sqlite 1/request" sqlite+worker "postgres 1/request" "postgres async"; do
    [[ -n "${BEST[$side]:-}" ]] || continue
    echo "INFO   jobs $side hearth/celery jobs/s ratio = $(ratio "${BEST[$side]}" "$C") (hearth ${BEST[$side]}, celery $C jobs/s; reference, not scored)"
  done
fi
