#!/usr/bin/env bash
# bench/hnsw.sh BIN: approximate nearest neighbours, hearth's in-process HNSW (src/infra/hnsw.c)
# against pgvector's HNSW in PostgreSQL 15, on the same 100,000 vectors of the image embedding
# dimension (IMAGEPROC_DIM, 256) and 1,000 held-out queries from a documented Gaussian mixture
# (100 centres uniform on the sphere, each point a centre plus N(0, 0.05^2) per coordinate,
# normalised; seed 42). Both indexes M = 16, ef_construction = 200, cosine. The exact top 10 of
# every query by brute force; then, for ef = 10, 20, 40, ... (hnsw_search's ef; pgvector's
# hnsw.ef_search), recall@10 and queries/s, one query at a time on one thread (hearth) or over one
# connection with a prepared statement and a binary vector parameter (pgvector).
# Target: at the smallest ef of each side whose recall@10 is >= 0.95, hearth's queries/s >= 2 x
# pgvector's. Also reported: build times (hearth single-threaded hnsw_add calls; pgvector's CREATE
# INDEX with PostgreSQL's default parallel maintenance workers), memory (hearth's VmRSS growth,
# pgvector's index and table sizes), hearth's save and load times.
# Needs: gcc, the build directory of BIN (libhearth_core.a, CMakeFiles/hearth.dir/link.txt), libpq
# headers, PostgreSQL 15 with pgvector (scripts/services.sh; scripts/deps.sh installs both).
# Knobs: BENCH_HNSW_N, BENCH_HNSW_QUERIES, BENCH_HNSW_EFS (comma-separated), BENCH_HNSW_SIGMA,
# BENCH_HNSW_PG=0 (hearth only).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BUILD="$(dirname "$BIN")"

N="${BENCH_HNSW_N:-100000}"
Q="${BENCH_HNSW_QUERIES:-1000}"
EFS="${BENCH_HNSW_EFS:-10,20,40,80,160,320,640}"
SIGMA="${BENCH_HNSW_SIGMA:-0.05}"
WITH_PG="${BENCH_HNSW_PG:-1}"
CLUSTERS=100
SEED=42
M=16
EFC=200
RECALL=0.95
TARGET=2
DIM="$(awk '$1 == "#define" && $2 == "IMAGEPROC_DIM" {print $3}' "$ROOT/src/domain/imageproc.h")"
[[ "$DIM" =~ ^[0-9]+$ ]] || die "cannot read IMAGEPROC_DIM from src/domain/imageproc.h"
[[ -r "$BUILD/libhearth_core.a" && -r "$BUILD/CMakeFiles/hearth.dir/link.txt" ]] \
  || die "$BUILD has no libhearth_core.a / CMakeFiles/hearth.dir/link.txt (build with make first)"
command -v gcc >/dev/null || die "gcc is not installed"
PQ_CFLAGS="$(pkg-config --cflags libpq 2>/dev/null)" || die "libpq's pkg-config file is missing (libpq-dev)"
if [[ "$WITH_PG" == 1 && ! -e /usr/share/postgresql/15/extension/vector.control ]]; then
  die "pgvector is not installed for PostgreSQL 15 (scripts/deps.sh)"
fi

echo "== hnsw: recall@10 vs queries/s, hearth's HNSW in-process vs pgvector (PostgreSQL 15)"
echo "   $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   data: $N vectors + $Q queries, dim $DIM, $CLUSTERS clusters, sigma $SIGMA, seed $SEED; M $M, ef_construction $EFC; ef $EFS"

# --- the bench program, against the build's library (the libraries of hearth's own link line)
read -ra LIBS <<<"$(sed 's/^.*-o hearth *//; s/ -lm *$//' "$BUILD/CMakeFiles/hearth.dir/link.txt")"
read -ra PQF <<<"$PQ_CFLAGS"
(cd "$BUILD" && gcc -O2 -g -DNDEBUG -std=gnu17 -Wall -Wextra -Wno-unused-parameter -I"$ROOT/src" "${PQF[@]}" \
  "$BENCH_DIR/hnsw_bench.c" -o "$BENCH_TMP/hnsw_bench" "${LIBS[@]}" -lm) \
  || die "building bench/hnsw_bench.c failed"

ARGS=(--n "$N" --q "$Q" --dim "$DIM" --clusters "$CLUSTERS" --sigma "$SIGMA" --seed "$SEED" --m "$M" --efc "$EFC"
      --efs "$EFS" --dir "$BENCH_TMP")

