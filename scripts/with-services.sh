#!/usr/bin/env bash
# with-services.sh CMD [ARGS...]: run CMD with a throw-away PostgreSQL, Redis and S3 server
# (scripts/services.sh) whose settings are exported as DATABASE_URL, REDIS_URL, HEARTH_SERVICES_DIR and
# S3_ENDPOINT, S3_BUCKET, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY (the S3 ones only when
# node and s3rver are installed), and stop them after, whatever CMD's outcome. Exits with CMD's status.
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
