#!/usr/bin/env bash
# Throw-away PostgreSQL 15 (+pgvector when installed), Redis and an S3 server for tests and benchmarks.
#
#   eval "$(scripts/services.sh start [DIR])"   start them on free 127.0.0.1 ports under DIR (default: a
#                                               new temp dir); stdout is only the `export` lines:
#                                               DATABASE_URL, REDIS_URL, HEARTH_SERVICES_DIR, and S3_ENDPOINT,
#                                               S3_BUCKET, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY
#   scripts/services.sh env [DIR]               print the same exports for a running DIR
#   scripts/services.sh stop [DIR]              stop them all and remove DIR
#   scripts/services.sh pg-stop|pg-start [DIR]  stop/start PostgreSQL only (data and port kept)
#   scripts/services.sh redis-stop|redis-start [DIR]   the same for Redis (nothing is persisted)
#   scripts/services.sh s3-stop|s3-start [DIR]  the same for the S3 server (objects kept in DIR/s3)
#
# DIR defaults to $HEARTH_SERVICES_DIR (no machine-wide "last run" guess: other runs may be going on).
# Progress and errors go to stderr.  Several runs can go on concurrently (each has its own DIR and ports).
# Extra postgres settings at `start` (kept for pg-start): HEARTH_PG_OPTS, e.g. "-c max_connections=500",
# or "-c synchronous_commit=on" when a test kills -9 PostgreSQL and needs every acknowledged commit
# (the default synchronous_commit=off can lose the last ~0.6 s of commits on a crash, never on pg-stop).
# The S3 server is s3rver (npm, installed by scripts/deps.sh into scripts/s3rver/node_modules when
# node is there) with bucket "hearth"; it accepts any credentials and does not check signatures.
# Without node or s3rver, or with HEARTH_SERVICES_S3=0, it is left out (with a warning) and no S3_*
# line is printed.
set -euo pipefail

exec 3>&1 1>&2   # fd 3: the caller's stdout (exports only); everything else goes to stderr

PGBIN=/usr/lib/postgresql/15/bin
STATE=hearth-services.state            # marks a DIR as ours; holds the ports
S3RVER=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/s3rver/node_modules/s3rver/bin/s3rver.js
S3_BUCKET=hearth

die() { echo "services.sh: $*" >&2; exit 1; }
say() { echo "services.sh: $*" >&2; }

# PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  # Let the kernel pick an unused port; fall back to probing random ports with bash's /dev/tcp.
  if command -v /usr/bin/python3 >/dev/null; then
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    return
  fi
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    (exec 2>/dev/null; : >/dev/tcp/127.0.0.1/$p) || { echo "$p"; return; }
  done
  die "no free port found"
}

resolve_dir() {   # $1: optional DIR argument
  local d="${1:-${HEARTH_SERVICES_DIR:-}}"
  [[ -n $d ]] || die "no DIR given and HEARTH_SERVICES_DIR is not set"
  [[ -f $d/$STATE ]] || die "$d is not a services.sh directory (no $STATE)"
  DIR=$(cd "$d" && pwd -P)
  # shellcheck disable=SC1090
  S3_PORT=""
  . "$DIR/$STATE"   # PG_PORT, REDIS_PORT, PG_OPTS, S3_PORT (empty: no S3 server)
}

print_env() {
  {
    echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/hearth"
    echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    echo "export HEARTH_SERVICES_DIR=$DIR"
    if [[ -n ${S3_PORT:-} ]]; then
      echo "export S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
      echo "export S3_BUCKET=$S3_BUCKET"
      echo "export S3_REGION=us-east-1"
      echo "export S3_ACCESS_KEY_ID=S3RVER"
      echo "export S3_SECRET_ACCESS_KEY=S3RVER"
    fi
  } >&3
}

