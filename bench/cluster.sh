#!/usr/bin/env bash
# Cluster capacity: the REGISTER and call-auth SIPp scenarios against one
# switch node and against two nodes sharing one MariaDB, in the same run, so
# the figures can be quoted as ratios (issue 21, README "Cluster").
#
#   bench/cluster.sh
#
# Both configurations run cluster mode on the same MariaDB database (emptied
# before each), so the only difference is the number of nodes:
#   1 node : node-a alone; the callers and the callee are all on it.
#   2 nodes: node-a and node-b, each with half the users and one SIPp, both
#            stepped up together (RATE/2 each). Calls are run twice:
#            local: each node's callers call a callee registered on their node;
#            cross: they call the callee registered on the other node, so every
#                   call is forwarded node to node (the worst case).
# On one 2-core machine both nodes, MariaDB and the SIPps share the same two
# cores: the 2-node figures show what forwarding and shared state cost, not
# what a second server would add (see the README's capacity model for that).
# Knobs: N_USERS (10000), REG_RATES, CALL_RATES, DURATION (8), IDLE_WAIT (240),
# BENCH_DB (softswitch_bench), SOFTSWITCH_BIN (skip the release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
N_USERS=${N_USERS:-10000}
REG_RATES=${REG_RATES:-1000,2000,3000,4000,5000,6000,8000}
CALL_RATES=${CALL_RATES:-500,1000,1500,2000,2500,3000,4000}
DURATION=${DURATION:-8}
IDLE_WAIT=${IDLE_WAIT:-240}
db=${BENCH_DB:-softswitch_bench}

if [[ -z ${SOFTSWITCH_BIN:-} ]]; then
    ./scripts/setup.sh
    ./scripts/build-guests.sh
    cargo build --release -p softswitch
    SOFTSWITCH_BIN=$repo/target/release/softswitch
fi
SOFTSWITCH_TEST_DB=$db ./scripts/mariadb-test-db.sh >/dev/null
url="mysql://softswitch:softswitch@127.0.0.1:3306/$db"

work=$(mktemp -d /tmp/bench-cluster.XXXXXX)
out=$work/out
mkdir -p "$out"
results=$out/results.jsonl
pids=()
stop_nodes() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'stop_nodes; echo "files: $work"' EXIT
ulimit -n 65536 2>/dev/null || true

bench/anchors/gen_users.sh "$N_USERS" "$work/sipp"
half=$(((N_USERS + 1) / 2))
{ echo SEQUENTIAL; sed -n "2,$((half + 1))p" "$work/sipp/users.csv"; } >"$work/sipp/users-a.csv"
{ echo SEQUENTIAL; sed -n "$((half + 2)),\$p" "$work/sipp/users.csv"; } >"$work/sipp/users-b.csv"

release=$repo/guests/target/wasm32-wasip2/release
# node NAME SIP_PORT ADMIN_PORT MEDIA_FIRST_PORT
node() {
    local name=$1 sip=$2 admin=$3 media=$4
    mkdir -p "$work/$name/data"
    cat >"$work/$name/softswitch.toml" <<TOML
[database]
url = "$url"
[sip]
udp = ["127.0.0.1:$sip"]
tcp = []
tls = []
wss = []
domain = "127.0.0.1"
[admin]
listen = "127.0.0.1:$admin"
[api]
listen = []
[stun]
enabled = false
[media]
port_min = $media
port_max = $((media + 3999))
[cluster]
enabled = true
name = "$name"
[plugins]
cache_dir = "$work/guest-cache"
[guests.routing]
path = "$release/routing_default.wasm"
TOML
}
node node-a 5090 5091 30000
node node-b 5100 5101 34000
sw() { # sw NODE ARGS...
    local name=$1
    shift
    SOFTSWITCH_CONFIG=$work/$name/softswitch.toml SOFTSWITCH_DATA_DIR=$work/$name/data "$SOFTSWITCH_BIN" "$@"
}

