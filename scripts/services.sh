#!/usr/bin/env bash
# Makes PostgreSQL and Redis available on loopback for the demo and the tests,
# Chromium with chromedriver for the console's browser tests, and Node.js with
# the OpenID provider the connect flow is tested against:
# uses them where they already run, starts them where they are installed but
# stopped, installs them with apt-get where they are absent. Then makes sure
# the local development role and databases exist.
#
# The `tokenwarden` role it creates has the password `tokenwarden` and is
# meant for a developer machine only.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { echo "services: $*" >&2; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

apt_install() {
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  command -v psql >/dev/null && command -v pg_isready >/dev/null || apt_install postgresql-client
  if pg_up; then return; fi
  command -v pg_ctlcluster >/dev/null && [ -n "$(ls /etc/postgresql 2>/dev/null)" ] || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && return; sleep 1; done
  log "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1
}

ensure_redis() {
  command -v redis-cli >/dev/null || apt_install redis-tools
  if redis_up; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  redis_up && return
  log "starting Redis"
  local dir=/var/lib/redis
  [ -w "$dir" ] || dir=$(mktemp -d)
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$dir" >/dev/null
  for _ in $(seq 1 30); do redis_up && return; sleep 1; done
  log "Redis did not come up on 127.0.0.1:6379"; exit 1
}

# Runs SQL as a superuser: over loopback where auth allows it, else as the
# postgres system user over the local socket.
as_superuser() {
  if psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt -c "SELECT 1" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
  elif [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
  else
    sudo -u postgres psql -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
  fi
}

ensure_databases() {
  as_superuser >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tokenwarden') THEN
    CREATE ROLE tokenwarden LOGIN PASSWORD 'tokenwarden';
  END IF;
END $$;
SELECT 'CREATE DATABASE tokenwarden OWNER tokenwarden'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tokenwarden')\gexec
SELECT 'CREATE DATABASE tokenwarden_test OWNER tokenwarden'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tokenwarden_test')\gexec
SQL
}

# The console's browser tests drive headless Chromium through chromedriver.
ensure_chromium() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return
  apt_install chromium chromium-driver
  command -v chromedriver >/dev/null || { log "chromedriver is still missing after installing chromium-driver"; exit 1; }
}

# The connectivity tests start servers of their own (PostgreSQL with TLS,
# Redis with TLS, Sentinel and Cluster) and make certificates with openssl.
ensure_test_binaries() {
  command -v openssl >/dev/null || apt_install openssl
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  command -v redis-server >/dev/null || apt_install redis-server
}

# The connect test against a real OpenID provider runs node's oidc-provider
# (tests/oidc), installed exactly as its lock file pins it.
ensure_node() {
  command -v node >/dev/null || apt_install nodejs npm
  command -v npm >/dev/null || apt_install npm
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/oidc"
  # The stamp is the lock file the packages were installed from: unchanged,
  # nothing to do (npm ci would delete and reinstall them every run).
  if cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-from-lock" 2>/dev/null; then
    return
  fi
  log "installing the OpenID provider's packages (npm ci in tests/oidc)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null \
    && cp package-lock.json node_modules/.installed-from-lock)
}

ensure_postgres
ensure_redis
ensure_databases
ensure_chromium
ensure_test_binaries
ensure_node
log "PostgreSQL, Redis, Chromium, Node.js and the test servers' binaries are ready"
