#!/usr/bin/env bash
# SIP rates of the switch with the SIPp kit in bench/anchors:
# authenticated REGISTER and authenticated MESSAGE over N distinct accounts,
# stepping the rate up until failures pass 1 %. Every binding and message is
# persisted (SQLite under a temporary data dir). Run Kamailio with the same kit
# in the same sitting to quote a ratio:
#   bench/anchors/run.sh                                (SCENARIOS=register, then message-auth)
# Calls (INVITE challenged with 407, as the switch does; the default routing
# guest decides every call):       SCENARIOS=call-auth bench/sip.sh
# After the runs the switch's gauges are read once every transaction has timed
# out (70 s): live calls, dialogs and transactions must be back to 0 (no leak).
# Knobs: N_USERS (10000), REG_RATES, MSG_RATES, CALL_RATES, DURATION, QUICK=1,
# ANCHORS (kit folder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ANCHORS=${ANCHORS:-$PWD/bench/anchors}
N_USERS=${N_USERS:-10000}
PORT=${PORT:-5090}
ADMIN_PORT=${ADMIN_PORT:-$((PORT + 1))}
./scripts/setup.sh
# The kit generates Kamailio's user database too, so it needs these even here.
# coturn too: the kit prints its version and stops under `set -e` when it is missing.
command -v kamailio >/dev/null && command -v sqlite3 >/dev/null && command -v turnserver >/dev/null || {
  echo "==> installing kamailio kamailio-sqlite-modules sqlite3 coturn (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio kamailio-sqlite-modules sqlite3 coturn
}
./scripts/build-guests.sh
cargo build --release -p softswitch
BIN=$PWD/target/release/softswitch

WORK=$(mktemp -d)
trap 'kill "$SW" 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$ANCHORS/gen_users.sh" "$N_USERS" "$WORK/sipp"
cat > "$WORK/softswitch.toml" <<TOML
[sip]
udp = ["127.0.0.1:$PORT"]
tcp = []
tls = []
wss = []
domain = "127.0.0.1"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[guests.routing]
path = "$PWD/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
export SOFTSWITCH_CONFIG=$WORK/softswitch.toml SOFTSWITCH_DATA_DIR=$WORK/data
echo "==> importing $N_USERS accounts"
"$BIN" account import "$WORK/sipp/users.csv"
"$BIN" account import "$WORK/sipp/callee.csv"
RUST_LOG=warn "$BIN" run > "$WORK/softswitch.log" 2>&1 &
SW=$!
sleep 2
kill -0 "$SW" || { cat "$WORK/softswitch.log"; exit 1; }
for scenario in ${SCENARIOS:-register message-auth}; do
  echo "==> $scenario against the switch (pid $SW)"
  SERVER=none TARGET=127.0.0.1:$PORT DOMAIN=127.0.0.1 SERVER_PID=$SW STUN=0 N_USERS=$N_USERS \
    SCENARIOS=$scenario LABEL=softswitch OUT="$WORK/out-$scenario" "$ANCHORS/run.sh"
done
# A call whose callee never answered ends after Timer B or the no-answer timer
# (30-32 s); its caller's INVITE transaction then waits Timer H (32 s) for an
# ACK an aborted SIPp call never sends: 70 s covers both.
echo "==> waiting 70 s for lingering transactions, then the leak gauges"
sleep 70
curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin.token")" "http://127.0.0.1:$ADMIN_PORT/metrics" \
  | grep -E '^softswitch_(calls_active|sip_dialogs|sip_transactions|media_streams|media_ports_in_use|media_packets)' || true
