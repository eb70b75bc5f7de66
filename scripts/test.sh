#!/usr/bin/env bash
# The project's test command (README "Test"): static checks, then every test
# with the race detector. Cluster-backend tests (PostgreSQL, NATS) skip when
# those services are unreachable unless READMARK_REQUIRE_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
# The error table's generated code and docs must match api/readmarkv1/errors.json.
go run ./internal/tools/gencodes .
if ! git diff --quiet -- api/readmarkv1/codes.go im/codes.go sdk/js/src/codes.ts docs/errors.md 2>/dev/null; then
  echo "generated error code files are stale: run go generate ./api/... and commit"; exit 1
fi
go vet ./... ./_examples/receipts  # "..." patterns skip _examples
go test -race -count=1 -timeout 20m ./...
# The benchmark driver (BENCHMARKS.md) still runs a scenario end to end, on
# one node, against its echo server and, where the services are required, on
# a two-node cluster.
./scripts/bench.sh -- --scenario fanin --members 50 --messages 2 --quiet >/dev/null
./scripts/bench.sh -e -- --scenario steady-echo --groups 2 --members 20 --rate 200 --duration 1s --read-spread 100ms --quiet >/dev/null
if [ "${READMARK_REQUIRE_SERVICES:-}" = 1 ]; then
  ./scripts/bench.sh -c 2 -- --scenario fanin --members 50 --messages 2 --quiet >/dev/null
fi
./scripts/test-js.sh
./scripts/test-web.sh
