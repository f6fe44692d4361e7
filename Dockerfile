# One rtt node. Local engine: mount a volume on /data to keep rtt.db across restarts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    RTT_HOST=0.0.0.0 RTT_PORT=8080 RTT_DATABASE=/data/rtt.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY rtt ./rtt
RUN pip install . && useradd --system --uid 10001 --home-dir /data rtt \
    && mkdir -p /data && chown rtt /data

USER rtt
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)" || exit 1
CMD ["rtt", "serve"]
