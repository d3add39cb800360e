# The WellPulse app (actors + Serve). Databases and NATS come from docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 RAY_USAGE_STATS_ENABLED=0
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY actors ./actors
COPY serve ./serve
COPY cli ./cli
COPY sim ./sim
COPY models ./models
COPY schema ./schema
COPY config ./config
COPY store ./store
COPY bench ./bench
RUN pip install -c requirements.lock . && useradd --create-home wellpulse && mkdir -p /data && chown wellpulse /data
USER wellpulse
ENV WELLPULSE_DATA_DIR=/data WELLPULSE_HOST=0.0.0.0 WELLPULSE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s CMD python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/db', timeout=4)"
ENTRYPOINT ["wellpulse"]
CMD ["up"]
