#!/usr/bin/env bash
# fuzz.sh BUILD_DIR [SECONDS]: smoke-runs every libFuzzer target (BUILD_DIR/fuzz_*) for SECONDS
# each (default 20) over a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/), so the
# checked-in seeds never change. Prints one line per target (execs, exec/s, coverage, features)
# and ends with "fuzz: N passed, M failed"; exits 1 if any target reported a crash, leak, timeout,
# OOM or sanitizer error, naming the reproducer file libFuzzer wrote. Used by `make fuzz-smoke`/CI.
#
# The one idea: libFuzzer's own exit status is the verdict (non-zero on any finding), and its
# reproducer goes to BUILD_DIR/fuzz-artifacts/<target>/ (or $FUZZ_ARTIFACTS), which outlives the
# scratch corpus.
set -uo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
build=$1
secs=${2:-20}
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [[ "$secs" -lt 1 ]]; then
  echo "fuzz: SECONDS must be a positive integer, got '$secs'" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
seeds=$root/tests/fuzz/corpus
dicts=$root/tests/fuzz

shopt -s nullglob
bins=()
for b in "$build"/fuzz_*; do
  [[ -f "$b" && -x "$b" ]] && bins+=("$b")
done
if [[ ${#bins[@]} -eq 0 ]]; then
  echo "fuzz: no fuzz_* executables in $build (run 'make fuzz' first)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-fuzz.XXXXXX")
artifacts_root=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}
mkdir -p "$artifacts_root"
trap 'rm -rf "$work"' EXIT

# Leaks are findings; UBSan reports stop the run (the library is built with -fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
for bin in "${bins[@]}"; do
  name=$(basename "$bin")
  corpus=$work/$name
  mkdir -p "$corpus"
  [[ -d "$seeds/$name" ]] && cp -- "$seeds/$name"/* "$corpus"/ 2>/dev/null
  art=$artifacts_root/$name
  mkdir -p "$art"
  args=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="$art/")
  # tests/fuzz/<target>.dict, else <first word>.dict (fuzz_http_request -> http.dict)
  short=${name#fuzz_}
  for dict in "$dicts/$short.dict" "$dicts/${short%%_*}.dict"; do
    if [[ -f "$dict" ]]; then
      args+=(-dict="$dict")
      break
    fi
  done
  log=$work/$name.log
  "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
  rc=$?

  # libFuzzer's final stats and the last status line give execs, coverage and features
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  units=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")

  finding=$(grep -E -m1 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|ALARM: working on the last Unit|out-of-memory|deadly signal' "$log")
  if [[ $rc -ne 0 || -n "$finding" ]]; then
    failed=$((failed + 1))
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    printf 'FAIL %-22s exit %d: %s\n' "$name" "$rc" "${finding:-see log}"
    [[ -n "$repro" ]] && printf '     reproducer: %s\n     rerun: %s %s\n' "$repro" "$bin" "$repro"
    cp -- "$log" "$art/last-run.log"
    printf '     log: %s\n' "$art/last-run.log"
    # the top of the report: the error line and the first frames of its stack
    grep -E -A14 -m1 'ERROR: |runtime error:|ALARM:' "$log" | sed 's/^/     | /' | head -18
  else
    passed=$((passed + 1))
    printf 'ok   %-22s %8s execs %7s exec/s  cov %-5s ft %-6s corpus %s\n' \
      "$name" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}"
  fi
done

echo "fuzz: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
