#!/usr/bin/env bash
# The production static files: hashed names, gzip/brotli copies and the
# manifest that production settings (whitenoise's CompressedManifestStaticFilesStorage)
# read. The Dockerfile runs this script and tests/test_deploy.py runs the same
# script, so what the tests render is what the image serves.
#   STATIC_ROOT=/path ./scripts/collectstatic.sh      (default: settings' STATIC_ROOT)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
# Production settings refuse a weak key; this one only lives for the build
# (static files do not depend on it) and is never stored.
SECRET_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(64))')" \
SIMLABEL_PRODUCTION=1 \
    "$PYTHON" manage.py collectstatic --noinput --clear
