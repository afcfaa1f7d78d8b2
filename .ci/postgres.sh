#!/usr/bin/env bash
# Start a throw-away PostgreSQL on loopback for the multi-tenant test (Dagster instance storage).
# Installs Debian's postgresql if it is missing. Prints `export ...` lines for the caller to eval.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PORT=${CRM_WAVE_PG_PORT:-54329}
DIR=$(mktemp -d /tmp/crm-wave-pg.XXXXXX)
chown postgres "$DIR"
su postgres -s /bin/sh -c "$BIN/initdb -D $DIR/data -A trust -U postgres" >/dev/null
su postgres -s /bin/sh -c "$BIN/pg_ctl -D $DIR/data -o '-c listen_addresses=127.0.0.1 -p $PORT -k $DIR' -l $DIR/log -w start" >/dev/null
su postgres -s /bin/sh -c "$BIN/createdb -h 127.0.0.1 -p $PORT -U postgres dagster"
echo "export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=$PORT DAGSTER_PG_USERNAME=postgres DAGSTER_PG_PASSWORD=postgres DAGSTER_PG_DB=dagster CRM_WAVE_PG_DIR=$DIR"
