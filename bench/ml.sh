#!/usr/bin/env bash
# bench/ml.sh BIN: the price model. (1) Accuracy: `hearth train` (default rounds, 5 folds, seed 42)
# on the Ames and Sacramento CSVs against scikit-learn's HistGradientBoostingRegressor on the same
# Ames rows, features and folds (bench/peer_sklearn/ames_cv.py). (2) Prediction latency in-process:
# bench/ml_predict.c, built here against the build's libhearth_core.a, times pricing_predict() on
# real rows (single calls and loops of 1,000). (3) For reference, POST /api/ml/predict-price over
# HTTP on one keep-alive connection.
# Targets: Ames RMSLE hearth <= peer + 0.005 and <= 0.12; in-process single prediction p99 <= 100 us.
# Needs: python3-sklearn, python3-pandas (scripts/deps.sh --bench), gcc, the build directory of BIN
# (libhearth_core.a, CMakeFiles/hearth.dir/link.txt).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BUILD="$(dirname "$BIN")"

DATA="${BENCH_ML_DATA:-$ROOT/../shared/data}"  # the reference data beside the checkout
AMES="$DATA/ames.csv"
SAC="$DATA/sacramento.csv"
N_PRED="${BENCH_ML_PREDICTIONS:-20000}"
N_HTTP="${BENCH_ML_HTTP:-2000}"
[[ -r "$AMES" && -r "$SAC" ]] || die "$AMES or $SAC is missing (BENCH_ML_DATA=dir)"
"$PY" -c 'import sklearn, pandas' 2>/dev/null || die "scikit-learn / pandas missing (apt-get install python3-sklearn python3-pandas)"
[[ -r "$BUILD/libhearth_core.a" && -r "$BUILD/CMakeFiles/hearth.dir/link.txt" ]] \
  || die "$BUILD has no libhearth_core.a / CMakeFiles/hearth.dir/link.txt (build with make first)"
command -v gcc >/dev/null || die "gcc is not installed"
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

DIR="$BENCH_TMP/data"
mkdir -p "$DIR"
export HEARTH_LOG_LEVEL=warn

echo "== ml: price model accuracy (Ames, 5-fold CV) and prediction latency"
echo "   $(nproc) cores, $(uname -sr); $("$PY" -c 'import sklearn; print("scikit-learn", sklearn.__version__)'); XGBoost $(dpkg-query -W -f '${Version}' libxgboost0 2>/dev/null || echo '?') (libxgboost0)"
HEARTH_DATA_DIR="$DIR" "$BIN" import "$AMES" --format ames 2>&1 | tail -n 1 | sed 's/^/   /'
HEARTH_DATA_DIR="$DIR" "$BIN" import "$SAC" --format sacramento 2>&1 | tail -n 1 | sed 's/^/   /'

# --- accuracy: hearth
echo "--- hearth train (default rounds; the 'listing fields only' models are trained too)"
t0=$(date +%s.%N)
HEARTH_DATA_DIR="$DIR" "$BIN" train >"$BENCH_TMP/train.out" 2>"$BENCH_TMP/train.err" \
  || { cat "$BENCH_TMP/train.err" >&2; die "hearth train failed"; }
t1=$(date +%s.%N)
TRAIN_S=$("$PY" -c "print(f'{$t1 - $t0:.1f}')")
sed 's/^/   /' "$BENCH_TMP/train.out"
grep -E '^train: ames fold' "$BENCH_TMP/train.err" | sed 's/^/   /' || true
echo "   hearth train: ${TRAIN_S} s wall (both markets, both variants, 5 folds + final fit each)"
H_RMSLE="$(awk '$1 == "ames" {for (i = 1; i < NF; i++) if ($i == "rmsle") print $(i + 1)}' "$BENCH_TMP/train.out")"
S_RMSLE="$(awk '$1 == "sacramento" {for (i = 1; i < NF; i++) if ($i == "rmsle") print $(i + 1)}' "$BENCH_TMP/train.out")"

# --- accuracy: the peer
echo "--- peer: bench/peer_sklearn/ames_cv.py"
"$PY" "$BENCH_DIR/peer_sklearn/ames_cv.py" "$AMES" >"$BENCH_TMP/peer.out" 2>&1 \
  || { tail -n 20 "$BENCH_TMP/peer.out" >&2; die "the peer failed"; }
sed 's/^/   /' "$BENCH_TMP/peer.out"
RES="$(grep '^RESULT ' "$BENCH_TMP/peer.out" | tail -n 1)"
P_RMSLE="$(get "$RES" rmsle_mean)"
[[ -n "$H_RMSLE" && -n "$P_RMSLE" ]] || die "no RMSLE figure (hearth '$H_RMSLE', peer '$P_RMSLE')"
echo "TARGET ml rmsle ames hearth=$H_RMSLE peer=$P_RMSLE (target: hearth <= peer + 0.005 and <= 0.12)  $(verdict "$(py_cmp "$H_RMSLE <= $P_RMSLE + 0.005 and $H_RMSLE <= 0.12")")"
echo "INFO ml rmsle sacramento hearth=${S_RMSLE:-?} (no peer); hearth train ${TRAIN_S} s, peer $(get "$RES" secs) s"

