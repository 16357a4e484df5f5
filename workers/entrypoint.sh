#!/usr/bin/env bash
# Run the given fersearch command; the storage URL comes from FERSEARCH_STORAGE (never echoed:
# it holds the database password).
set -euo pipefail
if [ -z "${FERSEARCH_STORAGE:-}" ]; then
  echo "FERSEARCH_STORAGE is not set: point it at the study database" >&2
  exit 2
fi
exec "$@"
