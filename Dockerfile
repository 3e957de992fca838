# One image for both roles: `stylebot bot` (the Telegram bot) and `stylebot server` (the ML API).
# CPU torch by default; for a GPU box build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    STYLEBOT_MODELS_DIR=/data/models STYLEBOT_STORAGE_DIR=/data/storage

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" "torch==2.13.0" \
    && pip install --no-cache-dir ".[bot,server,s3,redis]"

RUN useradd --create-home --uid 10001 stylebot && mkdir -p /data && chown stylebot /data
USER stylebot
VOLUME ["/data"]
EXPOSE 8080 8000
CMD ["stylebot", "bot"]
