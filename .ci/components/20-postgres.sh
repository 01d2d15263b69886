# PostgreSQL 15 for the store contract suite and the cluster tests.
# Sourced by .ci/run (bash, set -euo pipefail, root, after apt-get update): it must not `exit`, and it
# exports DATABASE_URL for everything after it. Idempotent: a second run finds the cluster up, the role
# and the database present, and only re-exports the URL.

pg_version=15
pg_cluster=main
pg_port=5432

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -x "/usr/lib/postgresql/${pg_version}/bin/postgres" ]; then
  echo "postgres: installing postgresql-${pg_version}"
  apt-get install -y -qq "postgresql-${pg_version}" >/dev/null
fi

# The Debian package creates the cluster on install; a stripped image may have removed it.
if ! pg_lsclusters -h | awk -v v="$pg_version" -v c="$pg_cluster" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
  echo "postgres: creating cluster ${pg_version}/${pg_cluster}"
  pg_createcluster "$pg_version" "$pg_cluster" --port "$pg_port" >/dev/null
fi

# `pg_ctlcluster start` on a running cluster fails, so ask first. No systemd in CI containers.
if ! pg_lsclusters -h | awk -v v="$pg_version" -v c="$pg_cluster" '$1 == v && $2 == c && $4 == "online" { up = 1 } END { exit !up }'; then
  echo "postgres: starting cluster ${pg_version}/${pg_cluster}"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_cluster" start
fi

# Bounded wait: a cluster that is not ready in 30 s is broken, and CI should say so rather than hang.
pg_ready=0
for _ in $(seq 1 60); do
  if pg_isready -q -h 127.0.0.1 -p "$pg_port"; then pg_ready=1; break; fi
  sleep 0.5
done
if [ "$pg_ready" != 1 ]; then
  echo "postgres: not ready on 127.0.0.1:${pg_port} after 30 s; log follows" >&2
  tail -n 50 "/var/log/postgresql/postgresql-${pg_version}-${pg_cluster}.log" >&2 || true
  false
fi
unset pg_ready

# Headroom for connections: a `wsup serve --cluster` replica holds ~22 (two pools, its lease keeper and
# listeners), and the kill tests run several replicas (and their replacements) beside a bench on a shared
# machine; the default 100 runs out. Raised once (a restart), then left alone.
if [ "$(su postgres -c "psql -X -q -t -A -p $pg_port -c 'SHOW max_connections'")" -lt 300 ]; then
  echo "postgres: raising max_connections to 300"
  su postgres -c "psql -X -q -p $pg_port -c 'ALTER SYSTEM SET max_connections = 300'"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_cluster" restart
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.5; done
fi

# Role and database, created only when missing. The password is a CI-only constant, not a secret.
pg_psql() { su postgres -c "psql -v ON_ERROR_STOP=1 -X -q -t -A -p $pg_port $*"; }
if [ "$(pg_psql "-c \"SELECT 1 FROM pg_roles WHERE rolname = 'wsup'\"")" != 1 ]; then
  pg_psql "-c \"CREATE ROLE wsup LOGIN PASSWORD 'wsup'\""
fi
if [ "$(pg_psql "-c \"SELECT 1 FROM pg_database WHERE datname = 'wsup'\"")" != 1 ]; then
  pg_psql "-c \"CREATE DATABASE wsup OWNER wsup\""
fi
# Tests create a schema per run for isolation, so the role needs CREATE on its own database.
pg_psql "-c \"GRANT ALL ON DATABASE wsup TO wsup\""
unset -f pg_psql

export DATABASE_URL="postgres://wsup:wsup@127.0.0.1:${pg_port}/wsup"
echo "postgres: ready, DATABASE_URL=${DATABASE_URL}"
unset pg_version pg_cluster pg_port
