#!/usr/bin/env bash
# Installs the Debian packages hearth needs to build and test (or, with --bench, to benchmark),
# and builds pgvector for PostgreSQL 15 (scripts/pgvector.sh) when it is not installed yet.
# Idempotent and quiet: when everything is present it prints nothing and touches nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BUILD_PKGS=(
  gcc make cmake pkg-config
  libuv1-dev node-llhttp libjansson-dev libsqlite3-dev libsodium-dev libjwt-dev libwslay-dev libssl-dev
  libxgboost-dev libvips-dev libcurl4-openssl-dev
)
TEST_PKGS=(
  libcmocka-dev python3 clang libclang-rt-14-dev curl
  # PostgreSQL + Redis backends, and the throw-away servers of scripts/services.sh
  postgresql-15 postgresql-client-15 libpq-dev
  redis-server redis-tools libhiredis-dev
  # building pgvector (scripts/pgvector.sh): PGXS headers/makefiles; tar+gzip unpack the source
  postgresql-server-dev-15 tar gzip
)
BENCH_PKGS=(
  wrk nginx-light procps
  python3-fastapi python3-uvicorn python3-psycopg2   # bench/peer_fastapi
  python3-celery python3-redis                       # bench/peer_celery (Celery's Redis transport needs python3-redis)
  python3-sklearn python3-pandas                     # bench/peer_sklearn
)

want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}")
if [[ "${1:-}" == "--bench" ]]; then
  want+=("${BENCH_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi

# pgvector: silent no-op when installed; on failure (e.g. no network) one warning line, never an error.
"$here/pgvector.sh" || true

# s3rver, the S3 server of scripts/services.sh, from npm at the version scripts/s3rver/package-lock.json
# pins, when the machine has Node.js (its own npm: never apt-get's, which conflicts with NodeSource's).
# Without node the S3 tests are skipped; a failure is one warning line, never an error.
if command -v node >/dev/null && [[ ! -f $here/s3rver/node_modules/s3rver/bin/s3rver.js ]]; then
  if ! command -v npm >/dev/null; then
    echo "deps.sh: warning: node without npm; s3rver not installed (the S3 tests will be skipped)" >&2
  else
    echo "deps.sh: installing s3rver (npm ci in scripts/s3rver)"
    npm ci --prefix "$here/s3rver" --no-audit --no-fund --loglevel=error >/dev/null 2>&1 \
      || echo "deps.sh: warning: npm ci in scripts/s3rver failed; the S3 tests will be skipped" >&2
  fi
fi
