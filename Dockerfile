# pseudo-dalle: the Discord bot and its GPU worker in one image.
# The base image brings CUDA, cuDNN and a CUDA build of torch and torchvision; they are kept as
# they are (pip is constrained to the installed versions), so nothing large is downloaded again.
ARG BASE_IMAGE=pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PSEUDO_DALLE_CACHE=/data/weights

WORKDIR /app
COPY pyproject.toml README.md ./
COPY generator ./generator
COPY bot ./bot
RUN pip freeze | grep -iE '^(torch|torchvision)==' > /tmp/keep-torch.txt \
    && pip install --no-cache-dir --constraint /tmp/keep-torch.txt . \
    && rm /tmp/keep-torch.txt \
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