fresh_database() {
    mariadb -e "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`;"
    sw node-a account import "$work/sipp/users.csv" >/dev/null
    sw node-a account add callee-a --password callee-apw >/dev/null
    sw node-a account add callee-b --password callee-bpw >/dev/null
    cp "$work/node-a/data/secret.key" "$work/node-b/data/secret.key"
}

start_nodes() { # start_nodes NODE...
    local n
    for n in "$@"; do
        SOFTSWITCH_CONFIG=$work/$n/softswitch.toml SOFTSWITCH_DATA_DIR=$work/$n/data RUST_LOG=warn \
            "$SOFTSWITCH_BIN" run >"$work/$n/run.log" 2>&1 &
        pids+=($!)
    done
    # Each node must see the others before the run (cluster_peers = nodes - 1).
    local want=$(($# - 1)) admin token seen
    for n in "$@"; do
        admin=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$work/$n/softswitch.toml")
        for _ in $(seq 1 300); do
            token=$(cat "$work/$n/data/admin.token" 2>/dev/null || true)
            seen=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/metrics" 2>/dev/null |
                sed -n 's/^softswitch_cluster_peers //p' || true)
            [[ $seen == "$want" ]] && break
            sleep 0.2
        done
        [[ $seen == "$want" ]] || { echo "$n never saw $want peer(s); log: $work/$n/run.log" >&2; exit 1; }
    done
}

sweep() { # sweep LABEL SCENARIO RATES NODE_SPEC...
    local label=$1 scenario=$2 rates=$3
    shift 3
    local args=()
    for spec in "$@"; do args+=(--node "$spec"); done
    echo "==> $label $scenario"
    python3 bench/cluster_sweep.py --scenario "$scenario" --domain 127.0.0.1 --rates "$rates" \
        --duration "$DURATION" --idle-wait "$IDLE_WAIT" --label "$label" --outdir "$out" \
        --results "$results" "${args[@]}"
    sleep 3
}

A=127.0.0.1:5090
B=127.0.0.1:5100

echo "==> 1 node (node-a), MariaDB $db"
fresh_database
start_nodes node-a
pa=${pids[0]}
sweep 1-node register "$REG_RATES" "$A,$pa,$work/sipp/users.csv,5061,callee-a,5080"
sweep 1-node call-auth "$CALL_RATES" "$A,$pa,$work/sipp/users.csv,5061,callee-a,5080"
stop_nodes

echo "==> 2 nodes (node-a, node-b), MariaDB $db"
fresh_database
start_nodes node-a node-b
pa=${pids[0]} pb=${pids[1]}
sweep 2-nodes register "$REG_RATES" \
    "$A,$pa,$work/sipp/users-a.csv,5061,callee-a,5080" \
    "$B,$pb,$work/sipp/users-b.csv,5062,callee-b,5081"
sweep 2-nodes-local call-auth "$CALL_RATES" \
    "$A,$pa,$work/sipp/users-a.csv,5061,callee-a,5080" \
    "$B,$pb,$work/sipp/users-b.csv,5062,callee-b,5081"
# cross: node-a's callers call callee-b, registered on node-b, and back (the
# callees register again from the same ports: the same bindings, refreshed).
sweep 2-nodes-cross call-auth "$CALL_RATES" \
    "$A,$pa,$work/sipp/users-a.csv,5061,callee-b,5081,$B" \
    "$B,$pb,$work/sipp/users-b.csv,5062,callee-a,5080,$A"
stop_nodes

python3 - "$results" <<'PY' | tee "$out/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    if r["clean"]:
        k = (r["label"], r["scenario"])
        if r["ok_per_s_wall"] > best.get(k, {}).get("ok_per_s_wall", 0):
            best[k] = r
print("| configuration | scenario | highest clean rate | ok/s | switch CPU (% of a core) | ratio to 1 node |")
print("|---|---|---|---|---|---|")
for (label, scen), r in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    base = best.get(("1-node", scen))
    ratio = f"{r['target_rate'] / base['target_rate']:.2f}" if base else "-"
    print(f"| {label} | {scen} | {r['target_rate']}/s | {r['ok_per_s_wall']} | {r['server_cpu_pct']} | {ratio} |")
PY
