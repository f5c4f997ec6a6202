#!/usr/bin/env bash
# bench/http.sh BIN: raw HTTP throughput of hearth's /health/live (answered on the event loop)
# against nginx returning the same JSON body, same wrk settings, same number of server threads.
# Target: hearth req/s >= 0.70 x nginx req/s.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"

THREADS="${BENCH_SERVER_THREADS:-$(nproc)}"   # hearth event loops == nginx worker processes
WRK_THREADS="${BENCH_WRK_THREADS:-2}"
WRK_CONNS="${BENCH_WRK_CONNS:-100}"
WRK_SECS="${BENCH_WRK_SECS:-10}"
WARM_SECS="${BENCH_WARM_SECS:-2}"
TARGET=0.70
command -v wrk >/dev/null || die "wrk is not installed (scripts/deps.sh --bench)"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || die "nginx is not installed (scripts/deps.sh --bench)"

echo "== http: /health/live, hearth vs nginx"
echo "   $(nproc) cores; server threads: hearth HEARTH_THREADS=$THREADS, nginx worker_processes $THREADS"
echo "   wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s (each after a ${WARM_SECS}s warm-up), ${BENCH_HTTP_ROUNDS:-2} interleaved rounds each, client on the same machine, nothing pinned"

# --- hearth
HPORT="$(free_port)"
HEARTH_THREADS="$THREADS" HEARTH_LOG_LEVEL=warn \
  start_hearth "$BIN" "$HPORT" "$BENCH_TMP/hearth-data" "$BENCH_TMP/hearth.log"

# --- nginx, non-daemon, everything under its own prefix
NPORT="$(free_port)"
NP="$BENCH_TMP/nginx"
mkdir -p "$NP/logs" "$NP/tmp"
cat >"$NP/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $THREADS;
pid $NP/nginx.pid;
error_log $NP/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NP/tmp/body;
    proxy_temp_path $NP/tmp/proxy;
    fastcgi_temp_path $NP/tmp/fastcgi;
    uwsgi_temp_path $NP/tmp/uwsgi;
    scgi_temp_path $NP/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NPORT;
        location / {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
    }
}
EOF
"$NGINX" -p "$NP" -e "$NP/logs/error.log" -c "$NP/nginx.conf" &
NGINX_PID=$!
BENCH_PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NPORT/health/live" "$NGINX_PID" nginx || { cat "$NP/logs/error.log" >&2; exit 2; }

hb="$(curl -s "http://127.0.0.1:$HPORT/health/live")"
nb="$(curl -s "http://127.0.0.1:$NPORT/health/live")"
[[ "$hb" == "$nb" ]] || die "bodies differ: hearth '$hb' nginx '$nb'"
echo "   both answer: $hb"

H_ALL=(); N_ALL=()
# run_wrk NAME URL: warm up, then measure; sets RPS and prints wrk's output.
run_wrk() {
  local name="$1" url="$2" out
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARM_SECS}s" "$url" >/dev/null 2>&1 || true
  out="$(wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" --latency "$url" 2>&1)" || true
  echo "--- $name: wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s --latency $url"
  echo "$out" | sed 's/^/   /'
  RPS="$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')"
  [[ -n "$RPS" ]] || RPS=0
  if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
    echo "   WARNING: $name had errors (see above)"
  fi
}

# Interleave hearth and nginx rounds so background load on the machine hits both alike; each side
# is scored by its best round.
ROUNDS="${BENCH_HTTP_ROUNDS:-2}"
HRPS=0; NRPS=0
for r in $(seq "$ROUNDS"); do
  run_wrk "hearth (round $r/$ROUNDS)" "http://127.0.0.1:$HPORT/health/live"
  HRPS="$("$PY" -c "print(max($HRPS, $RPS))")"; H_ALL+=("$RPS")
  kill -0 "$HEARTH_PID" 2>/dev/null || { echo "hearth DIED during the run; log:" >&2; tail -20 "$BENCH_TMP/hearth.log" >&2; break; }
  run_wrk "nginx (round $r/$ROUNDS)" "http://127.0.0.1:$NPORT/health/live"
  NRPS="$("$PY" -c "print(max($NRPS, $RPS))")"; N_ALL+=("$RPS")
done
echo "   rounds: hearth ${H_ALL[*]}  nginx ${N_ALL[*]} req/s (best of each is scored)"
RATIO="$("$PY" -c "print('%.3f' % ($HRPS / $NRPS) if $NRPS > 0 else '0.000')")"
OK="$(py_cmp "$NRPS > 0 and $HRPS / $NRPS >= $TARGET")"
echo "   hearth: $HRPS req/s   nginx: $NRPS req/s   ratio hearth/nginx: $RATIO"
echo "TARGET http  hearth/nginx req/s ratio = $RATIO (hearth $HRPS, nginx $NRPS; target >= $TARGET)  $(verdict "$OK")"
