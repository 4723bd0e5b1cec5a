#!/bin/sh
# PostgreSQL first-start script (mounted into /docker-entrypoint-initdb.d by docker-compose.yml).
# Runs once, when the data volume is empty. The image has already created the `temporal` role
# (POSTGRES_USER, a superuser) and its database `temporal`; this adds Temporal's visibility
# database and billbridge's own role and database. Temporal's schemas are applied afterwards by
# the `temporal-schema` service (docker/temporal-schema.sh), on every start.
#
# No `set -eu` here: the entrypoint sources this file when it is not executable. psql's
# ON_ERROR_STOP makes a failure stop the initialisation.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=billbridge_password="$BILLBRIDGE_DB_PASSWORD" <<'SQL'
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE ROLE billbridge LOGIN PASSWORD :'billbridge_password';
CREATE DATABASE billbridge OWNER billbridge;
SQL
