#!/bin/sh
# PostgreSQL's first start (docker-entrypoint-initdb.d: runs once, on an empty volume): the two
# roles of Liaison and its database. The superuser (postgres) is used only here.
#
#   liaison_owner  owns the database and its tables; runs `init`, `migrate` and
#                  `liaison-server audit pg-roles --apply` (compose's one-shot services)
#   liaison_app    what the server replicas connect as: after pg-roles it may read and write
#                  the working tables and only append to the audit log (docs/operations.md)
#
# Role and database names, and both passwords, come from the environment (compose.yaml).
set -eu
: "${LIAISON_OWNER_PASSWORD:?set LIAISON_OWNER_PASSWORD}"
: "${LIAISON_APP_PASSWORD:?set LIAISON_APP_PASSWORD}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set=owner="${LIAISON_OWNER_ROLE:-liaison_owner}" --set=owner_password="$LIAISON_OWNER_PASSWORD" \
  --set=app="${LIAISON_APP_ROLE:-liaison_app}" --set=app_password="$LIAISON_APP_PASSWORD" \
  --set=db="${LIAISON_DATABASE:-liaison}" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN PASSWORD :'app_password';
CREATE DATABASE :"db" OWNER :"owner";
-- Only Liaison's roles connect to its database.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app";
SQL
