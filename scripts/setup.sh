#!/usr/bin/env bash
# Installs everything simlabel needs into ./.venv and ./node_modules.
# Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
REQUIREMENTS="${1:-requirements.txt}"

if [ ! -x .venv/bin/python ]; then
    echo "==> creating virtual environment in .venv"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.txt "$REQUIREMENTS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "==> installing Python packages from $REQUIREMENTS"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$REQUIREMENTS"
    touch "$stamp"
fi
# The command-line client (`simlabel`, simlabel_client/; pyproject.toml packages only it), editable so it
# follows the source; built with the venv's own setuptools, so it needs no network.
clientstamp=".venv/.client-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$clientstamp" ] || [ ! -x .venv/bin/simlabel ]; then
    echo "==> installing the command-line client (.venv/bin/simlabel)"
    .venv/bin/python -m pip install -qq --no-build-isolation --no-deps -e .
    touch "$clientstamp"
fi
# numba compiles UMAP's kernels on first use (~20 s on 2 cores, in the first
# run's clustering): compile them now into the cache every later process reads.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/var/numba-cache}"
warmstamp="$NUMBA_CACHE_DIR/.warmed-$(cat requirements.txt embeddings/ml/_umap.py embeddings/ml/warmup.py | sha256sum | cut -c1-16)"
if [ ! -f "$warmstamp" ]; then
    echo "==> compiling UMAP's numba kernels into $NUMBA_CACHE_DIR (once per install)"
    .venv/bin/python -m embeddings.ml.warmup
    touch "$warmstamp"
fi
if [ -f package-lock.json ]; then
    lockstamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
    if [ ! -f "$lockstamp" ]; then
        echo "==> installing front-end packages (npm ci)"
        npm ci --silent --no-audit --no-fund
        touch "$lockstamp"
    fi
fi
