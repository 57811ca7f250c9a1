#!/usr/bin/env bash
# Makes the base images that Dockerfile and docker-compose.yml name available to the local Docker
# daemon: already there, else pulled, else built here as stand-ins from Debian 12's packages.
#
# CI machines cannot reach Docker Hub, only Debian's mirrors and PyPI, so tests/compose runs the
# stack on stand-ins there: Debian's Python 3.11, PostgreSQL 15 and Redis 7, set up the way the
# official images are (see each *.Dockerfile). Self-hosters pull the real images.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debian=mailweb-stand-in/debian:bookworm

python_image=$(awk '$1 == "FROM" { print $2; exit }' "$root/Dockerfile")
postgres_image=$(awk '$1 == "image:" && $2 ~ /^postgres:/ { print $2; exit }' "$root/docker-compose.yml")
redis_image=$(awk '$1 == "image:" && $2 ~ /^redis:/ { print $2; exit }' "$root/docker-compose.yml")

available() {
  docker image inspect "$1" >/dev/null 2>&1 || timeout 120 docker pull -q "$1" >/dev/null 2>&1
}

ensure_debian() {
  docker image inspect "$debian" >/dev/null 2>&1 && return
  echo "==> debootstrap Debian 12 (minbase) for the stand-in images"
  local rootfs
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  rm -f "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import - "$debian" >/dev/null
  rm -rf "$rootfs"
}

build_stand_in() {  # IMAGE NAME: NAME.Dockerfile, built with this directory as its context
  local context log
  context=$(mktemp -d)
  log=$(mktemp)
  cp "$here"/* "$context"/
  mkdir "$context/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$context/extra-ca/" 2>/dev/null || true
  echo "==> building a stand-in for $1"
  # The build's output (and the docker client's notice about its builder) only on failure.
  if ! docker build -q -t "$1" -f "$context/$2.Dockerfile" "$context" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -rf "$context" "$log"
}

for pair in "$python_image python" "$postgres_image postgres" "$redis_image redis"; do
  set -- $pair
  if ! available "$1"; then
    ensure_debian
    build_stand_in "$1" "$2"
  fi
done
