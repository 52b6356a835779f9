#!/usr/bin/env bash
# Prepaid billing under load (issue 19 item 11), in two parts:
#
# 1. Rated call records per second, written with the balance debit, straight
#    through the store (host/examples/billing_load.rs): plain CDRs/s (charging
#    off), prepaid authorisations/s and settled calls/s (the debit, its `call`
#    ledger row, the CDR with its cost and the end of the reservation in one
#    transaction), on SQLite with TASKS 1, 8 and 32, and on MariaDB too when
#    MYSQL_URL is set (start one with ./scripts/mariadb-test-db.sh):
#      MYSQL_URL=mysql://softswitch:softswitch@127.0.0.1:3306/softswitch_test bench/billing.sh
#    Goal: >= 5,000 rated CDRs/s on SQLite.
# 2. Calls/s of the authenticated call scenario (INVITE challenged with 407)
#    to an OFFNET number, with charging off and on, in the same run: the
#    release switch, N_USERS accounts (bench/anchors/gen_users.sh) imported with
#    an opening balance of 1,000,000.00 (the account template's, so each has
#    its `adjust` ledger row), the `default` tariff pricing the carrier's
#    prefix 4860 (0.60/min billed per second, 0.02 to connect), gateway
#    `carrier` (prefix 4860) = a SIPp UAS on GW_PORT, not registered. Callers
#    dial int4860012345 (the account template's `DP:int->` rule sends it to the
#    gateway). bench/anchors/sweep.py steps the rate up until failures pass
#    1 %, once per pass in ORDER ("off on": `[billing] prepaid_calls` false,
#    then true; the same database). Goal: on/off >= 0.9.
#    Afterwards (switch stopped): every account's ledger sums to its balance,
#    the `call` ledger rows are exactly the answered OFFNET CDRs with a cost
#    (and the same money), and no reservation is left.
# Knobs: CALLS (20000), TASKS_SET ("1 8 32"), MYSQL_URL, N_USERS (1000),
#        CALL_RATES, DURATION (8), IDLE_WAIT (60), ORDER ("off on"), PORT (5090),
#        GW_PORT (5082), SKIP_LOAD=1 / SKIP_SIP=1 (one part only), QUICK=1, KEEP=1
#        (keep the work dir).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ANCHORS=$PWD/bench/anchors
CALLS=${CALLS:-20000}
TASKS_SET=${TASKS_SET:-"1 8 32"}
N_USERS=${N_USERS:-1000}
CALL_RATES=${CALL_RATES:-1000,1500,2000,2500,3000,3500,4000}
DURATION=${DURATION:-8}
IDLE_WAIT=${IDLE_WAIT:-60}
ORDER=${ORDER:-"off on"}
PORT=${PORT:-5090}
ADMIN_PORT=${ADMIN_PORT:-$((PORT + 1))}
GW_PORT=${GW_PORT:-5082}
UAC_PORT=${UAC_PORT:-5061}
NUMBER=${NUMBER:-4860012345}
if [ -n "${QUICK:-}" ]; then
  CALLS=2000; N_USERS=100; CALL_RATES=100,200; DURATION=3; IDLE_WAIT=0
fi
./scripts/setup.sh
command -v sipp >/dev/null && command -v sqlite3 >/dev/null || {
  echo "==> installing sip-tester sqlite3 (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester sqlite3
}
./scripts/build-guests.sh
cargo build --release -p softswitch --bin softswitch --example billing_load
BIN=$PWD/target/release/softswitch
LOAD=$PWD/target/release/examples/billing_load

