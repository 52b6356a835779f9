#!/usr/bin/env bash
# Routing decision through the Wasm guest vs the same dialplan compiled
# natively (criterion medians, then p50/p99 with 1 and 2 threads).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
./scripts/build-guests.sh
exec cargo bench -p softswitch --bench routing -- "$@"