# --- PostgreSQL with room for the whole index in shared buffers (hearth's is all in memory too)
SERVICES_DIR=""
stop_all() {
  bench_cleanup
  [[ -z "$SERVICES_DIR" ]] || "$ROOT/scripts/services.sh" stop "$SERVICES_DIR" >/dev/null 2>&1 || true
}
trap stop_all EXIT
if [[ "$WITH_PG" == 1 ]]; then
  svc_env="$(HEARTH_PG_OPTS="-c shared_buffers=1GB" "$ROOT/scripts/services.sh" start 2>"$BENCH_TMP/services.log")" \
    || { cat "$BENCH_TMP/services.log" >&2; die "scripts/services.sh start failed"; }
  eval "$svc_env"
  SERVICES_DIR="$HEARTH_SERVICES_DIR"
  PG_PORT="$(echo "$DATABASE_URL" | sed -E 's#^.*:([0-9]+)/[^/]*$#\1#')"
  [[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "cannot read the port of $DATABASE_URL"
  # over the Unix socket in the services directory: the cheapest round trip PostgreSQL offers
  ARGS+=(--pg "host=$SERVICES_DIR port=$PG_PORT dbname=hearth user=postgres")
fi

t0=$(date +%s)
"$BENCH_TMP/hnsw_bench" "${ARGS[@]}" >"$BENCH_TMP/out" 2>"$BENCH_TMP/err" \
  || { cat "$BENCH_TMP/out" "$BENCH_TMP/err" >&2; die "hnsw_bench failed"; }
t1=$(date +%s)
# the plan names the index; the vector literal in it is cut short
sed -E 's/(\[[-0-9.e,]{40})[^]]*\]/\1...]/; s/^/   /' "$BENCH_TMP/out"
echo "   ($((t1 - t0)) s)"

get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }
# first SIDE: the first line of SIDE (in ef order) whose recall reaches the mark
first() { awk -v s="$1" -v r="$RECALL" '$1 == s { split($3, a, "="); if (a[2] + 0 >= r) { print; exit } }' "$BENCH_TMP/out"; }

HB="$(grep '^hearth_build ' "$BENCH_TMP/out")"
echo "INFO hnsw build: hearth $(get "$HB" secs) s (one thread, $N hnsw_add calls), VmRSS +$(get "$HB" rss_mb) MB; file $(get "$HB" file_mb) MB, save $(get "$HB" save_s) s, load $(get "$HB" load_s) s"
H="$(first hearth)"
HQ="$(get "$H" qps)"
if [[ "$WITH_PG" == 1 ]]; then
  PB="$(grep '^pg_build ' "$BENCH_TMP/out")"
  echo "INFO hnsw build: pgvector $(get "$PB" version) CREATE INDEX $(get "$PB" secs) s (max_parallel_maintenance_workers=$(get "$PB" parallel_workers)), COPY $(get "$PB" copy_s) s; index $(get "$PB" index_mb) MB, table $(get "$PB" table_mb) MB, shared_buffers $(get "$PB" shared_buffers)"
  RT="$(grep '^pg_roundtrip ' "$BENCH_TMP/out")"
  echo "INFO hnsw pgvector round trip of a prepared SELECT 1: $(get "$RT" us) us"
  P="$(first pg)"
  PQ="$(get "$P" qps)"
fi
HEF="$(get "$H" ef)"
PEF="$(get "${P:-}" ef)"
if [[ -z "$HQ" || ( "$WITH_PG" == 1 && -z "${PQ:-}" ) ]]; then
  echo "TARGET hnsw qps at recall@10 $RECALL: hearth=${HQ:-none} pgvector=${PQ:-none} (an ef list that reaches the recall is needed; target >= $TARGET)  MISS"
  exit 0
fi
if [[ "$WITH_PG" != 1 ]]; then
  echo "INFO hnsw hearth qps at recall@10 $RECALL: $HQ (ef $HEF, recall $(get "$H" recall)); pgvector not run"
  exit 0
fi
RATIO="$("$PY" -c "print(f'{$HQ / $PQ:.2f}')")"
echo "INFO hnsw at recall@10 >= $RECALL: hearth ef $HEF (recall $(get "$H" recall), $(get "$H" us) us/query), pgvector ef_search $PEF (recall $(get "$P" recall), $(get "$P" us) us/query)"
echo "TARGET hnsw qps at recall@10 $RECALL: hearth=$HQ pgvector=$PQ ratio=$RATIO (target >= $TARGET)  $(verdict "$(py_cmp "$RATIO >= $TARGET")")"