WORK=$(mktemp -d)
SW=
cleanup() {
  [ -n "$SW" ] && kill "$SW" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
echo "==> $(date -u +%FT%TZ) nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. rated CDRs/s through the store ---------------------------------------
if [ -z "${SKIP_LOAD:-}" ]; then
  for t in $TASKS_SET; do
    mkdir -p "$WORK/load-$t"
    echo "==> billing_load sqlite: $CALLS calls, $t tasks"
    "$LOAD" "sqlite://$WORK/load-$t/softswitch.db" "$WORK/load-$t" "$CALLS" "$t" | sed 's/^{/{"db":"sqlite",/'
  done
  if [ -n "${MYSQL_URL:-}" ]; then
    for t in $TASKS_SET; do
      mkdir -p "$WORK/load-mysql-$t"
      echo "==> billing_load mariadb: $CALLS calls, $t tasks"
      "$LOAD" "$MYSQL_URL" "$WORK/load-mysql-$t" "$CALLS" "$t" | sed 's/^{/{"db":"mariadb",/'
    done
  fi
fi
[ -n "${SKIP_SIP:-}" ] && exit 0

# --- 2. calls/s with charging off and on --------------------------------------
"$ANCHORS/gen_users.sh" "$N_USERS" "$WORK/sipp"
config() {  # $1 = true|false (prepaid_calls)
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
[account_template]
tariff = "default"
currency = "USD"
# 1,000,000.00 each: no call is refused for money (an 'adjust' ledger row).
balance_micro = 1000000000000
[billing]
prepaid_calls = $1
TOML
}
config false
export SOFTSWITCH_CONFIG=$WORK/softswitch.toml SOFTSWITCH_DATA_DIR=$WORK/data
DB=$WORK/data/softswitch.db
echo "==> importing $N_USERS accounts, the tariff and the gateway"
"$BIN" account import "$WORK/sipp/users.csv"
printf 'prefix,description,currency,price_per_minute,connection_fee,increments\n4860,Carrier,USD,0.60,0.02,1/1\n' > "$WORK/tariff.csv"
"$BIN" tariff import default "$WORK/tariff.csv"
"$BIN" gateway add carrier --prefix 4860 --address "127.0.0.1:$GW_PORT" --transport udp

metric() {  # $1 = metric name: its value, or empty
  curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin.token")" "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | awk -v m="$1" '$1 == m { print $2 }'
}
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
pass=0
for mode in $ORDER; do
  pass=$((pass + 1))
  case $mode in on) config true;; off) config false;; *) echo "ORDER: on|off, not $mode"; exit 2;; esac
  label=charging-$mode-$pass
  RUST_LOG=warn "$BIN" run > "$WORK/softswitch-$label.log" 2>&1 &
  SW=$!
  sleep 2
  kill -0 "$SW" || { cat "$WORK/softswitch-$label.log"; exit 1; }
  echo "==> $label: call-auth to int$NUMBER via gateway carrier (switch pid $SW)"
  python3 "$ANCHORS/sweep.py" --scenario call-auth --target "127.0.0.1:$PORT" --domain 127.0.0.1 \
    --users "$WORK/sipp/users.csv" --callee-user "int$NUMBER" --no-register-callee \
    --callee-port "$GW_PORT" --uac-port "$UAC_PORT" --rates "$CALL_RATES" --duration "$DURATION" \
    --server-pid "$SW" --label "$label" --outdir "$WORK/out" --results "$RESULTS" --idle-wait "$IDLE_WAIT"
  # Calls of a failed step end by their timers (Timer B / H, up to ~70 s):
  # wait until none is live, so every charged call is settled before the stop.
  for _ in $(seq 1 90); do
    [ "$(metric softswitch_calls_active)" = 0 ] && break
    sleep 1
  done
  echo "live calls: $(metric softswitch_calls_active)"
  # An ended call's record (and, charged, its settlement) may still wait for
  # the database: a stop now would lose it (the pool closes). Wait until no
  # reservation is left and the record count holds still for 3 s.
  last=-1; same=0
  for _ in $(seq 1 120); do
    n=$(sqlite3 -batch -noheader -cmd '.timeout 5000' "$DB" "SELECT (SELECT count(*) FROM cdrs) || ' ' || (SELECT count(*) FROM balance_reservations)")
    if [ "$n" = "$last" ] && [ "${n#* }" = 0 ]; then same=$((same + 1)); [ "$same" -ge 3 ] && break; else same=0; fi
    last=$n; sleep 1
  done
  echo "call records, reservations open: $n"
  kill "$SW"; wait "$SW" 2>/dev/null || true; SW=
  # errors and warnings of the run (the IVR's missing prompts and guests do not matter here)
  grep -E ' (ERROR|WARN) ' "$WORK/softswitch-$label.log" | grep -v 'softswitch::ivr' \
    | sed -E 's/^[0-9TZ:.-]+ +//; s/call_id=[^ ]+/call_id=…/g' | sort | uniq -c | sort -rn | head -5 || true
  sleep 3
done

echo "==> sweeps"
python3 "$ANCHORS/report.py" "$RESULTS"
python3 - "$RESULTS" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    mode = "on" if r["label"].startswith("charging-on") else "off"
    if r["clean"]:
        best.setdefault(mode, []).append(r["target_rate"])
top = {m: max(v) for m, v in best.items()}
for m in ("off", "on"):
    print(f"highest clean rate, charging {m}: {top.get(m, 'none')}")
if top.get("off") and top.get("on"):
    print(f"on/off: {top['on'] / top['off']:.2f} (goal >= 0.9)")
PY

echo "==> ledger checks ($DB)"
q() { sqlite3 -batch -noheader "$DB" "$1"; }
# Records matched to ledger rows by Call-ID: without an index that is a
# scan of every record per row (minutes for 100,000 calls).
q "CREATE INDEX IF NOT EXISTS bench_cdrs_call_id ON cdrs (call_id)"
bad=$(q "SELECT count(*) FROM accounts a WHERE a.balance_micro <> (SELECT coalesce(sum(l.amount_micro), 0) FROM ledger l WHERE l.login = a.login)")
rows=$(q "SELECT count(*) FROM ledger WHERE kind = 'call'")
cdrs=$(q "SELECT count(*) FROM cdrs WHERE disposition = 'answered' AND gateway IS NOT NULL AND cost_micro > 0")
unmatched=$(q "SELECT count(*) FROM ledger l WHERE l.kind = 'call' AND NOT EXISTS (SELECT 1 FROM cdrs c WHERE c.call_id = l.reference AND c.cost_micro = -l.amount_micro)")
money_rows=$(q "SELECT coalesce(-sum(amount_micro), 0) FROM ledger WHERE kind = 'call'")
money_cdrs=$(q "SELECT coalesce(sum(cost_micro), 0) FROM cdrs WHERE cost_micro IS NOT NULL")
reserved=$(q "SELECT count(*) || ' reservations, ' || (SELECT coalesce(sum(reserved_micro), 0) FROM accounts) || ' micro reserved' FROM balance_reservations")
q "SELECT 'answered OFFNET CDRs: ' || count(*) || ' (' || sum(cost_micro IS NULL) || ' without a cost, ' || sum(cost_micro > 0) || ' charged)' FROM cdrs WHERE disposition = 'answered' AND gateway IS NOT NULL"
echo "accounts whose ledger does not sum to the balance: $bad"
echo "call ledger rows: $rows; answered OFFNET CDRs with a cost: $cdrs; rows without their CDR (same Call-ID and cost): $unmatched"
echo "money: call rows $money_rows micro, CDR costs $money_cdrs micro"
echo "left: $reserved"
[ "$bad" = 0 ] && [ "$rows" = "$cdrs" ] && [ "$unmatched" = 0 ] && [ "$money_rows" = "$money_cdrs" ] \
  || { echo "LEDGER CHECK FAILED"; exit 1; }
echo "ledger checks passed"
