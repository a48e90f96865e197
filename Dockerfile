# simlabel web + worker image (CPU torch; CUDA is used when the host provides it).
FROM python:3.11-slim-bookworm

# Production settings by default: the container refuses to start without a
# strong SECRET_KEY, and DEBUG, the dev key and the dev host list never apply.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/var/cache/numba \
    SIMLABEL_VAR_DIR=/srv/var \
    SIMLABEL_PRODUCTION=1

RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/app
COPY requirements.txt package.json package-lock.json* ./
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
    && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; fi
COPY . .
# Hashed static files and their manifest, as production settings read them
# (tests/test_deploy.py runs this same script and renders every page on it).
RUN ./scripts/collectstatic.sh
# Compile UMAP's numba kernels now, into the cache the workers read, so a new
# deployment's first run does not pay ~20-40 s of compilation.
RUN python -m embeddings.ml.warmup

RUN useradd --create-home simlabel && mkdir -p /srv/var /var/cache/numba && chown -R simlabel /srv/var /var/cache/numba
USER simlabel
EXPOSE 8000
# 0.0.0.0 inside the container only; docker-compose.yml publishes nginx, not this port.
CMD ["gunicorn", "project.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
