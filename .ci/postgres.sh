#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the tests (Debian's postgresql package).
#
#   eval "$(bash .ci/postgres.sh start)"   # installs the package if missing, starts a server,
#                                          # prints `export CIFAR_SEARCH_TEST_POSTGRES=...`
#   bash .ci/postgres.sh restart [SECONDS] # stop, stay down SECONDS (default 2), start again
#   bash .ci/postgres.sh stop              # stop the server and delete its data folder
#
# The data folder lives under a fresh temp dir ($CIFAR_SEARCH_TEST_POSTGRES_DIR); the server
# listens on 127.0.0.1 only, on a free port, with password authentication over TCP. As root the
# server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail

last_file=${TMPDIR:-/tmp}/cifar-search-postgres.last

log() { echo "postgres.sh: $*" >&2; }

bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z $dir ]] && command -v pg_ctl >/dev/null; then
    dir=$(dirname "$(command -v pg_ctl)")
  fi
  echo "$dir"
}

install_if_missing() {
  [[ -n $(bin_dir) ]] && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing the Debian postgresql package"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  [[ -n $(bin_dir) ]] || { log "PostgreSQL is not installed (apt-get install postgresql)"; exit 1; }
}

# Run a PostgreSQL program as the server's user: `postgres` when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

state_dir() {
  local dir=${CIFAR_SEARCH_TEST_POSTGRES_DIR:-}
  if [[ -z $dir && -f $last_file ]]; then
    dir=$(cat "$last_file")
  fi
  [[ -n $dir && -d $dir ]] || { log "no server started by this script (CIFAR_SEARCH_TEST_POSTGRES_DIR unset)"; exit 1; }
  echo "$dir"
}

start() {
  install_if_missing
  local bin dir port password=cifar
  bin=$(bin_dir)
  if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/cifar-search-pg.XXXXXX")
  chmod 755 "$dir"
  [[ $(id -u) == 0 ]] && chown postgres "$dir"
  echo "$password" >"$dir/pwfile"
  [[ $(id -u) == 0 ]] && chown postgres "$dir/pwfile"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(free_port)
  echo "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" >"$dir/options"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" \
    start >&2 || { cat "$dir/server.log" >&2; exit 1; }
  as_owner "$bin/createdb" -h "$dir" -p "$port" -U postgres cifar_search_test
  echo "$dir" >"$last_file"
  log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  echo "export CIFAR_SEARCH_TEST_POSTGRES=postgresql://postgres:$password@127.0.0.1:$port/cifar_search_test"
  echo "export CIFAR_SEARCH_TEST_POSTGRES_DIR=$dir"
}

stop() {
  local dir
  dir=$(state_dir)
  as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
  [[ -f $last_file && $(cat "$last_file") == "$dir" ]] && rm -f "$last_file"
  log "stopped and removed $dir"
}

restart() {
  local dir bin down=${1:-2}
  dir=$(state_dir)
  bin=$(bin_dir)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
  sleep "$down"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" \
    start >&2
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) restart "${2:-2}" ;;
  *) echo "usage: $0 start | stop | restart [SECONDS_DOWN]" >&2; exit 2 ;;
esac
