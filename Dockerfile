# One image for both roles: `stylebot bot` (the Telegram bot) and `stylebot server` (the ML API).
# CPU torch by default; for a GPU box build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    STYLEBOT_MODELS_DIR=/data/models STYLEBOT_STORAGE_DIR=/data/storage

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# Every package at the version the lock pins (as `make install` does), except torch itself: the lock
# holds the CPU build, the image takes torch 2.13.0 from TORCH_INDEX (CPU, or CUDA for a GPU box).
RUN grep -v '^torch==' constraints.txt > /tmp/lock-without-torch.txt \
    && pip install --no-cache-dir -c /tmp/lock-without-torch.txt --extra-index-url "$TORCH_INDEX" "torch==2.13.0" \
    && pip install --no-cache-dir -c /tmp/lock-without-torch.txt ".[bot,server,s3,redis]" \
    && rm /tmp/lock-without-torch.txt

RUN useradd --create-home --uid 10001 stylebot && mkdir -p /data && chown stylebot /data
USER stylebot
VOLUME ["/data"]
EXPOSE 8080 8000
CMD ["stylebot", "bot"]
