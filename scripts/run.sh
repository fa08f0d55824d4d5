#!/usr/bin/env bash
# From a fresh clone to a running service on the demo model (the README's first command).
# Installs into .venv, creates .env with a newly generated API key if there is none, prints
# how to call the service, then runs it in the foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory install

if [ ! -f .env ]; then
  key=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')
  umask 077
  printf '# Created by scripts/run.sh; see .env.example for every setting.\nVERACITY_API_KEYS=%s\n' "$key" > .env
  echo "Created .env with a new API key (VERACITY_API_KEYS)."
fi

key=$(sed -n 's/^VERACITY_API_KEYS=\([^,]*\).*/\1/p' .env | tail -n 1)
port=$(sed -n 's/^VERACITY_PORT=//p' .env | tail -n 1)
port=${port:-${VERACITY_PORT:-8001}}
cat <<MSG

veracity is starting on http://127.0.0.1:${port}  (Swagger UI: http://127.0.0.1:${port}/docs)
Classify an image:
  curl -H 'X-API-Key: ${key:-<a key from .env>}' -F file=@path/to/image.jpg http://127.0.0.1:${port}/infer

MSG
exec .venv/bin/veracity serve