# ---------------------------------------------------------------- PostgreSQL
# Alive and not a zombie: an exited daemon can stay a zombie for a while when PID 1 is slow to reap it
# (seen here: ~1.5 s); it holds no port any more, but `kill -0` and PostgreSQL's lock-file check still
# see it.
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ -n $st && $st != Z ]]; }

pg_pid() { local pid; pid=$(head -n1 "$DIR/pg/postmaster.pid" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] && echo "$pid"; }
pg_running() { local pid; pid=$(pg_pid) && alive "$pid"; }

pg_start() {
  local pid i
  pg_running && { say "PostgreSQL already running on port $PG_PORT"; return 0; }
  # After a crash (kill -9) postgres refuses to start while the old postmaster's PID exists, even as a
  # zombie: wait for it to be reaped (it always is within a few seconds).
  if pid=$(pg_pid); then
    for i in $(seq 200); do [[ -e /proc/$pid ]] || break; sleep 0.05; done
  fi
  for i in 1 2 3; do
    # shellcheck disable=SC2086
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w -t 30 -o "-p $PG_PORT -k $DIR \
-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off ${PG_OPTS:-}" \
      start >/dev/null 3>&- && return 0   # 3>&-: the daemon must not hold the caller's stdout ($(...) would hang)
    # Port taken: let the caller choose.  Otherwise (e.g. a crashed server's backends still exiting) retry.
    tail -n 5 "$DIR/pg.log" | grep -q 'could not bind\|could not create any TCP/IP sockets' && return 1
    sleep 0.5
  done
  return 1
}

pg_stop() {
  [[ -d $DIR/pg ]] || return 0
  pg_running || return 0
  as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast -w -t 20 stop >/dev/null \
    || as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m immediate -w -t 10 stop >/dev/null
}

# ---------------------------------------------------------------- Redis
redis_pid() {   # pid of OUR redis (from the pidfile, and only if that process is a redis-server)
  local pid
  pid=$(cat "$DIR/redis.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q redis-server && echo "$pid"
}

redis_start() {
  redis_pid >/dev/null && { say "Redis already running on port $REDIS_PORT"; return 0; }
  rm -f "$DIR/redis.pid"
  local logsize i
  logsize=$(stat -c %s "$DIR/redis.log" 2>/dev/null || echo 0)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null 3>&-
  # --daemonize returns before the bind; redis writes its pidfile only once it listens.  Wait for the
  # pidfile and for OUR server (its dir is DIR) to answer; a bind failure shows in the log at once.
  for i in $(seq 250); do
    if redis_pid >/dev/null; then
      # (timeout: should something else answer on the port, it may accept and never reply)
      [[ $(timeout 2 redis-cli -p "$REDIS_PORT" --raw config get dir 2>/dev/null | sed -n 2p) == "$DIR" ]] && return 0
    elif tail -c +"$((logsize + 1))" "$DIR/redis.log" 2>/dev/null | grep -q -E 'aborting|Failed|FATAL|Fatal'; then
      return 1
    fi
    sleep 0.02
  done
  return 1
}

redis_stop() {
  local pid i
  pid=$(redis_pid) || { rm -f "$DIR/redis.pid"; return 0; }
  timeout 2 redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do alive "$pid" || break; sleep 0.02; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.1; fi
  rm -f "$DIR/redis.pid"
}

# ---------------------------------------------------------------- S3 (s3rver)
s3_wanted() {   # prints why not, when the S3 server is left out
  if [[ ${HEARTH_SERVICES_S3:-1} == 0 ]]; then echo "HEARTH_SERVICES_S3=0"
  elif ! command -v node >/dev/null; then echo "node is not installed"
  elif [[ ! -f $S3RVER ]]; then echo "s3rver is not installed (run scripts/deps.sh)"
  else return 0; fi
  return 1
}

s3_pid() {   # pid of OUR s3rver (from the pidfile, and only if that process serves DIR/s3)
  local pid
  pid=$(cat "$DIR/s3rver.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-d $DIR/s3 " && echo "$pid"
}

s3_start() {
  s3_pid >/dev/null && { say "S3 server already running on port $S3_PORT"; return 0; }
  local pid i
  mkdir -p "$DIR/s3"
  # 3>&- and its own log: the server must not hold the caller's stdout ($(...) would hang).
  # --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation tokens with DES.
  nohup node --openssl-legacy-provider "$S3RVER" -d "$DIR/s3" -a 127.0.0.1 -p "$S3_PORT" --silent --no-vhost-buckets \
    --configure-bucket "$S3_BUCKET" </dev/null >>"$DIR/s3rver.log" 2>&1 3>&- &
  pid=$!
  echo "$pid" >"$DIR/s3rver.pid"
  # Ready when the bucket answers a listing; a port taken shows as the process exiting.
  for i in $(seq 250); do
    alive "$pid" || return 1
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
         "http://127.0.0.1:$S3_PORT/$S3_BUCKET?list-type=2&max-keys=1" 2>/dev/null) == 200 ]] && return 0
    sleep 0.04
  done
  return 1
}

