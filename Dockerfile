# Mailweb image: one image for web, worker, beat and idle (docker-compose.yml picks the command).
# Multi-stage: wheels are built with compilers in the first stage, the runtime stage has none.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt README.md ./
COPY accounts ./accounts
COPY mailweb ./mailweb
COPY sync ./sync
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=mailweb.settings \
    MAILWEB_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system mailweb && useradd --system --gid mailweb --home /app mailweb \
    && mkdir -p /data /app && chown mailweb:mailweb /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=mailweb:mailweb manage.py ./
COPY --chown=mailweb:mailweb accounts ./accounts
COPY --chown=mailweb:mailweb mailweb ./mailweb
COPY --chown=mailweb:mailweb sync ./sync
COPY --chown=mailweb:mailweb templates ./templates
COPY --chown=mailweb:mailweb static ./static
# collectstatic runs under the production settings (DEBUG off), so that it writes the hashed,
# compressed files and the manifest that the containers serve; without the manifest every page
# is a server error. Production settings refuse to import without the first three; these
# build-time values never reach a container. The data directory points away from /data so that
# what settings create at import (the broker's folders) does not end up in the blobs volume.
RUN SECRET_KEY=build-only MAILWEB_TOKEN_KEYS=build-only ALLOWED_HOSTS=build.invalid \
    MAILWEB_DATA_DIR=/tmp/build-data python manage.py collectstatic --no-input -v 0 \
    && rm -rf /tmp/build-data
USER mailweb
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["gunicorn", "mailweb.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
