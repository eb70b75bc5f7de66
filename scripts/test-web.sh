#!/usr/bin/env bash
# The web pages' checks (called by scripts/test.sh): the committed build
# (web/dist) must equal a fresh one, then the browser tests drive the demo
# chat and the admin console in headless Chromium against a real readmarkd.
# Screenshots land in web/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "test-web: $chromium not found (apt-get install -y chromium, or set CHROMIUM)"; exit 1
fi
./scripts/build-web.sh
if [ -n "$(git status --porcelain -- web/dist)" ]; then
  git status --short -- web/dist
  echo "web/dist differs from a fresh build: run scripts/build-web.sh and commit web/dist"; exit 1
fi
(cd web && CHROMIUM="$chromium" npm test)
