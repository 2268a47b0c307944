#!/bin/sh
# The MLflow tracking server as Lockgate runs it on servers: runs and registry
# on PostgreSQL, artifacts served by the server itself, basic authentication on.
# Every secret comes from the environment; there are no defaults to forget.
# The auth config is written at start because an .ini cannot read the
# environment and the auth database URI holds a password. Checking a password
# hash costs seconds of CPU, so verified credentials are cached for a minute
# (MLFLOW_AUTH_CACHE_TTL_SECONDS); a changed password takes up to that long.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql://user:password@host/db)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (postgresql://user:password@host/db)}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (a folder or object-store URI)}"

config_dir="$(mktemp -d)"
umask 077
cat > "$config_dir/basic_auth.ini" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="$config_dir/basic_auth.ini"
# Host names other than loopback (e.g. "mlflow:*" in compose) go in
# MLFLOW_SERVER_ALLOWED_HOSTS, which the server reads itself.
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"

exec mlflow server \
    --app-name basic-auth \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --serve-artifacts \
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
    --host "${MLFLOW_HOST:-0.0.0.0}" \
    --port "${MLFLOW_PORT:-5000}" \
    --workers "${MLFLOW_WORKERS:-2}" \
    "$@"
