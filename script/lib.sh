# Shared shell helpers for script/server and script/test (sourced, not run).

PYTHON=${PYTHON:-python3}
THROWAWAY_DIR=""

ensure_venv() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Mailweb needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))." >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv || {
      echo "Could not create a virtualenv: install the venv module (apt-get install python3-venv)." >&2
      exit 1
    }
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
}

# pip_install ARGS...: install only when pyproject.toml or constraints.txt changed since last time.
pip_install() {
  local stamp=".venv/.installed-$(echo "$*" | md5sum | cut -c1-8)"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
    return 0
  fi
  .venv/bin/python -m pip install --quiet "$@"
  touch "$stamp"
}

pg_reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
redis_reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

find_pg_bin() {
  local name=$1 candidate
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for candidate in /usr/lib/postgresql/*/bin/"$name"; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

start_throwaway_postgres() {
  local initdb pg_ctl port run_as=()
  initdb=$(find_pg_bin initdb) && pg_ctl=$(find_pg_bin pg_ctl) || {
    echo "PostgreSQL is not reachable on 127.0.0.1:5432 and initdb is missing: apt-get install postgresql" >&2
    exit 1
  }
  THROWAWAY_DIR=${THROWAWAY_DIR:-$(mktemp -d)}
  port=$(free_port)
  mkdir -p "$THROWAWAY_DIR/pg"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$THROWAWAY_DIR" && run_as=(runuser -u postgres --)
  fi
  echo "==> starting a throwaway PostgreSQL on port $port"
  "${run_as[@]}" "$initdb" -D "$THROWAWAY_DIR/pg/data" -U postgres -A trust >/dev/null
  "${run_as[@]}" "$pg_ctl" -D "$THROWAWAY_DIR/pg/data" -l "$THROWAWAY_DIR/pg/log" -w \
    -o "-p $port -k $THROWAWAY_DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  PG_CTL="$pg_ctl"
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/mailweb"
}

start_throwaway_redis() {
  local port
  command -v redis-server >/dev/null 2>&1 || {
    echo "Redis is not reachable on 127.0.0.1:6379 and redis-server is missing: apt-get install redis-server" >&2
    exit 1
  }
  THROWAWAY_DIR=${THROWAWAY_DIR:-$(mktemp -d)}
  port=$(free_port)
  echo "==> starting a throwaway Redis on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$THROWAWAY_DIR/redis.pid" --logfile "$THROWAWAY_DIR/redis.log" --dir "$THROWAWAY_DIR"
  export REDIS_URL="redis://127.0.0.1:$port/0"
}

stop_throwaway_services() {
  [ -n "$THROWAWAY_DIR" ] || return 0
  if [ -f "$THROWAWAY_DIR/redis.pid" ]; then kill "$(cat "$THROWAWAY_DIR/redis.pid")" 2>/dev/null || true; fi
  if [ -d "$THROWAWAY_DIR/pg/data" ]; then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_CTL" -D "$THROWAWAY_DIR/pg/data" -m fast stop >/dev/null || true
    else "$PG_CTL" -D "$THROWAWAY_DIR/pg/data" -m fast stop >/dev/null || true; fi
  fi
  rm -rf "$THROWAWAY_DIR"
}
