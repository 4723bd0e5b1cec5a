# syntax=docker/dockerfile:1
# The billbridge worker image: `docker build -t billbridge .` then `docker run billbridge worker`.
# docker-compose.yml builds it for the `worker` service. Needs BuildKit (the default builder of
# current Docker and of `docker compose`) for the bind and cache mounts below.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Non-root user; its home holds BILLBRIDGE_DATA_DIR (unused when TEMPORAL_ADDRESS and
# DATABASE_URL point elsewhere, as they do in docker-compose.yml, but writable either way).
RUN groupadd --system --gid 10001 billbridge \
 && useradd --system --uid 10001 --gid billbridge --create-home \
        --home-dir /var/lib/billbridge --shell /usr/sbin/nologin billbridge

# `pip install .` from the build context, mounted only for this step: the source tree (and
# setuptools' build/ and *.egg-info output) never becomes part of the image.
RUN --mount=type=bind,source=.,target=/src,rw \
    --mount=type=cache,target=/root/.cache/pip \
    cd /src && pip install .

USER billbridge
WORKDIR /var/lib/billbridge
ENV BILLBRIDGE_DATA_DIR=/var/lib/billbridge/data

ENTRYPOINT ["billbridge"]
CMD ["worker"]
