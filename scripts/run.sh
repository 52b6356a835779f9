#!/usr/bin/env bash
# Builds the guests, the portal and the switch (release) and runs it on its
# embedded defaults: SQLite under ./data, admin endpoint on 127.0.0.1:8089,
# the portal at https://127.0.0.1:8443/portal/.
# Extra arguments go to `softswitch` before `run`, e.g. --config FILE.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/setup.sh
./scripts/build-guests.sh
./scripts/build-portal.sh
echo "==> cargo build --release -p softswitch"
cargo build --release -p softswitch
echo "==> target/release/softswitch $* run"
exec target/release/softswitch "$@" run
