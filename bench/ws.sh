#!/usr/bin/env bash
# bench/ws.sh BIN: live events over WebSockets (GET /ws).
#  1. progress latency: job_progress() in a separate `hearth worker` writes a "progress" event into
#     the outbox (PostgreSQL); the relay in `hearth serve` (woken by NOTIFY) PUBLISHes it on Redis;
#     serve's subscription hands it to the WebSocket of an admin subscribed to "jobs".
#     latency = the client's receipt - the event's timestamp.   Target: p99 <= 5 ms.
#  2. fan-out: 10,000 WebSockets on one serve subscribed to property:ID, one PATCH of that
#     property; time from the PATCH's answer to the first / median / last receipt, how many
#     received it (target: all), hearth's VmRSS with the connections open.
# Needs: PostgreSQL 15 + Redis (scripts/services.sh), /usr/bin/python3. See bench/README.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"

JOBS="${BENCH_WS_JOBS:-96}"               # test.sleep jobs enqueued
JOB_MS="${BENCH_WS_JOB_MS:-3000}"         # each sleeps this long, reporting progress every 50 ms
CONCURRENCY="${BENCH_WS_CONCURRENCY:-8}"  # hearth worker --concurrency
MIN_EVENTS="${BENCH_WS_MIN_EVENTS:-1000}" # fewer progress events than this: no verdict (MISS)
TAP="${BENCH_WS_TAP:-1}"                  # 1: also PSUBSCRIBE on Redis to split the latency there
CONNS="${BENCH_WS_CONNS:-10000}"          # fan-out WebSockets
SOURCES="${BENCH_WS_SOURCES:-4}"          # client source addresses 127.0.0.1..N
ROUNDS="${BENCH_WS_ROUNDS:-3}"            # PATCHes, one after the other, each to all CONNS
READ_AFTER="${BENCH_WS_READ_AFTER:-1}"    # s the fan-out client waits after a PATCH before reading (0: reads at once)
TARGET_P99_MS=5
ADMIN_EMAIL=ws-bench-admin@hearth.test
ADMIN_PASSWORD=ws-bench-password-1

# hearth and the client each need ~CONNS descriptors; children inherit this limit.
want=65536
hard="$(ulimit -Hn)"
if [[ "$hard" != unlimited && "$hard" -lt "$want" ]]; then
  ulimit -Hn "$want" 2>/dev/null || want="$hard"
fi
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE="$(ulimit -n)"
if [[ "$NOFILE" != unlimited && "$NOFILE" -lt $((CONNS + 100)) ]]; then
  echo "   WARNING: open-files limit $NOFILE is below $CONNS connections + margin"
fi

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
export DATABASE_URL REDIS_URL
REDIS_HOSTPORT="${REDIS_URL#redis://}"; REDIS_HOSTPORT="${REDIS_HOSTPORT%%/*}"

# one serve: no job runners of its own, test jobs on, events through Redis; the demo gives the
# fan-out a property to PATCH
PORT="$(free_port)"
HEARTH_JOB_WORKERS=0 HEARTH_TEST_JOBS=1 HEARTH_LOG_LEVEL=warn \
  start_hearth "$BIN" "$PORT" "$BENCH_TMP/data" "$BENCH_TMP/hearth.log"
SPID="$HEARTH_PID"
HEARTH_DATA_DIR="$BENCH_TMP/data" "$BIN" user create --email "$ADMIN_EMAIL" --role admin \
  --password "$ADMIN_PASSWORD" --full-name "WS Bench" >/dev/null 2>"$BENCH_TMP/user.log" \
  || { cat "$BENCH_TMP/user.log" >&2; die "hearth user create failed"; }

# and a worker process of its own
mkdir -p "$BENCH_TMP/worker"
HEARTH_DATA_DIR="$BENCH_TMP/worker" HEARTH_TEST_JOBS=1 HEARTH_LOG_LEVEL=warn \
  "$BIN" worker --concurrency "$CONCURRENCY" 2>"$BENCH_TMP/worker.log" &
WPID=$!
BENCH_PIDS+=("$WPID")
sleep 0.5
kill -0 "$WPID" 2>/dev/null || { tail -n 20 "$BENCH_TMP/worker.log" >&2; die "hearth worker exited at start-up"; }
# the demo queues its price model's training (a `train` job, ~15 s of CPU on the worker): let it
# finish first, so that it neither loads the machine during the latency run nor counts as a job
for _ in $(seq 600); do
  busy="$(curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null \
    | awk '/^hearth_jobs_(waiting|running)\{/ {n += $2} END {print n + 0}')"
  [[ "$busy" == 0 ]] && break
  sleep 0.2
done
[[ "$busy" == 0 ]] || die "the demo's jobs did not finish within 120 s"

get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }
warn_lines() {
  local f="$1" n
  n="$(grep -c . "$f" 2>/dev/null || true)"
  [[ "$n" == 0 ]] || { echo "   $(basename "$f"): $n line(s) at warn or above; most frequent:"; cut -c1-240 "$f" | sed 's/"time":"[^"]*",\?//; s/"request_id":"[^"]*",\?//' | sort | uniq -c | sort -rn | head -5 | sed 's/^/     /'; }
}

