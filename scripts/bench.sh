#!/usr/bin/env bash
# Runs readmark-bench against a separate readmarkd, the way BENCHMARKS.md's
# figures are taken: each run gets a fresh server (fresh --data, a port the OS
# picks on 127.0.0.1), whose CPU the load tool reads from its /metrics, and the
# server is stopped after the run.
#
#   scripts/bench.sh [-p] [-c NODES | -e] [-r RUNS] [-s "READMARKD FLAGS"] [--] READMARK-BENCH FLAGS
#
#   -p  pin the server to CPU 0 and the load tool to CPU 1 (taskset)
#   -e  the server is the load tool's bare echo server (--scenario echo-server),
#       not readmarkd: the floor for churn and steady-echo
#   -c  a cluster of NODES nodes on PostgreSQL and NATS (the tests' services:
#       $READMARK_TEST_POSTGRES, $READMARK_TEST_NATS), with a table and cluster
#       name of its own per run, dropped afterwards; the load tool spreads its
#       users over the nodes
#   -r  run the scenario RUNS times (default 1), one report each
#   -s  extra readmarkd flags, e.g. "--gomaxprocs 1"
#
# READMARKD and READMARK_BENCH may name prebuilt binaries (to compare builds,
# alternate runs of each); by default both are built from this checkout.
# Example: scripts/bench.sh -p -r 3 -- --scenario steady --groups 5 \
#            --members 1000 --rate 20000 --duration 40s
set -euo pipefail
cd "$(dirname "$0")/.."

pin=false echo=false nodes=0 runs=1 server_flags=""
while getopts "pec:r:s:" opt; do
  case $opt in
    p) pin=true ;;
    e) echo=true ;;
    c) nodes=$OPTARG ;;
    r) runs=$OPTARG ;;
    s) server_flags=$OPTARG ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
pg=${READMARK_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
nats=${READMARK_TEST_NATS:-nats://127.0.0.1:4222}

work=$(mktemp -d)
pids=() table=""
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    # Bounded: a server still running 60 s after SIGTERM is named and
    # killed, rather than holding the benchmark forever.
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "bench: server $pid still running 60 s after SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  if [ -n "$table" ]; then
    psql -q "$pg" -c "DROP TABLE IF EXISTS $table, ${table}_leases, ${table}_nodes" >/dev/null
    table=""
  fi
}
trap 'stop_servers; rm -rf "$work"' EXIT

readmarkd=${READMARKD:-}
bench=${READMARK_BENCH:-}
if [ -z "$readmarkd" ]; then readmarkd=$work/readmarkd; go build -o "$readmarkd" ./cmd/readmarkd; fi
if [ -z "$bench" ]; then bench=$work/readmark-bench; go build -o "$bench" ./cmd/readmark-bench; fi

server_cpu=() bench_cpu=()
if $pin; then server_cpu=(taskset -c 0) bench_cpu=(taskset -c 1); fi

# start_server LOG COMMAND...: starts a server (readmarkd or the echo server)
# and, once it listens, adds its WebSocket URL to urls.
start_server() {
  local log=$1 addr=""; shift
  # Created before the server starts: a sed of a log not yet there would
  # fail, and end this script (set -e) while the server starts.
  : >"$log"
  "${server_cpu[@]}" "$@" >>"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    addr=$(sed -n -e 's/^listening on //p' -e 's|^echo server on ws://\([^ ]*\) .*|\1|p' "$log")
    if [ -n "$addr" ]; then urls=${urls:+$urls,}ws://$addr; return; fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: the server did not start:" >&2; cat "$log" >&2; return 1
}

for run in $(seq 1 "$runs"); do
  data=$work/data$run
  mkdir -p "$data"
  urls=""
  [ "$runs" -gt 1 ] && echo "== run $run of $runs"
  if $echo; then
    start_server "$work/server$run.log" "$bench" --scenario echo-server --listen 127.0.0.1:0
    "${bench_cpu[@]}" "$bench" --url "$urls" --server-pid "${pids[0]}" "$@"
    stop_servers
    continue
  fi
  if [ "$nodes" -gt 0 ]; then
    table=bench_$$_$run
    for n in $(seq 1 "$nodes"); do
      # The first node creates the shared secret; the others start after it.
      # shellcheck disable=SC2086 # server_flags is a list of flags
      start_server "$work/server$run.$n.log" "$readmarkd" --listen 127.0.0.1:0 $server_flags --data "$data/node$n" --secret-file "$data/secret" \
        --postgres "$pg" --postgres-table "$table" --nats "$nats" --node-id "node$n" --cluster "$table"
    done
  else
    # shellcheck disable=SC2086 # server_flags is a list of flags
    start_server "$work/server$run.log" "$readmarkd" --listen 127.0.0.1:0 $server_flags --data "$data"
  fi
  "${bench_cpu[@]}" "$bench" --url "$urls" --secret-file "$data/secret" --server-pid "${pids[0]}" "$@"
  stop_servers
  rm -rf "$data"
done
