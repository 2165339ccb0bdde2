#!/usr/bin/env bash
# Palisade load harness: direct -> floor proxy -> Palisade (empty pack) -> Palisade (default
# pack), interleaved in rounds at 1, 16 and 64 connections, plus streaming TTFT and an
# optional soak. Loopback only; every run is bounded in time.
#
#   benches/load/run.sh                      # the standard run (~3-4 minutes)
#   benches/load/run.sh --soak 300           # plus a 5-minute soak against the default pack
#   benches/load/run.sh --duration 10 --rounds 3 --connections 1,16,64,128
#   benches/load/run.sh --help               # every flag
#
# Results: benches/load/results/run-<unix time>/{results.json,summary.md,*.log}, and
# benches/load/results/latest.{json,md}. The results folder is git-ignored.
#
# Load generator: wrk (Debian package). It is a small C program, so on a 2-core machine it
# takes less CPU from the servers under test than oha would, it reports latency
# percentiles from a Lua `done` hook (which the runner reads as JSON), and it installs from
# Debian's packages in seconds instead of compiling a crate.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk not found: installing it (apt-get install -y wrk)" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        sudo apt-get install -y wrk
    fi
fi

cargo build --release -p palisade-load -p palisade-gateway-bin
exec target/release/palisade-load run "$@"