echo "== ws: live events over WebSockets (GET /ws)"
echo "   $(nproc) cores; PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), $(redis-server --version | awk '{print $1, $2, $3}') (scripts/services.sh); ulimit -n $NOFILE"
echo "   hearth serve --demo (pid $SPID): PostgreSQL + REDIS_URL, HEARTH_JOB_WORKERS=0, HEARTH_TEST_JOBS=1, threads ${HEARTH_THREADS:-default (cores)}, workers ${HEARTH_WORKERS:-default}"
echo "   hearth worker --concurrency $CONCURRENCY (pid $WPID), HEARTH_TEST_JOBS=1, same DATABASE_URL and REDIS_URL"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg) (the latency tail follows the machine's load)"

# ---- 1. progress latency
echo "-- progress latency: $JOBS test.sleep jobs of $JOB_MS ms (progress every 50 ms, throttled to one per 250 ms per job), one WebSocket subscribed to \"jobs\" as admin"
tap_arg=()
[[ "$TAP" == 1 ]] && tap_arg=(--redis "$REDIS_HOSTPORT")
out="$("$PY" "$BENCH_DIR/ws_client.py" latency --port "$PORT" --email "$ADMIN_EMAIL" --password "$ADMIN_PASSWORD" \
        --jobs "$JOBS" --job-ms "$JOB_MS" --late-ms "$TARGET_P99_MS" --dump "$BENCH_TMP/events.csv" "${tap_arg[@]}" 2>&1)" || true
echo "$out" | grep -v '^RESULT ' || true
line="$(echo "$out" | grep '^RESULT ' || true)"
kill -TERM "$WPID" 2>/dev/null || true   # the fan-out needs no worker
wait "$WPID" 2>/dev/null || true
serve_ok=1
kill -0 "$SPID" 2>/dev/null || { serve_ok=0; echo "   hearth serve DIED during the latency run; log:"; tail -20 "$BENCH_TMP/hearth.log"; }
if [[ -z "$line" ]]; then
  L_TARGET="TARGET ws progress latency p99 = ? (the client produced no result)  MISS"
else
  N="$(get events)"; P99="$(get p99_ms)"; ERRS="$(get errors)"
  OK="$(py_cmp "$serve_ok == 1 and $N >= $MIN_EVENTS and $P99 <= $TARGET_P99_MS and $ERRS == 0")"
  split=""
  [[ "$(get tap_n)" == 0 || -z "$(get tap_n)" ]] || split="; split at Redis: timestamp->PUBLISH out p50 $(get tap_p50_ms) / p99 $(get tap_p99_ms) ms, Redis->WebSocket p50 $(get hop_p50_ms) / p99 $(get hop_p99_ms) ms"
  note=""
  [[ "$(py_cmp "$N >= $MIN_EVENTS")" == 1 ]] || note=" (fewer than $MIN_EVENTS events: raise BENCH_WS_JOBS)"
  L_TARGET="TARGET ws progress latency p99 = $P99 ms ($N progress events$note; p50 $(get p50_ms), p90 $(get p90_ms), max $(get max_ms) ms; errors $ERRS; job_progress in a worker -> outbox -> NOTIFY -> relay -> Redis PUBLISH -> serve -> WebSocket$split; target <= $TARGET_P99_MS ms)  $(verdict "$OK")"
fi

# ---- 2. fan-out
echo "-- fan-out: $CONNS WebSockets subscribed to one property, $ROUNDS PATCH(es) of it (admin token); times from the PATCH's answer"
out="$("$PY" "$BENCH_DIR/ws_client.py" fanout --port "$PORT" --pid "$SPID" --email "$ADMIN_EMAIL" \
        --password "$ADMIN_PASSWORD" --conns "$CONNS" --sources "$SOURCES" --rounds "$ROUNDS" --read-after "$READ_AFTER" 2>&1)" || true
echo "$out" | grep -v '^RESULT ' || true
line="$(echo "$out" | grep '^RESULT ' || true)"
alive=1
kill -0 "$SPID" 2>/dev/null || { alive=0; echo "   hearth serve DIED during the fan-out; log:"; tail -20 "$BENCH_TMP/hearth.log"; }
warn_lines "$BENCH_TMP/hearth.log"
warn_lines "$BENCH_TMP/worker.log"
mb() { "$PY" -c "print(f'{$1/1024:.1f}')"; }
if [[ -z "$line" ]]; then
  F_TARGET="TARGET ws fanout received = ? (the client produced no result)  MISS"; F_INFO=""
else
  GOT="$(get received_min)"; ERRS="$(get errors)"
  OK="$(py_cmp "$alive == 1 and $GOT == $CONNS and $(get subscribed) == $CONNS and $ERRS == 0")"
  F_TARGET="TARGET ws fanout $CONNS subscribers: received $GOT/$CONNS (rounds: $(get received)); PATCH round $(get round) of $ROUNDS (median by last receipt), from the PATCH's answer: first $(get first_ms), median $(get median_ms), last $(get last_ms) ms; first to last receipt $(get spread_ms) ms, last $(get ts_last_ms) ms after the event's timestamp; VmRSS $(mb "$(get rss_before_kb)") MB before, $(mb "$(get rss_held_kb)") MB with $CONNS open; errors $ERRS; target all receive)  $(verdict "$OK")"
  F_INFO="INFO   ws fanout rounds: last receipt after the PATCH's answer $(get lasts_ms) ms, first to last $(get spreads_ms) ms, after the PATCH was sent $(get sent_lasts_ms) ms; PATCH answered after $(get resps_ms) ms"
fi
echo "$L_TARGET"
echo "$F_TARGET"
[[ -z "$F_INFO" ]] || echo "$F_INFO"
