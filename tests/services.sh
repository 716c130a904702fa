#!/usr/bin/env bash
# Start the services the tests use (PostgreSQL, Redis) if installed but stopped; fail clearly if absent.
# Also installs the Debian tools the tests call (docker-compose, to validate docker/compose.yml).
set -uo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 1 50); do listening "$1" && return 0; sleep 0.2; done; return 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! listening 5432; then
  if ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  fi
  wait_for 5432 || { echo "PostgreSQL is not installed or will not start on 127.0.0.1:5432 (apt-get install postgresql)" >&2; exit 1; }
fi

if ! listening 6379; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  fi
  wait_for 6379 || { echo "Redis is not installed or will not start on 127.0.0.1:6379 (apt-get install redis-server)" >&2; exit 1; }
fi

if ! command -v docker-compose >/dev/null; then
  echo "installing docker-compose (Debian) to validate docker/compose.yml"
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null \
    || echo "warning: could not install docker-compose; the compose validation test will fail" >&2
fi
exit 0