# --- in-process prediction latency
echo "--- in-process pricing_predict(): bench/ml_predict.c linked against $BUILD/libhearth_core.a"
# the libraries of hearth's own link line (paths relative to the build directory)
read -ra LIBS <<<"$(sed 's/^.*-o hearth *//; s/ -lm *$//' "$BUILD/CMakeFiles/hearth.dir/link.txt")"
(cd "$BUILD" && gcc -O2 -g -DNDEBUG -std=gnu17 -D_FILE_OFFSET_BITS=64 -Wall -Wextra -Wno-unused-parameter \
  -I"$ROOT/src" "$BENCH_DIR/ml_predict.c" -o "$BENCH_TMP/ml_predict" "${LIBS[@]}" -lm) \
  || die "building bench/ml_predict.c failed"
"$BENCH_TMP/ml_predict" "$DIR" "$N_PRED" 400 >"$BENCH_TMP/predict.out" 2>"$BENCH_TMP/predict.err" \
  || { cat "$BENCH_TMP/predict.err" >&2; die "ml_predict failed"; }
sed 's/^/   /' "$BENCH_TMP/predict.out"
FULL="$(grep '^single_full ' "$BENCH_TMP/predict.out")"
BASIC="$(grep '^single_basic ' "$BENCH_TMP/predict.out")"
BATCH="$(grep '^batch1000 ' "$BENCH_TMP/predict.out")"
P99="$(get "$FULL" p99)"
echo "TARGET ml predict p99 = $P99 us (target <= 100 us; single pricing_predict, rows with their source features, p50 $(get "$FULL" p50) us)  $(verdict "$(py_cmp "$P99 <= 100")")"
echo "INFO ml predict p99 listing fields only (no features: the basic model) = $(get "$BASIC" p99) us (p50 $(get "$BASIC" p50) us)"
echo "INFO ml batch 1000 = $(get "$BATCH" median_ms) ms (median of 10; best $(get "$BATCH" best_ms) ms; pricing_predict in a loop)"

# --- over HTTP, for reference
PORT="$(free_port)"
HEARTH_DATA_DIR="$DIR" "$BIN" serve --listen "127.0.0.1:$PORT" 2>"$BENCH_TMP/serve.log" &
BENCH_PIDS+=("$!")
wait_http "http://127.0.0.1:$PORT/health/live" "$!" hearth || die "hearth serve did not start"
"$PY" - "$DIR/hearth.db" "$PORT" "$N_HTTP" >"$BENCH_TMP/http.out" 2>&1 <<'EOF' || { cat "$BENCH_TMP/http.out" >&2; echo "INFO ml http: failed"; }
import http.client, json, sqlite3, sys, time
db, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = sqlite3.connect(db).execute(
    "SELECT source, size_sqft, bedrooms, bathrooms, year_built, lot_size_sqft, latitude, longitude, features"
    " FROM properties WHERE id % 9 = 0 ORDER BY id LIMIT 400").fetchall()
bodies = []
for s, size, bed, bath, yb, lot, lat, lon, feat in rows:
    b = {"market": s, "size_sqft": size, "bedrooms": bed, "bathrooms": bath, "year_built": yb,
         "lot_size_sqft": lot, "latitude": lat, "longitude": lon, "features": json.loads(feat)}
    bodies.append(json.dumps({k: v for k, v in b.items() if v is not None}))
c = http.client.HTTPConnection("127.0.0.1", port)
lat, codes = [], {}
for i in range(200 + n):
    t0 = time.perf_counter()
    c.request("POST", "/api/ml/predict-price", bodies[i % len(bodies)], {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if i >= 200:
        lat.append((time.perf_counter() - t0) * 1e6)
        codes[r.status] = codes.get(r.status, 0) + 1
lat.sort()
print(f"http p50={lat[len(lat) // 2]:.0f} p99={lat[int(len(lat) * 0.99) - 1]:.0f} n={len(lat)} "
      f"codes={','.join(f'{k}:{v}' for k, v in sorted(codes.items()))}")
EOF
H="$(grep '^http ' "$BENCH_TMP/http.out" || true)"
[[ -z "$H" ]] || echo "INFO ml http POST /api/ml/predict-price p50 = $(get "$H" p50) us, p99 = $(get "$H" p99) us (one keep-alive connection from Python, $(get "$H" n) requests, statuses $(get "$H" codes))"
echo "INFO ml recommendations: not measured here"
