# pseudo-dalle: the Discord bot and its GPU worker in one image.
# torch and torchvision are the versions constraints.txt pins, the ones CI and the quick start
# test. PyPI's torch 2.14.1 wheel carries its CUDA 13.0 libraries (cuDNN included), so the base
# image needs no CUDA of its own; the host needs an NVIDIA driver 580 or newer and the NVIDIA
# Container Toolkit. Python 3.11, as in CI.
FROM python:3.11-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PSEUDO_DALLE_CACHE=/data/weights

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY generator ./generator
COPY bot ./bot
COPY pseudo_dalle ./pseudo_dalle
RUN pip install --no-cache-dir --constraint constraints.txt . \
    && pseudo-dalle bot --help > /dev/null

COPY docker/config.toml /app/config.toml
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/pseudo-dalle-entrypoint

RUN useradd --create-home --uid 1000 pseudo \
    && mkdir -p /data \
    && chown pseudo:pseudo /data
USER 1000:1000
VOLUME ["/data"]

# Unhealthy when the heartbeat goes stale, the gateway connection is lost or the worker is down.
# The long start period covers the first start, which downloads about 750 MB of weights.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30m --retries=3 \
    CMD ["pseudo-dalle", "healthcheck", "--file", "/data/heartbeat.json"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["pseudo-dalle-entrypoint"]
