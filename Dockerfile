# The rooms service, its outbox relay and its migrations: one image, three commands (docs/deploy.md).
#   docker build -t rooms-service .
#   docker run --rm -p 9090:9090 rooms-service            # the service (default command: serve)
#   docker run --rm rooms-service relay                    # the outbox relay to RabbitMQ
#   docker run --rm rooms-service migrate                  # apply the migrations, then exit
# The base is a build argument so that machines without a registry can pass a local one; both stages
# must use the same base, since the virtualenv links to the base's Python.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore DEBIAN_FRONTEND=noninteractive
# binutils, for `strip`: the debug symbols of the wheels' extension modules are about a quarter of the
# virtualenv, and nothing at run time reads them. Only in this stage.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils > /dev/null \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# Only the pinned requirements: this layer is rebuilt when they change, not when the code does.
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-compile -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && find /opt/venv -name '*.so*' -type f -exec strip --strip-unneeded {} + \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv
COPY . /app
# Bytecode compiled now, because the root filesystem is read-only at run time (PYTHONDONTWRITEBYTECODE).
RUN /opt/venv/bin/python -m compileall -q -j 0 /app

FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/rooms-service/rooms-service
LABEL org.opencontainers.image.title="rooms-service" \
      org.opencontainers.image.description="Spec-first room-listings service, its outbox relay and its migrations" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
RUN groupadd --system --gid 10001 rooms \
 && useradd --uid 10001 --gid rooms --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rooms \
 && mkdir /data && chown rooms:rooms /data
# Code and packages stay owned by root: the service can read them, not change them.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY deploy/entrypoint.sh /usr/local/bin/rooms-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 9090
# serve.py shuts down gracefully on SIGTERM within APP_GRACEFUL_SHUTDOWN_SECONDS (20 by default): give it
# longer than that before the kill (docker run --stop-timeout 30, compose stop_grace_period: 30s,
# Kubernetes terminationGracePeriodSeconds: 35; Docker's own default is only 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["rooms-entrypoint"]
CMD ["serve"]
