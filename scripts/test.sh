#!/usr/bin/env bash
# Runs every test: guest unit tests, host unit and black-box tests on SQLite,
# a schemathesis run against the client API, the storage and routing tests
# again on a real MariaDB server that it installs and starts, a database
# failover on a Galera cluster (scripts/galera.sh), then a short run of every
# fuzz target. Also the format and lint gates.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "the repository stands alone (nothing refers to a folder beside the clone)"
# The conformance data and the benchmark kit live in tests/data and
# bench/anchors; a user's clone has nothing beside it.
if grep -rnI --exclude-dir=target --exclude-dir=.git --exclude-dir=node_modules --exclude-dir=dist -e '\.\./shared' . ; then
    echo "the lines above refer to a folder beside the clone: copy what they need into the repository" >&2
    exit 1
fi

./scripts/setup.sh
./scripts/build-guests.sh
# The portal the browser tests (tests/portal.rs) load.
./scripts/build-portal.sh

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path guests/Cargo.toml --all -- --check

step "cargo clippy (host and guests)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path guests/Cargo.toml --all-targets -- -D warnings

step "guest unit tests (native)"
cargo test --manifest-path guests/Cargo.toml

step "host tests on SQLite"
cargo test --workspace

step "client API property-based run (schemathesis against /v1/openapi.json)"
./scripts/api-fuzz.sh

step "storage and routing tests on MariaDB"
./scripts/mariadb-test-db.sh
export SOFTSWITCH_TEST_MYSQL_URL=mysql://softswitch:softswitch@127.0.0.1:3306/softswitch_test
cargo test -p softswitch --lib store
cargo test -p softswitch --test routing_store
# Switch nodes sharing the MariaDB database (cluster mode), and the
# database cut off for a while (ignored in the SQLite pass above). One test
# at a time: every node on a database is one cluster, so two tests' nodes
# side by side would see each other as peers.
cargo test -p softswitch --test cluster -- --include-ignored --test-threads=1
# A switch node on a 3-node Galera cluster behind HAProxy, the database
# node it uses killed mid-traffic (scripts/galera.sh makes the cluster on
# ports 24300-24318 and removes it; about a minute).
cargo test -p softswitch --test galera -- --include-ignored

step "fuzzing: every cargo-fuzz target for 30 s, two at a time (scripts/fuzz.sh)"
# Bounded: 2 minutes of runs (8 targets, 30 s each, two at a time) plus the
# targets' own build in fuzz/target (instrumented, so nothing is shared with
# the build above): about 3.5 minutes when only our crates changed, 20-25
# from cold on 2 cores (wasmtime and cranelift instrumented too).
if [[ ${SOFTSWITCH_CI_FREE_DISK:-0} == 1 ]]; then
    # CI machines have little disk: the instrumented fuzz build (about
    # 4 GB) does not need the test build (about 3 GB) beside it.
    rm -rf target/debug
fi
./scripts/fuzz.sh 30
