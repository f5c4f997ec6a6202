#!/usr/bin/env bash
# bench/images.sh BIN: the photo pipeline (src/domain/imageproc.c), in process, through
# bench/images_bench.c built here with gcc against the build's libhearth_core.a.
# (1) Near-duplicates: the photos of ../shared/data/photos (beside the checkout) and five copies
#     of each made with libvips (50% resize, JPEG quality 60, 10% of the area cropped away around
#     the centre, 3 degree rotation, brightness +15%): 90 images, 4,005 pairs, 225 of them the same
#     photo; imageproc_near_duplicate decides every pair. Also, for information, harder edits.
# (2) Throughput: 50 JPEGs of 1155x866 (1.0 MP, quality 85, with EXIF and GPS) through
#     imageproc_process (both variants and the features), one thread, best of 3 rounds.
# Targets: recall >= 0.95 at precision >= 0.99; >= 20 images/s per core.
# Needs: gcc, libvips-dev, the build directory of BIN (libhearth_core.a,
# CMakeFiles/hearth.dir/link.txt).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="$(resolve_bin "${1:-}")"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BUILD="$(dirname "$BIN")"

PHOTOS="${BENCH_IMAGES_PHOTOS:-$ROOT/../shared/data/photos}"  # the reference photos beside the checkout
N="${BENCH_IMAGES_N:-50}"
ROUNDS="${BENCH_IMAGES_ROUNDS:-3}"
[[ -d "$PHOTOS" ]] || die "$PHOTOS is missing (BENCH_IMAGES_PHOTOS=dir)"
[[ -r "$BUILD/libhearth_core.a" && -r "$BUILD/CMakeFiles/hearth.dir/link.txt" ]] \
  || die "$BUILD has no libhearth_core.a / CMakeFiles/hearth.dir/link.txt (build with make first)"
command -v gcc >/dev/null || die "gcc is not installed"
pkg-config --exists vips || die "libvips-dev is not installed"
get() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {print $2}'; }

echo "== images: near-duplicate detection and processing throughput"
echo "   $(nproc) cores, $(uname -sr); libvips $(pkg-config --modversion vips); photos from $PHOTOS"
# the libraries of hearth's own link line (paths relative to the build directory)
read -ra LIBS <<<"$(sed 's/^.*-o hearth *//; s/ -lm *$//' "$BUILD/CMakeFiles/hearth.dir/link.txt")"
read -ra VIPS_CFLAGS <<<"$(pkg-config --cflags vips)"
(cd "$BUILD" && gcc -O2 -g -DNDEBUG -std=gnu17 -D_FILE_OFFSET_BITS=64 -Wall -Wextra -Wno-unused-parameter \
  "${VIPS_CFLAGS[@]}" -I"$ROOT/src" "$BENCH_DIR/images_bench.c" -o "$BENCH_TMP/images_bench" "${LIBS[@]}" -lm) \
  || die "building bench/images_bench.c failed"

# --- near-duplicates
echo "--- near-duplicates: bench/images_bench.c dups"
"$BENCH_TMP/images_bench" dups "$PHOTOS" >"$BENCH_TMP/dups.out" 2>"$BENCH_TMP/dups.err" \
  || { cat "$BENCH_TMP/dups.err" >&2; die "images_bench dups failed"; }
grep -v '^dups ' "$BENCH_TMP/dups.out"
RES="$(grep '^dups ' "$BENCH_TMP/dups.out")"
R="$(get "$RES" recall)"
P="$(get "$RES" precision)"
echo "   tp $(get "$RES" tp), fp $(get "$RES" fp), fn $(get "$RES" fn) of $(get "$RES" true_pairs) same-photo pairs among $(get "$RES" pairs); candidate radius $(get "$RES" radius) bits"
echo "TARGET images duplicates recall=$R precision=$P (target recall >= 0.95 at precision >= 0.99)  $(verdict "$(py_cmp "$R >= 0.95 and $P >= 0.99")")"

# --- throughput
echo "--- throughput: bench/images_bench.c throughput ($N images, $ROUNDS rounds, one thread)"
"$BENCH_TMP/images_bench" throughput "$PHOTOS" "$N" "$ROUNDS" >"$BENCH_TMP/tput.out" 2>"$BENCH_TMP/tput.err" \
  || { cat "$BENCH_TMP/tput.err" >&2; die "images_bench throughput failed"; }
grep -v '^throughput ' "$BENCH_TMP/tput.out"
RES="$(grep '^throughput ' "$BENCH_TMP/tput.out")"
X="$(get "$RES" images_per_cpu_s)"
echo "TARGET images throughput = $X images/s per core (target >= 20; imageproc_process with both variants and the features, 1.0 MP JPEGs, best round by CPU time; $(get "$RES" images_per_wall_s) images/s wall)  $(verdict "$(py_cmp "$X >= 20")")"
