# rebalance-stream: the long-running consumer (`rebalance-stream run`) by default.
#
#   docker build -t rebalance-stream:local .
#   docker run --rm -e REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 rebalance-stream:local
#   docker run --rm rebalance-stream:local --help
#
# docker-compose.yml runs it next to a single-node Kafka. Settings are the REBALANCE_STREAM_*
# variables of SPEC 4. The ledger and the paper broker's state belong on the volume
# /var/lib/rebalance-stream, owned by the unprivileged user 10001. /metrics, /healthz and
# /readyz listen on 0.0.0.0:8080 in the container (REBALANCE_STREAM_HEALTH_HOST and
# REBALANCE_STREAM_HEALTH_PORT):
#
#   docker run --rm -p 8080:8080 -e REBALANCE_STREAM_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 \
#     rebalance-stream:local

# Build stage: install the project and its dependencies into a virtual environment.
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir .

# Runtime stage: the same base, the virtual environment only, no build context.
FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REBALANCE_STREAM_LOG_FORMAT=json \
    REBALANCE_STREAM_LEDGER=/var/lib/rebalance-stream/ledger.sqlite \
    REBALANCE_STREAM_HEALTH_HOST=0.0.0.0
RUN groupadd --system --gid 10001 rebalance \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin rebalance \
    && mkdir -p /app /var/lib/rebalance-stream \
    && chown 10001:10001 /app /var/lib/rebalance-stream
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
VOLUME ["/var/lib/rebalance-stream"]
EXPOSE 8080
ENTRYPOINT ["rebalance-stream"]
CMD ["run"]
