#!/usr/bin/env bash
# Goodput past capacity: the SIPp kit's call-auth scenario (INVITE challenged
# with 407, 100/180/200/ACK/BYE, every call decided by the default routing
# guest) is stepped up to the switch's highest clean rate R, then offered at
# 1.5 R and 2 R. Goodput is the calls completed per second of offered load;
# the goal is >= 90 % of R with load shedding on. The same multiples are run
# with shedding off (sip.overload_lag_ms = 0) on a fresh switch, and against
# Kamailio with the kit (its own clean rate, then 1.5x and 2x), in the same
# run. The server gets half of CPU 0 and SIPp all of CPU 1 (SERVER_SHARE %,
# SERVER_CPUS, SIPP_CPUS; bench/anchors/cpu_cap.sh): on a 2-core machine SIPp
# cannot offer twice what a server with more sets up, and a server sharing
# its cores with the load generator has no capacity to speak of. A call whose INVITE got its 200 but whose BYE did not get one is an
# established call dropped; the table counts them.
# Knobs: N_USERS (10000), CALL_RATES (the clean sweep), CLEAN_RATE (skip the
# sweep), MULTIPLES ("1.5 2"), DURATION (10 s a step), KAMAILIO (1), SHED_OFF (1),
# KAM_CALL_RATES, IDLE_WAIT (240), REPORT (a file for the table), KEEP=1 (keep the
# work folder: logs, SIPp screens, results).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ANCHORS=$PWD/bench/anchors
N_USERS=${N_USERS:-10000}
PORT=${PORT:-5090}
ADMIN_PORT=${ADMIN_PORT:-$((PORT + 1))}
CALL_RATES=${CALL_RATES:-250,500,750,1000,1250,1500,1750,2000}
KAM_CALL_RATES=${KAM_CALL_RATES:-250,500,750,1000,1250,1500,1750,2000}
MULTIPLES=${MULTIPLES:-"1.5 2"}
DURATION=${DURATION:-10}
IDLE_WAIT=${IDLE_WAIT:-240}
SERVER_CPUS=${SERVER_CPUS:-0}
SERVER_SHARE=${SERVER_SHARE:-50}
SIPP_CPUS=${SIPP_CPUS:-1}
./scripts/setup.sh
command -v kamailio >/dev/null && command -v sqlite3 >/dev/null && command -v turnserver >/dev/null || {
  echo "==> installing kamailio kamailio-sqlite-modules sqlite3 coturn (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio kamailio-sqlite-modules sqlite3 coturn
}
./scripts/build-guests.sh
cargo build --release -p softswitch
BIN=$PWD/target/release/softswitch

WORK=$(mktemp -d)
SW=""
trap '[ -n "$SW" ] && kill "$SW" 2>/dev/null; [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
"$ANCHORS/gen_users.sh" "$N_USERS" "$WORK/sipp"

start_switch() { # $1 = sip.overload_lag_ms
  stop_switch
  rm -rf "$WORK/data"
  cat > "$WORK/softswitch.toml" <<TOML
[sip]
udp = ["127.0.0.1:$PORT"]
tcp = []
tls = []
wss = []
domain = "127.0.0.1"
overload_lag_ms = $1
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[guests.routing]
path = "$PWD/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
  export SOFTSWITCH_CONFIG=$WORK/softswitch.toml SOFTSWITCH_DATA_DIR=$WORK/data
  "$BIN" account import "$WORK/sipp/users.csv" > /dev/null
  "$BIN" account import "$WORK/sipp/callee.csv" > /dev/null
  RUST_LOG=warn "$ANCHORS/cpu_cap.sh" "$SERVER_SHARE" "$SERVER_CPUS" "$BIN" run > "$WORK/softswitch-$1.log" 2>&1 &
  SW=$!
  sleep 2
  kill -0 "$SW" || { cat "$WORK/softswitch-$1.log"; exit 1; }
}
stop_switch() {
  if [ -n "$SW" ]; then
    kill -TERM "$SW" 2>/dev/null || true
    wait "$SW" 2>/dev/null || true
    SW=""
  fi
}
warm_up() { # every user calls once at a low rate: the sweep's steps then find the
  # switch's caches (accounts, passwords) as a long-running switch has them,
  # instead of each step's new users costing database reads the last did not
  sweep switch-warm-up 500 "$SW" "127.0.0.1:$PORT" --duration "$((N_USERS / 500))"
}
calm() { # until the switch sheds nothing (after an overloaded step), at most 30 s
  for _ in $(seq 1 60); do
    share=$(curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin.token")" \
      "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^softswitch_sip_shed_share /{print $2}')
    [ "$share" = 0 ] && return
    sleep 0.5
  done
}
sweep() { # $1 label, $2 rates, $3 server pid, $4 target, rest: sweep.py options
  local label=$1 rates=$2 pid=$3 target=$4
  shift 4
  python3 "$ANCHORS/sweep.py" --scenario call-auth --target "$target" --domain "${target%:*}" \
    --users "$WORK/sipp/users.csv" --callee-csv "$WORK/sipp/callee.csv" \
    --rates "$rates" --duration "$DURATION" --server-pid "$pid" --label "$label" \
    --outdir "$WORK/out" --results "$RESULTS" --idle-wait "$IDLE_WAIT" --sipp-cpus "$SIPP_CPUS" "$@" > /dev/null
}
clean_rate() { # $1 label: the highest clean step's rate
  python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["label"] == sys.argv[2]]
clean = [r["target_rate"] for r in rows if r["clean"]]
print(max(clean) if clean else 0)' "$RESULTS" "$1"
}
multiples_of() { # $1 rate: "1.5R,2R"
  python3 -c 'import sys; r = int(sys.argv[1]); print(",".join(str(int(r * float(m))) for m in sys.argv[2].split()))' "$1" "$MULTIPLES"
}

