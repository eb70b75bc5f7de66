#!/usr/bin/env bash
# Runs readmark-bench against a separate readmarkd, the way BENCHMARKS.md's
# figures are taken: each run gets a fresh server (fresh --data, a port the OS
# picks on 127.0.0.1), whose CPU the load tool reads from its /metrics, and the
# server is stopped after the run.
#
#   scripts/bench.sh [-p] [-r RUNS] [-s "READMARKD FLAGS"] [--] READMARK-BENCH FLAGS
#
#   -p  pin the server to CPU 0 and the load tool to CPU 1 (taskset)
#   -r  run the scenario RUNS times (default 1), one report each
#   -s  extra readmarkd flags, e.g. "--gomaxprocs 1"
#
# READMARKD and READMARK_BENCH may name prebuilt binaries (to compare builds,
# alternate runs of each); by default both are built from this checkout.
# Example: scripts/bench.sh -p -r 3 -- --scenario steady --groups 5 \
#            --members 1000 --rate 20000 --duration 40s
set -euo pipefail
cd "$(dirname "$0")/.."

pin=false runs=1 server_flags=""
while getopts "pr:s:" opt; do
  case $opt in
    p) pin=true ;;
    r) runs=$OPTARG ;;
    s) server_flags=$OPTARG ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

readmarkd=${READMARKD:-}
bench=${READMARK_BENCH:-}
if [ -z "$readmarkd" ]; then readmarkd=$work/readmarkd; go build -o "$readmarkd" ./cmd/readmarkd; fi
if [ -z "$bench" ]; then bench=$work/readmark-bench; go build -o "$bench" ./cmd/readmark-bench; fi

server_cpu=() bench_cpu=()
if $pin; then server_cpu=(taskset -c 0) bench_cpu=(taskset -c 1); fi

for run in $(seq 1 "$runs"); do
  data=$work/data$run
  # shellcheck disable=SC2086 # server_flags is a list of flags
  "${server_cpu[@]}" "$readmarkd" --listen 127.0.0.1:0 --data "$data" $server_flags >"$work/server$run.log" 2>&1 &
  server_pid=$!
  addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/^listening on //p' "$work/server$run.log")
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    echo "bench: readmarkd did not start:" >&2; cat "$work/server$run.log" >&2; exit 1
  fi
  [ "$runs" -gt 1 ] && echo "== run $run of $runs"
  "${bench_cpu[@]}" "$bench" --url "ws://$addr" --secret-file "$data/secret" --server-pid "$server_pid" "$@"
  kill "$server_pid"; wait "$server_pid" || true
  server_pid=""
  rm -rf "$data"
done
