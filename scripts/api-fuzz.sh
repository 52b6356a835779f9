#!/usr/bin/env bash
# Property-based run of schemathesis (PyPI) against the client API's own
# OpenAPI document (/v1/openapi.json), then against the admin API's
# (/openapi.json on the admin listener): every operation gets generated valid
# and invalid requests, and the run fails on any 5xx answer or on a switch
# that stops or panics. Everything lives in a temp dir: a venv, the switch's config
# and data, an SMTP sink. Bounded: API_FUZZ_EXAMPLES examples per operation
# and phase (default 50, about two minutes), and API_FUZZ_TIMEOUT seconds in all (default 600).
#
#   scripts/api-fuzz.sh            # after scripts/setup.sh and build-guests.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
examples=${API_FUZZ_EXAMPLES:-50}
limit=${API_FUZZ_TIMEOUT:-600}

say() { printf '[api-fuzz] %s\n' "$*"; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

for wasm in routing_default sms_generic; do
    [ -f "guests/target/wasm32-wasip2/release/$wasm.wasm" ] || {
        say "guests/target/wasm32-wasip2/release/$wasm.wasm missing: run scripts/build-guests.sh" >&2
        exit 1
    }
done

say "building the switch (debug)"
# Built as the API tests build it (features unified with the dev-dependencies),
# so after `cargo test` (scripts/test.sh runs it first) this is a no-op
# instead of a second build of the dependency tree.
cargo test -q -p softswitch --test api --no-run
bin=$root/target/debug/softswitch

say "installing schemathesis into a venv under $tmp"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'

. "$root/scripts/lib/ports.sh"
api=$(free_port); admin=$(free_port); smtp=$(free_port); sip=$(free_sip_port)

python3 -m aiosmtpd -n -l "127.0.0.1:$smtp" >/dev/null 2>&1 &
pids+=($!)

# Rate limits raised: the run sends thousands of requests from one address,
# and 429s would hide the handlers behind them. The SMS provider points at a
# closed port: code SMS queue and fail in the background, never in a request.
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
address_burst = 1000000
address_refill_secs = 1
identity_burst = 1000000
identity_refill_secs = 1

[admin]
listen = "127.0.0.1:$admin"
token = "fuzz-admin-token"

[guests.routing]
path = "$root/guests/target/wasm32-wasip2/release/routing_default.wasm"

[email]
smtp_host = "127.0.0.1"
smtp_port = $smtp
smtp_tls = "none"

[sms]
provider = "generic"

[sms.providers.generic]
path = "$root/guests/target/wasm32-wasip2/release/sms_generic.wasm"
allowed_hosts = ["127.0.0.1"]

[sms.providers.generic.config]
url = "http://127.0.0.1:9/send"
TOML
export SOFTSWITCH_CONFIG=$tmp/softswitch.toml SOFTSWITCH_DATA_DIR=$tmp/data

# An account whose bearer token the run sends, so the signed-in operations
# (profile, avatar, search) are exercised past the token check.
"$bin" account add fuzzer --password fuzzer-sip-secret --username fuzzer --access-password fuzzer-pass-1 >/dev/null
"$bin" run 2>"$tmp/switch.log" &
switch=$!
pids+=("$switch")
for _ in $(seq 1 300); do
    curl -ksf "https://127.0.0.1:$api/v1/openapi.json" >/dev/null && break
    kill -0 "$switch" 2>/dev/null || { cat "$tmp/switch.log" >&2; exit 1; }
    sleep 0.2
done
token=$(curl -ksf "https://127.0.0.1:$api/v1/login" -H 'content-type: application/json' \
    -d '{"id":"fuzzer","password":"fuzzer-pass-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

say "schemathesis: $examples examples per operation, at most $limit s per API"
status=0
# Run from the temp dir: schemathesis keeps its example database and
# reports in ./.schemathesis, which must not land in the work tree.
fuzz() {
    (cd "$tmp" && timeout "$limit" "$tmp/venv/bin/schemathesis" run "$@" \
        --checks not_a_server_error \
        --max-examples "$examples" \
        --tls-verify false \
        --seed 7 \
        --no-color) || status=$?
}
# The client API. call-me is left out: it answers 501 "call-me-not-available"
# by design until the code-readout IVR lands (issue 7), which this check
# would count as a 5xx.
fuzz "https://127.0.0.1:$api/v1/openapi.json" \
    --exclude-path /v1/signup/phone/call-me \
    --header "Authorization: Bearer $token"
# The admin API, after the client API (it may delete the signed-in account).
fuzz "http://127.0.0.1:$admin/openapi.json" \
    --header "Authorization: Bearer fuzz-admin-token"

if ! kill -0 "$switch" 2>/dev/null; then
    say "the switch stopped during the run:" >&2
    tail -50 "$tmp/switch.log" >&2
    exit 1
fi
if grep -q 'panicked' "$tmp/switch.log"; then
    say "the switch panicked:" >&2
    grep -B2 -A10 'panicked' "$tmp/switch.log" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    say "schemathesis failed (exit $status); switch log tail:" >&2
    tail -30 "$tmp/switch.log" >&2
    exit "$status"
fi
say "no 5xx found"
