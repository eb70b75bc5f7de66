#!/usr/bin/env bash
# Rebuilds the pages readmarkd embeds (web/dist: the admin console and the
# demo chat) with the locked toolchain: first the TypeScript SDK the pages
# import (sdk/js), then the pages. The build is reproducible, so CI rebuilds
# and fails if the committed web/dist differs (scripts/test-web.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

(cd sdk/js && npm ci --no-audit --no-fund && npm run build)
(cd web && npm ci --no-audit --no-fund && npm run build)
