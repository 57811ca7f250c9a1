#!/bin/sh
# `redis-server ARGS` runs with the official image's defaults; anything else runs as given.
if [ "$1" = redis-server ]; then
  shift
  exec redis-server --protected-mode no --dir /data "$@"
fi
exec "$@"
