# shellcheck shell=bash
# bench/lib.sh: helpers shared by the benchmark scripts (sourced, not run).
# Every server a script starts is recorded in BENCH_PIDS and stopped by bench_cleanup, which the
# scripts install as an EXIT trap; the temp dir BENCH_TMP is removed there too.

PY=/usr/bin/python3
# shellcheck disable=SC2034  # used by the scripts that source this file
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_PIDS=()
BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/hearth-bench.XXXXXX")"

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    # give each server up to 5 s to exit, then force it
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  [[ -n "${BENCH_KEEP_TMP:-}" ]] || rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "error: $*" >&2; exit 2; }

# free_port: a TCP port on 127.0.0.1 that nothing is listening on right now.
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# resolve_bin BIN: absolute path of the hearth binary, or die.
resolve_bin() {
  [[ -n "${1:-}" ]] || die "usage: $0 path/to/hearth"
  [[ -x "$1" ]] || die "$1 is not an executable"
  echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

# wait_http URL PID NAME: poll URL until it answers 200 (30 s), failing if PID exits first.
wait_http() {
  local url="$1" pid="$2" name="$3"
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name exited during start-up" >&2
      return 1
    fi
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null)" == "200" ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: $name did not answer $url within 30 s" >&2
  return 1
}

# start_hearth BIN PORT DATADIR LOGFILE: start `hearth serve --demo` in the background (extra
# HEARTH_* settings come from the caller's environment), wait until /health/live answers, and set
# HEARTH_PID.
start_hearth() {
  local bin="$1" port="$2" dir="$3" log="$4"
  mkdir -p "$dir"
  HEARTH_DATA_DIR="$dir" "$bin" serve --demo --listen "127.0.0.1:$port" 2>"$log" &
  HEARTH_PID=$!
  BENCH_PIDS+=("$HEARTH_PID")
  if ! wait_http "http://127.0.0.1:$port/health/live" "$HEARTH_PID" hearth; then
    echo "--- last lines of hearth's log ($log):" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}

# rss_kb PID: VmRSS of PID in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# threads_of PID: number of threads in PID.
threads_of() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }

# verdict OK: PASS or MISS.
verdict() { if [[ "$1" == 1 ]]; then echo PASS; else echo MISS; fi; }

# py_cmp EXPR: prints 1 if the Python boolean expression is true, else 0.
py_cmp() { "$PY" -c "print(1 if ($1) else 0)"; }
