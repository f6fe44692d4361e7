# syntax=docker/dockerfile:1
# One rtt node, slim and non-root. Local engine: mount a volume on /data to keep rtt.db;
# redis engine: set RTT_ENGINE=redis and RTT_REDIS_URL (compose.yaml runs two such nodes).

# build: a wheel of rtt and of every dependency, so the final image needs no build tools
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rtt ./rtt
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# run: the wheels installed from the build stage (bind-mounted: they never enter a layer)
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RTT_HOST=0.0.0.0 RTT_PORT=8080 RTT_DATABASE=/data/rtt.db
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels rtt \
    && useradd --system --uid 10001 --home-dir /data rtt \
    && mkdir -p /data /config && chown rtt /data /config

USER rtt
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# liveness: /healthz answers while the process serves (slim has no curl: python asks it)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RTT_PORT', '8080'), timeout=2)"]
CMD ["rtt", "serve"]
