#!/usr/bin/env bash
# with-services.sh CMD [ARGS...]: run CMD with a throw-away PostgreSQL and Redis (scripts/services.sh)
# whose URLs are exported as DATABASE_URL, REDIS_URL and HEARTH_SERVICES_DIR, and stop them after,
# whatever CMD's outcome. Exits with CMD's status.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exports="$("$here/services.sh" start)"
eval "$exports"
trap '"$here/services.sh" stop "$HEARTH_SERVICES_DIR" >/dev/null 2>&1 || true' EXIT
set +e
"$@"
status=$?
set -e
exit $status