echo "==> the switch, shedding on (overload_lag_ms = 30)"
start_switch 30
warm_up
CLEAN=${CLEAN_RATE:-}
if [ -z "$CLEAN" ]; then
  sweep switch-sweep "$CALL_RATES" "$SW" "127.0.0.1:$PORT"
  CLEAN=$(clean_rate switch-sweep)
fi
[ "$CLEAN" -gt 0 ] || { echo "no clean step: lower CALL_RATES"; exit 1; }
echo "    clean rate $CLEAN calls/s; offering $(multiples_of "$CLEAN")"
calm
sweep switch-shedding "$(multiples_of "$CLEAN")" "$SW" "127.0.0.1:$PORT" --all-steps
curl -s -H "Authorization: Bearer $(cat "$WORK/data/admin.token")" "http://127.0.0.1:$ADMIN_PORT/metrics" \
  | grep -E '^softswitch_sip_(shed|flood)' || true
if [ "${SHED_OFF:-1}" = 1 ]; then
  echo "==> the switch, shedding off (overload_lag_ms = 0)"
  start_switch 0
  warm_up
  sweep switch-no-shedding "$(multiples_of "$CLEAN")" "$SW" "127.0.0.1:$PORT" --all-steps
fi
stop_switch
if [ "${KAMAILIO:-1}" = 1 ]; then
  echo "==> Kamailio with the kit (auth cfg, default workers)"
  for phase in sweep multiples; do
    if [ $phase = sweep ]; then rates=$KAM_CALL_RATES; args=""; else
      KCLEAN=$(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(max([r["target_rate"] for r in rows if r["clean"]] or [0]))' "$WORK/kam-sweep/results.jsonl")
      [ "$KCLEAN" -gt 0 ] || { echo "Kamailio had no clean step"; break; }
      rates=$(multiples_of "$KCLEAN"); args="--all-steps"
    fi
    OUT=$WORK/kam-$phase SCENARIOS=call-auth CHILDREN_SET=default STUN=0 N_USERS=$N_USERS \
      DURATION=$DURATION IDLE_WAIT=$IDLE_WAIT CALL_RATES=$rates KAM_CPUS=$SERVER_CPUS KAM_SHARE=$SERVER_SHARE \
      SWEEP_ARGS="--sipp-cpus $SIPP_CPUS $args" \
      "$ANCHORS/run.sh" > "$WORK/kam-$phase.log" 2>&1 || { tail -20 "$WORK/kam-$phase.log"; exit 1; }
    sed "s/\"label\": \"kamailio-auth-children-default\"/\"label\": \"kamailio-$phase\"/" \
      "$WORK/kam-$phase/results.jsonl" >> "$RESULTS"
  done
fi
python3 "$PWD/bench/overload_report.py" "$RESULTS" | tee "${REPORT:-/dev/null}"
echo "results: $RESULTS (kept with KEEP=1)"
