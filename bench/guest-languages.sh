#!/usr/bin/env bash
# Per-call cost of the Python and JavaScript guests next to Rust's, on the
# switch's own call paths (host/benches/guest_languages.rs): routing on a
# warm instance (Rust default router vs the JavaScript least-cost router),
# and an SMS request on a fresh instance (Rust Vonage vs Python
# MessageBird). Criterion medians, then the ratios measured in the same run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
./scripts/build-guests.sh
exec cargo bench -p softswitch --bench guest_languages -- "$@"
