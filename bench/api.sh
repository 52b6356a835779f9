#!/usr/bin/env bash
# Client API rates with a release build: logins per second (each one an
# argon2id verification of the access password; the parameters are read back
# from the stored hash and printed) and phone sign-up starts per second (each
# one a new number: a sign-up row, a code SMS queued, the SMS worker sending
# it to a local vendor stand-in meanwhile). The load generator is
# host/examples/api_load.rs, on the same machine (it shares the cores).
# Knobs: DURATION (20, seconds per run), LOGIN_CONCURRENCY (8), SIGNUP_CONCURRENCY (16).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
SECONDS_EACH=${DURATION:-20}
LOGIN_C=${LOGIN_CONCURRENCY:-8}
SIGNUP_C=${SIGNUP_CONCURRENCY:-16}

./scripts/setup.sh >/dev/null
./scripts/build-guests.sh >/dev/null
cargo build -q --release -p softswitch --bin softswitch --example api_load
bin=$root/target/release/softswitch
load=$root/target/release/examples/api_load

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/scripts/lib/ports.sh"
api=$(free_port); admin=$(free_port); sink=$(free_port); sip=$(free_sip_port)

# Rate limits off in effect: one load generator address sends everything.
cat >"$tmp/softswitch.toml" <<TOML
[plugins]
cache_dir = "$tmp/cache"
[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
tls = ["127.0.0.1:0"]
wss = []
[api]
listen = ["127.0.0.1:$api"]
address_burst = 100000000
address_refill_secs = 1
identity_burst = 100000000
identity_refill_secs = 1
sms_per_device = 5
[admin]
listen = "127.0.0.1:$admin"
token = "bench"
[guests.routing]
path = "$root/guests/target/wasm32-wasip2/release/routing_default.wasm"
[sms]
provider = "generic"
[sms.providers.generic]
path = "$root/guests/target/wasm32-wasip2/release/sms_generic.wasm"
allowed_hosts = ["127.0.0.1"]
[sms.providers.generic.config]
url = "http://127.0.0.1:$sink/send"
"response.id" = "data.id"
TOML
export SOFTSWITCH_CONFIG=$tmp/softswitch.toml SOFTSWITCH_DATA_DIR=$tmp/data RUST_LOG=warn

"$bin" account add benchuser --password bench-sip-secret --username benchuser --access-password bench-pass-1 >/dev/null
"$load" sink "$sink" &
pids+=($!)
"$bin" run 2>"$tmp/switch.log" &
pids+=($!)
for _ in $(seq 1 300); do
    curl -ksf "https://127.0.0.1:$api/v1/openapi.json" >/dev/null && break
    sleep 0.2
done

params=$(python3 - "$tmp/data/softswitch.db" <<'PY'
import sqlite3, sys
h = sqlite3.connect(sys.argv[1]).execute(
    "SELECT access_password_hash FROM accounts WHERE login = 'benchuser'").fetchone()[0]
algo, version, params = h.split('$')[1:4]
print(f"{algo} {version} {params}")
PY
)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $(nproc) cores ($cpu), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "argon2 parameters (from the stored hash): $params"
cert=$tmp/data/tls/self-signed-cert.pem
echo "logins, $LOGIN_C clients, ${SECONDS_EACH} s:"
"$load" login "https://127.0.0.1:$api" "$cert" "$SECONDS_EACH" "$LOGIN_C" benchuser bench-pass-1
echo "phone sign-up starts, $SIGNUP_C clients, ${SECONDS_EACH} s:"
"$load" signup "https://127.0.0.1:$api" "$cert" "$SECONDS_EACH" "$SIGNUP_C" 4860
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
