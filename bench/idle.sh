#!/usr/bin/env bash
# bench/idle.sh BIN: memory and correctness with 10,000 idle keep-alive connections.
# Targets: 0 errors over connect + request, ~10 s idle, second request on every connection;
#          idle RSS with the demo loaded (no connections) < 100 MB.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"

CONNS="${BENCH_IDLE_CONNS:-10000}"
HOLD="${BENCH_IDLE_HOLD:-10}"
SOURCES="${BENCH_IDLE_SOURCES:-4}"   # client source addresses 127.0.0.1..N (spreads ephemeral ports)
TARGET_RSS_MB=100

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

PORT="$(free_port)"
HEARTH_LOG_LEVEL=warn start_hearth "$BIN" "$PORT" "$BENCH_TMP/data" "$BENCH_TMP/hearth.log"
echo "== idle: $CONNS keep-alive connections held ${HOLD}s (ulimit -n $NOFILE; hearth HEARTH_THREADS=${HEARTH_THREADS:-default}, HEARTH_MAX_CONNECTIONS=${HEARTH_MAX_CONNECTIONS:-default 20000}, HEARTH_IDLE_TIMEOUT_MS=${HEARTH_IDLE_TIMEOUT_MS:-default 60000})"
sleep 1
IDLE_RSS_KB="$(rss_kb "$HEARTH_PID")"
echo "   idle with the demo loaded, no connections: VmRSS $(( IDLE_RSS_KB / 1024 )) MB ($IDLE_RSS_KB kB), $(threads_of "$HEARTH_PID") threads"

out="$("$PY" "$BENCH_DIR/idle_client.py" --port "$PORT" --pid "$HEARTH_PID" --conns "$CONNS" \
        --hold "$HOLD" --sources "$SOURCES" 2>&1)" || true
echo "$out" | grep -v '^RESULT ' || true
line="$(echo "$out" | grep '^RESULT ' || true)"
alive=1
kill -0 "$HEARTH_PID" 2>/dev/null || { alive=0; echo "   hearth DIED during the run; log:"; tail -20 "$BENCH_TMP/hearth.log"; }
if grep -q '"level":"\(warn\|error\)"' "$BENCH_TMP/hearth.log" 2>/dev/null; then
  echo "   hearth logged warnings/errors:"; grep '"level":"\(warn\|error\)"' "$BENCH_TMP/hearth.log" | sort | uniq -c | sort -rn | head -5 | sed 's/^/     /'
fi
[[ -n "$line" ]] || { echo "TARGET idle  errors = ? (client produced no result)  MISS"; exit 0; }
get() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }
ERRS="$(get errors)"
[[ "$alive" == 1 ]] || ERRS=$((ERRS + 1))
mb() { "$PY" -c "print(f'{$1/1024:.1f}')"; }
echo "   VmRSS: before $(mb "$(get rss_before_kb)") MB, $CONNS held $(mb "$(get rss_held_kb)") MB, after $(mb "$(get rss_after_kb)") MB"
PER_CONN="$("$PY" -c "print(f'{($(get rss_held_kb)-$(get rss_before_kb))*1024/$CONNS:.0f}')")"
echo "   ~$PER_CONN bytes of RSS per idle connection"
echo "TARGET idle  $CONNS keep-alive conns, errors = $ERRS (first 200s $(get first_ok), second 200s $(get second_ok); RSS before $(mb "$(get rss_before_kb)"), held $(mb "$(get rss_held_kb)"), after $(mb "$(get rss_after_kb)") MB; target 0 errors)  $(verdict "$(py_cmp "$ERRS == 0")")"
echo "TARGET rss   idle RSS with demo loaded = $(mb "$IDLE_RSS_KB") MB (target < $TARGET_RSS_MB MB)  $(verdict "$(py_cmp "$IDLE_RSS_KB < $TARGET_RSS_MB * 1024")")"
