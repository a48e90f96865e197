# simlabel web + worker image (CPU torch; CUDA is used when the host provides it).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/var/cache/numba \
    SIMLABEL_VAR_DIR=/srv/var

RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/app
COPY requirements.txt package.json package-lock.json* ./
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
    && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; fi
COPY . .
RUN SECRET_KEY=collectstatic-only-key-not-used-at-runtime-0123456789abcdefghijklmnop \
    python manage.py collectstatic --noinput

RUN useradd --create-home simlabel && mkdir -p /srv/var /var/cache/numba && chown -R simlabel /srv/var /var/cache/numba
USER simlabel
EXPOSE 8000
CMD ["gunicorn", "project.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
