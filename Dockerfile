# uppzy-chat-bot: slim, non-root, health-checked. Build: docker build -t uppzy-bot .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/uppzy-bot.db PORT=3000

RUN useradd --system --create-home --home-dir /app --uid 10001 uppzy \
    && mkdir /data && chown uppzy /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY bots ./bots
COPY simulator ./simulator
RUN pip install . && rm -rf /root/.cache

USER uppzy
VOLUME ["/data"]
# The bot runs in the volume: a relative DATABASE_URL (the .env.example's `sqlite:///uppzy-bot.db`, passed with
# `docker run --env-file .env`) lands in /data like the default above, never in the image's writable layer.
WORKDIR /data
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["uppzy-bot"]
CMD ["run"]
