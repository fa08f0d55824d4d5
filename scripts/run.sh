#!/usr/bin/env bash
# From a fresh clone to a running service on the demo model (the README's first command).
# Installs into .venv, completes .env (a new API key and a receipt signing key where it sets
# none: `veracity init-env`), prints how to call the service, then runs it in the
# foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory install

.venv/bin/veracity init-env

key=$(sed -n 's/^VERACITY_API_KEYS=\([^,]*\).*/\1/p' .env | tail -n 1)
port=$(sed -n 's/^VERACITY_PORT=//p' .env | tail -n 1)
port=${port:-${VERACITY_PORT:-8001}}
cat <<MSG

veracity is starting on http://127.0.0.1:${port}  (Swagger UI: http://127.0.0.1:${port}/docs)
Classify an image:
  curl -H 'X-API-Key: ${key:-<a key from .env>}' -F file=@path/to/image.jpg http://127.0.0.1:${port}/infer
Each answer carries a signed receipt; check one offline with `veracity verify-receipt`
against the keys at http://127.0.0.1:${port}/.well-known/jwks.json.

MSG
exec .venv/bin/veracity serve
