#!/bin/sh
# Start the bot with the configuration named by PSEUDO_DALLE_CONFIG (default: the image's own).
# Any other command runs as given, e.g. `docker compose run --rm bot pseudo-dalle doctor`.
set -eu
if [ "$#" -eq 0 ]; then
    exec pseudo-dalle bot --config "${PSEUDO_DALLE_CONFIG:-/app/config.toml}"
fi
exec "$@"
