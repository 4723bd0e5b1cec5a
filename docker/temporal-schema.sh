#!/bin/sh
# One-shot (temporalio/admin-tools): bring Temporal's two PostgreSQL databases to the schema of
# the admin-tools version, which docker-compose.yml keeps equal to the server version.
# Safe on every start: setup-schema leaves a database that already has a newer version alone,
# update-schema applies only the versions not yet applied. The databases themselves are created
# by docker/postgres-init.sh. temporal-sql-tool reads the password from SQL_PASSWORD.
set -eu

: "${SQL_HOST:?SQL_HOST is required}"
: "${SQL_USER:?SQL_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
SQL_PORT=${SQL_PORT:-5432}
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12
ATTEMPTS=${SETUP_ATTEMPTS:-60}

attempt=1
until nc -z -w 5 "$SQL_HOST" "$SQL_PORT"; do
  if [ "$attempt" -ge "$ATTEMPTS" ]; then
    echo "temporal-schema: PostgreSQL at $SQL_HOST:$SQL_PORT is not reachable" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 2
done

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" "$@"
}

for db in temporal temporal_visibility; do
  if [ "$db" = temporal ]; then dir=temporal; else dir=visibility; fi
  echo "temporal-schema: $db"
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$SCHEMA_DIR/$dir/versioned"
done
echo "temporal-schema: done"