s3_stop() {
  local pid i
  pid=$(s3_pid) || { rm -f "$DIR/s3rver.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do alive "$pid" || break; sleep 0.02; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.1; fi
  rm -f "$DIR/s3rver.pid"
}

write_state() {
  printf 'PG_PORT=%s\nREDIS_PORT=%s\nPG_OPTS=%q\nS3_PORT=%s\n' "$PG_PORT" "$REDIS_PORT" "${PG_OPTS:-}" \
    "${S3_PORT:-}" >"$DIR/$STATE.tmp"
  mv "$DIR/$STATE.tmp" "$DIR/$STATE"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0=$SECONDS vector i why
  created=0
  [[ -x $PGBIN/initdb ]] || die "PostgreSQL 15 is not installed (run scripts/deps.sh)"
  command -v redis-server >/dev/null || die "redis-server is not installed (run scripts/deps.sh)"
  if [[ $(id -u) -eq 0 ]]; then id postgres >/dev/null 2>&1 || die "no 'postgres' user"; fi

  if [[ -n ${1:-} ]]; then
    DIR=$1
    if [[ -f $DIR/$STATE ]]; then          # a previous (maybe crashed) run in the same DIR: start afresh
      resolve_dir "$DIR"
      say "stopping the previous run in $DIR"
      pg_stop || true; redis_stop || true; s3_stop || true
      find "$DIR" -mindepth 1 -delete
    elif [[ -d $DIR && -n $(ls -A "$DIR") ]]; then
      die "$DIR exists and is not empty (and is not a services.sh directory)"
    fi
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
  else
    DIR=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/hearth-services.XXXXXX")" && pwd -P)
    # shellcheck disable=SC2034  # used by the EXIT trap
    created=1
  fi
  # Clean up whatever was started if anything below fails.
  trap 'rc=$?; if ((rc)); then say "start failed; see $DIR/pg.log $DIR/redis.log $DIR/s3rver.log"; pg_stop || true;
        redis_stop || true; s3_stop || true;
        if ((created)) && [[ -z ${HEARTH_SERVICES_KEEP:-} ]]; then rm -rf "$DIR"; fi; fi' EXIT
  # Socket path limit: DIR/.s.PGSQL.NNNNN must fit in sun_path (107 bytes).
  ((${#DIR} <= 90)) || die "DIR path too long for the PostgreSQL socket: $DIR"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$DIR"; fi
  chmod 700 "$DIR"
  as_pg test -w "$DIR" || die "user postgres cannot write $DIR (is a parent directory closed to it?)"

  say "initdb in $DIR/pg"
  as_pg "$PGBIN/initdb" -D "$DIR/pg" -A trust -U postgres --no-sync --no-locale -E UTF8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

  # A picked port can be taken by someone else before the server binds it: retry with new ports.
  PG_PORT=""; REDIS_PORT=""; S3_PORT=""; PG_OPTS=${HEARTH_PG_OPTS:-}
  for i in 1 2 3 4 5; do
    PG_PORT=$(free_port); REDIS_PORT=0; write_state
    pg_start && break
    say "PostgreSQL did not start on port $PG_PORT (attempt $i)"; PG_PORT=""
  done
  [[ -n $PG_PORT ]] || { tail -n 20 "$DIR/pg.log" >&2; die "PostgreSQL did not start"; }
  for i in 1 2 3 4 5; do
    REDIS_PORT=$(free_port); write_state
    redis_start && break
    say "Redis did not start on port $REDIS_PORT (attempt $i)"; redis_stop; REDIS_PORT=""
  done
  [[ -n $REDIS_PORT ]] || { tail -n 20 "$DIR/redis.log" >&2; die "Redis did not start"; }
  write_state
  local s3="no S3 server"
  if why=$(s3_wanted); then
    for i in 1 2 3 4 5; do
      S3_PORT=$(free_port); write_state
      s3_start && break
      say "S3 server did not start on port $S3_PORT (attempt $i)"; s3_stop; S3_PORT=""
    done
    [[ -n $S3_PORT ]] || { tail -n 20 "$DIR/s3rver.log" >&2; die "S3 server did not start"; }
    write_state
    s3="S3 (s3rver, bucket $S3_BUCKET) on 127.0.0.1:$S3_PORT"
  else
    say "no S3 server: $why"
  fi

  "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 \
    -c 'CREATE DATABASE hearth' >/dev/null
  if [[ -e /usr/share/postgresql/15/extension/vector.control ]]; then
    "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d hearth -X -q -v ON_ERROR_STOP=1 \
      -c 'CREATE EXTENSION IF NOT EXISTS vector' >/dev/null
    vector="pgvector $("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d hearth -X -At \
      -c "select extversion from pg_extension where extname = 'vector'")"
  else
    vector="NO pgvector (not installed; run scripts/deps.sh)"
  fi
  trap - EXIT
  say "PostgreSQL 15 on 127.0.0.1:$PG_PORT (database hearth, $vector), Redis on 127.0.0.1:$REDIS_PORT, $s3," \
      "in $DIR ($((SECONDS - t0)) s); stop with: scripts/services.sh stop $DIR"
  print_env
}

cmd_stop() {
  resolve_dir "${1:-}"
  pg_stop || say "PostgreSQL in $DIR did not stop cleanly"
  redis_stop || true
  s3_stop || true
  rm -rf "$DIR"
  say "stopped and removed $DIR"
}

cmd=${1:-}
shift || true
case $cmd in
  start)       cmd_start "${1:-}" ;;
  stop)        cmd_stop "${1:-}" ;;
  env)         resolve_dir "${1:-}"; print_env ;;
  pg-stop)     resolve_dir "${1:-}"; pg_stop; say "PostgreSQL stopped (port $PG_PORT kept)" ;;
  pg-start)    resolve_dir "${1:-}"; pg_start || die "PostgreSQL did not start on port $PG_PORT; see $DIR/pg.log"
               say "PostgreSQL running on port $PG_PORT" ;;
  redis-stop)  resolve_dir "${1:-}"; redis_stop; say "Redis stopped (port $REDIS_PORT kept)" ;;
  redis-start) resolve_dir "${1:-}"; redis_start || die "Redis did not start on port $REDIS_PORT; see $DIR/redis.log"
               say "Redis running on port $REDIS_PORT" ;;
  s3-stop)     resolve_dir "${1:-}"; [[ -n $S3_PORT ]] || die "no S3 server in $DIR"
               s3_stop; say "S3 server stopped (port $S3_PORT kept)" ;;
  s3-start)    resolve_dir "${1:-}"; [[ -n $S3_PORT ]] || die "no S3 server in $DIR"
               s3_start || die "S3 server did not start on port $S3_PORT; see $DIR/s3rver.log"
               say "S3 server running on port $S3_PORT" ;;
  *) sed -n '2,22s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
