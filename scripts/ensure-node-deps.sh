#!/usr/bin/env bash
# Install the Node packages of clients/typescript (the generated TypeScript client, the Node Avro
# consumer and the AsyncAPI parser the tests run) with `npm ci`, when node_modules is missing or was
# installed from another package-lock.json. A stamp holds the lock file's hash: file times change with every git checkout.
set -euo pipefail
cd "$(dirname "$0")/../clients/typescript"

if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  # Not fatal here, so the Python tests still run; the Node tests fail and say the same.
  echo "WARNING: node and npm are needed by tests/e2e/test_typescript_client.py, tests/e2e/test_node_avro.py" \
       "and tests/e2e/test_asyncapi_document.py" \
       "(Node.js >= 20 with npm, e.g. apt-get install nodejs npm); those tests will fail." >&2
  exit 0
fi

STAMP=node_modules/.package-lock.sha256
WANT="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
echo "Installing the Node packages of clients/typescript (npm ci)..."
npm ci --no-audit --no-fund --loglevel=error
echo "$WANT" > "$STAMP"
