#!/usr/bin/env bash
# Copied from /work/shared/realcrm/start.sh (real-crm.md section 8); only the Python 3.12 lookup differs.
# Run BottleCRM (PyPI: django-crm 1.35.0) locally as a "custom CRM" for sync tests.
#
#   bash start.sh [WEB_PORT] [PG_PORT] [ROOT]      defaults: 8761 8762 ./.realcrm
#
# Needs: Python >= 3.12 (pyenv 3.12.1 here; the package refuses 3.11), the
# PostgreSQL 15 server binaries (Debian postgresql-15; `apt-get install -y
# postgresql` if /usr/lib/postgresql/*/bin/initdb is missing), run as root
# (initdb/postgres run as the `postgres` user). No Redis, no Celery worker:
# Celery tasks run inline (CELERY_TASK_ALWAYS_EAGER). Idempotent: a second run
# reuses the venv, the cluster, the migrated database, the user and the token.
#
# Prints BASE_URL and TOKEN (a personal access token, "Authorization: Bearer
# bcrm_pat_..."), and writes them to $ROOT/crm.env. Stop with: bash stop.sh [ROOT]
set -euo pipefail

WEB_PORT=${1:-8761}
PG_PORT=${2:-8762}
ROOT=${3:-$PWD/.realcrm}
PY=${PYTHON312:-$(ls -d "$(pyenv root 2>/dev/null || echo /root/.pyenv)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -1)}
[ -x "$PY" ] || PY=$(command -v python3.12)
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
ADMIN_EMAIL=${CRM_ADMIN_EMAIL:-admin@example.com}
ORG_NAME=${CRM_ORG_NAME:-Acme Test Org}
DEBUG_FLAG=${CRM_DEBUG:-False}   # False: JSON APIs as in production, plain 404/500 pages

mkdir -p "$ROOT"/{app,run,pgsock}
chmod 755 "$ROOT"
cd "$ROOT"
t0=$(date +%s)
log() { echo "[start.sh +$(( $(date +%s) - t0 ))s] $*" >&2; }

# 1. Python env -------------------------------------------------------------
if [ ! -x venv/bin/django-admin ]; then
  log "creating venv + pip install django-crm==1.35.0 (about 1 min)"
  "$PY" -m venv venv
  venv/bin/pip install -q 'django-crm==1.35.0' 2>&1 | { grep -v '^WARNING: Location' || true; }
  [ -x venv/bin/django-admin ] || { echo 'pip install failed' >&2; exit 1; }
fi

# 2. Settings module: upstream settings, minus Redis/Celery broker ------------
cat > app/realcrm_settings.py <<'EOF'
from crm.settings import *  # noqa: F401,F403
CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = True      # tasks (history rows, emails, webhooks) run inline
CELERY_TASK_EAGER_PROPAGATES = False
EOF

SECRET=$( [ -f secret_key ] && cat secret_key || (python3 -c 'import secrets;print(secrets.token_urlsafe(48))' | tee secret_key) )
cat > env.sh <<EOF
export PYTHONPATH=$ROOT/app
export DJANGO_SETTINGS_MODULE=realcrm_settings
export SECRET_KEY=$SECRET
export ENV_TYPE=dev
export DEBUG=$DEBUG_FLAG
export ALLOWED_HOSTS=localhost,127.0.0.1
export DBNAME=bottlecrm DBUSER=crm DBPASSWORD=crm DBHOST=127.0.0.1 DBPORT=$PG_PORT
export DOMAIN_NAME=http://127.0.0.1:$WEB_PORT
EOF
. ./env.sh

# 3. PostgreSQL: private cluster on 127.0.0.1:$PG_PORT ------------------------
if [ ! -f pgdata/PG_VERSION ]; then
  log "initdb"
  mkdir -p pgdata && chown postgres:postgres pgdata pgsock
  su postgres -s /bin/bash -c "$PGBIN/initdb -D $ROOT/pgdata -U pgadmin --auth=trust -E UTF8 --locale=C.UTF-8" >/dev/null
fi
if ! su postgres -s /bin/bash -c "$PGBIN/pg_ctl -D $ROOT/pgdata status" >/dev/null 2>&1; then
  log "starting postgres on $PG_PORT"
  # fsync off: a throwaway test database; roughly halves the migrate time.
  su postgres -s /bin/bash -c "$PGBIN/pg_ctl -D $ROOT/pgdata -l $ROOT/pgsock/pg.log -w start \
     -o '-p $PG_PORT -k $ROOT/pgsock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off'" >/dev/null
fi
PSQL="psql -h 127.0.0.1 -p $PG_PORT -U pgadmin -d postgres -Atq"
# The app role must NOT be a superuser: BottleCRM's tenant isolation is
# PostgreSQL row-level security, which superusers bypass.
$PSQL -c "SELECT 1 FROM pg_roles WHERE rolname='crm'" | grep -q 1 || \
  $PSQL -c "CREATE ROLE crm LOGIN PASSWORD 'crm' NOSUPERUSER NOBYPASSRLS"
$PSQL -c "SELECT 1 FROM pg_database WHERE datname='bottlecrm'" | grep -q 1 || \
  $PSQL -c "CREATE DATABASE bottlecrm OWNER crm"

# 4. Migrations (about 250; 4-6 min on 2 cores the first time, ~10 s after) --
cd run
log "migrate"
../venv/bin/django-admin migrate --noinput >../migrate.log 2>&1 || { tail -30 ../migrate.log; exit 1; }

# 5. Web server --------------------------------------------------------------
if [ -f ../server.pid ] && kill -0 "$(cat ../server.pid)" 2>/dev/null; then
  log "server already running (pid $(cat ../server.pid))"
else
  log "starting server on 127.0.0.1:$WEB_PORT"
  ( exec ../venv/bin/gunicorn crm.wsgi:application -b 127.0.0.1:$WEB_PORT -w 2 --threads 4 \
      --access-logfile ../access.log ) >../server.out 2>&1 &
  echo $! > ../server.pid
  for i in $(seq 60); do curl -fs -o /dev/null http://127.0.0.1:$WEB_PORT/healthz/ && break; sleep 1; done
fi
BASE=http://127.0.0.1:$WEB_PORT

# 6. User + org + personal access token (once) --------------------------------
if [ ! -s ../crm.env ]; then
  log "creating user $ADMIN_EMAIL, org '$ORG_NAME', token"
  # devlogin mints a JWT and refuses unless DEBUG is true; only this command
  # runs with DEBUG=True, the server keeps $DEBUG_FLAG.
  jwt() { DEBUG=True ../venv/bin/django-admin devlogin "$ADMIN_EMAIL" "$@" 2>/dev/null | awk '/access_token:/{print $2}'; }
  JWT=$(jwt --create)
  ORG_ID=$(curl -fs -X POST $BASE/api/org/ -H "Authorization: Bearer $JWT" -H 'Content-Type: application/json' \
           -d "{\"name\":\"$ORG_NAME\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["org"]["id"])')
  JWT=$(jwt --org "$ORG_ID")                      # JWT now carries the org claim
  TOKEN=$(curl -fs -X POST $BASE/api/profile/tokens/ -H "Authorization: Bearer $JWT" -H 'Content-Type: application/json' \
           -d '{"name":"wave-sync"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
  printf 'CRM_BASE_URL=%s\nCRM_TOKEN=%s\nCRM_ORG_ID=%s\nCRM_JWT=%s\n' "$BASE" "$TOKEN" "$ORG_ID" "$JWT" > ../crm.env
fi
. ../crm.env
log "ready"
echo "BASE_URL=$CRM_BASE_URL"
echo "TOKEN=$CRM_TOKEN"
echo "ORG_ID=$CRM_ORG_ID"
echo "# try: curl -H \"Authorization: Bearer \$TOKEN\" $CRM_BASE_URL/api/invoices/products/"
