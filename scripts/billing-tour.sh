#!/usr/bin/env bash
# The prepaid billing tour of the README (section "Billing", "A tour"): on a
# fresh data directory, import a tariff, top an account up with a voucher,
# call a carrier (SIPp) through the switch and see the charge in the balance
# and the call record, have a second call cut when the money runs out, and
# see a third refused with 402. Every step checks what it shows; the script
# fails at the first surprise. tests/cli.rs runs it in CI.
#
# Needs the switch built (SOFTSWITCH, default target/release/softswitch),
# sipp, curl and python3. Ports: SIP_PORT (5060), TLS_PORT (5061),
# API_PORT (8443), ADMIN_PORT (8089), GW_PORT (5080, the carrier).
# WORK: the folder it works in (a new temporary one by default, removed
# afterwards unless KEEP=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
SOFTSWITCH=${SOFTSWITCH:-$REPO/target/release/softswitch}
SIP_PORT=${SIP_PORT:-5060}
TLS_PORT=${TLS_PORT:-5061}
API_PORT=${API_PORT:-8443}
ADMIN_PORT=${ADMIN_PORT:-8089}
GW_PORT=${GW_PORT:-5080}
WORK=${WORK:-$(mktemp -d)}
softswitch() { "$SOFTSWITCH" "$@"; }
say() { printf '\n==> %s\n' "$*"; }
fail() { echo "TOUR FAILED: $*" >&2; [ -f "$WORK/switch.log" ] && tail -30 "$WORK/switch.log" >&2; exit 1; }

SW= GW=
cleanup() {
  local rc=$?
  [ -n "$GW" ] && kill "$GW" 2>/dev/null
  [ -n "$SW" ] && kill "$SW" 2>/dev/null && wait "$SW" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

say "a switch with prepaid calls on, in $WORK"
cat > "$WORK/softswitch.toml" <<TOML
data_dir = "$WORK/data"
[sip]
udp = ["127.0.0.1:$SIP_PORT"]
tcp = ["127.0.0.1:$SIP_PORT"]
tls = ["127.0.0.1:$TLS_PORT"]
wss = []
[api]
listen = ["127.0.0.1:$API_PORT"]
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[stun]
enabled = false
[account_template]
tariff = "default"
currency = "EUR"
[billing]
prepaid_calls = true
[guests.routing]
path = "$REPO/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
export SOFTSWITCH_CONFIG=$WORK/softswitch.toml

say "a tariff: Polish mobiles at 6.00 a minute billed per second (0.10 a second), 0.05 to connect"
cat > "$WORK/tariff.csv" <<'CSV'
prefix,description,country,currency,price_per_minute,connection_fee,increments
4860,Poland mobile,PL,EUR,6.00,0.05,1/1
CSV
softswitch tariff import default "$WORK/tariff.csv"

say "alice, a carrier for 4860..., and a voucher worth 1.00"
softswitch account add alice --password alice-sip-pw --phone 48600111222 \
  --username alice --access-password alice-web-pw
softswitch gateway add carrier --prefix 4860 --address "127.0.0.1:$GW_PORT"
PIN=$(softswitch voucher create --count 1 --value 1.00 --currency EUR | tail -1)
echo "PIN: $PIN"

say "start the switch"
"$SOFTSWITCH" run > "$WORK/switch.log" 2>&1 &
SW=$!
CA=$WORK/data/tls/self-signed-cert.pem
API=https://127.0.0.1:$API_PORT
for _ in $(seq 100); do
  curl -s --cacert "$CA" -o /dev/null "$API/v1/openapi.json" 2>/dev/null && break
  kill -0 "$SW" 2>/dev/null || fail "the switch did not start"
  sleep 0.2
done

say "alice signs in and redeems the voucher"
LOGIN=$(curl -s --cacert "$CA" "$API/v1/login" -H 'content-type: application/json' \
  -d '{"id":"alice","password":"alice-web-pw"}')
TOKEN=$(echo "$LOGIN" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token", ""))')
[ -n "$TOKEN" ] || fail "alice cannot sign in: $LOGIN"
curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$API/v1/vouchers/redeem" \
  -H 'content-type: application/json' -d "{\"pin\":\"$PIN\"}"
echo
balance() { softswitch balance show alice; }
balance
balance | grep > /dev/null '1.00 EUR' || fail "the voucher did not top the balance up to 1.00"

say "the carrier (SIPp answering on port $GW_PORT)"
sipp -sf bench/anchors/sipp/uas_call.xml -i 127.0.0.1 -p "$GW_PORT" -nostdin \
  > "$WORK/carrier.log" 2>&1 &
GW=$!
printf 'SEQUENTIAL\nalice;alice-sip-pw;[authentication username=alice password=alice-sip-pw]\n' \
  > "$WORK/alice.csv"
call() { # SCENARIO [sipp options]: one call from alice to int4860012345
  local scenario=$1
  shift
  sipp "127.0.0.1:$SIP_PORT" -sf "$scenario" -key domain localhost -inf "$WORK/alice.csv" \
    -s int4860012345 -m 1 -l 1 -nostdin -timeout 30 -timeout_error "$@" > /dev/null 2>&1
}

say "call 1: alice talks for 3 seconds (0.05 + 3 or 4 started seconds at 0.10)"
call tests/sipp/call_uac.xml -d 3000 || fail "call 1 failed"
sleep 0.5
softswitch cdr list --login alice --limit 1
balance
balance | grep -E > /dev/null ' 0\.(65|55) EUR' || fail "call 1 was not charged 0.35 or 0.45"

say "call 2: alice would talk for a minute; the switch hangs up when the money runs out"
call tests/sipp/call_uac_wait_bye.xml || fail "call 2 was not ended by the switch"
sleep 0.5
softswitch cdr list --login alice --limit 1
softswitch cdr list --login alice --limit 1 | grep > /dev/null out-of-credit ||
  fail "call 2 did not end for want of credit"
balance
balance | grep -E > /dev/null ' 0\.0[0-9] EUR' || fail "call 2 did not use up the money"

say "call 3: refused with 402 before the carrier is called"
sed 's/CODE/402/' tests/sipp/call_uac_fail.xml > "$WORK/refused.xml"
call "$WORK/refused.xml" || fail "call 3 was not refused with 402"
softswitch balance ledger alice
say "tour done"
