#!/usr/bin/env bash
# The TypeScript SDK's checks (called by scripts/test.sh): install the locked
# dependencies, check that the generated protobuf code is current, build, and
# run the tests against a real readmarkd built from cmd/readmarkd.
set -euo pipefail
cd "$(dirname "$0")/../sdk/js"

npm ci --no-audit --no-fund
npm run generate
if [ -n "$(git status --porcelain -- src/gen)" ]; then
  echo "sdk/js/src/gen is stale: run npm run generate in sdk/js and commit"; exit 1
fi
npm run build
# The package resolves by its name to the build (package.json "exports").
node --input-type=module -e "const m = await import('@readmark/sdk'); if (typeof m.Client?.dial !== 'function') process.exit(1)"
npm test
