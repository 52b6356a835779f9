#!/usr/bin/env bash
# A tour of cluster mode (README "Cluster"): one MariaDB database, two switch
# nodes on loopback (A on 127.0.0.1:5060, B on 127.0.0.1:5070), alice
# registered on A and bob on B; alice messages bob and calls him, through
# node B. SIPp plays the phones.
#
#   scripts/cluster-tour.sh            build, run the tour, stop the nodes
#   scripts/cluster-tour.sh --stay     ... and keep both nodes running (Ctrl-C stops them)
#
# Needs root on a fresh Debian machine (apt-get, MariaDB's root login), like
# scripts/mariadb-test-db.sh, which it uses. The tour's database
# (CLUSTER_TOUR_DB, default softswitch_tour) is emptied first. SOFTSWITCH_BIN
# runs a given binary instead of building the release one. Files go to
# CLUSTER_TOUR_DIR (default: a new temporary folder).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

stay=0
[[ ${1:-} == --stay ]] && stay=1
db=${CLUSTER_TOUR_DB:-softswitch_tour}
dir=${CLUSTER_TOUR_DIR:-$(mktemp -d /tmp/cluster-tour.XXXXXX)}
mkdir -p "$dir"

say() { printf '\n[cluster-tour] %s\n' "$*"; }

if [[ -z ${SOFTSWITCH_BIN:-} ]]; then
    ./scripts/setup.sh
    ./scripts/build-guests.sh
    say "cargo build --release -p softswitch"
    cargo build --release -p softswitch
    SOFTSWITCH_BIN=$repo/target/release/softswitch
fi
command -v sipp >/dev/null || { echo "sipp is missing: scripts/setup.sh installs it" >&2; exit 1; }

say "MariaDB: database $db, emptied"
SOFTSWITCH_TEST_DB=$db ./scripts/mariadb-test-db.sh >/dev/null
mariadb -e "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`;"
url="mysql://softswitch:softswitch@127.0.0.1:3306/$db"

release=$repo/guests/target/wasm32-wasip2/release
# node NAME SIP_PORT ADMIN_PORT MEDIA_FIRST_PORT: a node's folder and config.
node() {
    local name=$1 sip=$2 admin=$3 media=$4
    mkdir -p "$dir/$name/data"
    cat >"$dir/$name/softswitch.toml" <<TOML
[database]
url = "$url"

[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
tls = ["127.0.0.1:$((sip + 1))"]

[admin]
listen = "127.0.0.1:$admin"

[api]
listen = []

[stun]
enabled = false

[media]
port_min = $media
port_max = $((media + 999))

[cluster]
enabled = true
name = "$name"

[plugins]
# Both nodes use the guests compiled once.
cache_dir = "$dir/guest-cache"

[guests.routing]
path = "$release/routing_default.wasm"

[ivr]
prompts = "$repo/prompts"
[ivr.services.code-readout]
path = "$release/ivr_code_readout.wasm"
[ivr.services.voicemail-deposit]
path = "$release/ivr_voicemail_deposit.wasm"
[ivr.services.voicemail]
path = "$release/ivr_voicemail_access.wasm"
[ivr.services.voicemail-playback]
path = "$release/ivr_voicemail_access.wasm"
[ivr.services.greeting]
path = "$release/ivr_greeting.wasm"
TOML
}
node node-a 5060 8089 40000
node node-b 5070 8090 41000
sw() { # sw NODE ARGS...: the CLI of a node
    local name=$1
    shift
    SOFTSWITCH_CONFIG=$dir/$name/softswitch.toml SOFTSWITCH_DATA_DIR=$dir/$name/data "$SOFTSWITCH_BIN" "$@"
}

say "accounts alice and bob (one database: either node's CLI sees them)"
sw node-a account add alice --password alice-pw --display-name Alice
sw node-a account add bob --password bob-pw --display-name Bob
# Nodes sharing a database share its secret key (it decrypts SIP passwords
# and signs what one node forwards to another).
cp "$dir/node-a/data/secret.key" "$dir/node-b/data/secret.key"

pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT
# A step that fails shows what the phones and the nodes saw: the tour runs in
# CI, where the folder is gone by the time anyone looks.
on_error() {
    echo "[cluster-tour] failed at line $1; the last lines of each log:" >&2
    for f in "$dir"/*.log "$dir"/*.out "$dir"/node-*/run.log; do
        [[ -f $f ]] || continue
        echo "--- $f" >&2
        tail -n 40 "$f" >&2
    done
}
trap 'on_error $LINENO' ERR
for n in node-a node-b; do
    # Not through sw(): $! must be the switch itself, for stop() to reach it.
    SOFTSWITCH_CONFIG=$dir/$n/softswitch.toml SOFTSWITCH_DATA_DIR=$dir/$n/data \
        "$SOFTSWITCH_BIN" run 2>"$dir/$n/run.log" &
    pids+=($!)
done

metric() { # metric ADMIN_PORT NODE NAME
    local token
    token=$(cat "$dir/$2/data/admin.token" 2>/dev/null) || return 1
    curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$1/metrics" |
        sed -n "s/^softswitch_$3 //p"
}
say "waiting for each node to see the other (softswitch_cluster_peers)"
# A debug build compiles the guests slowly at its first start.
for _ in $(seq 1 600); do
    a=$(metric 8089 node-a cluster_peers || true)
    b=$(metric 8090 node-b cluster_peers || true)
    [[ $a == 1 && $b == 1 ]] && break
    sleep 0.2
done
[[ $a == 1 && $b == 1 ]] || { echo "the nodes never saw each other; logs in $dir/node-*/run.log" >&2; exit 1; }
echo "node-a sees 1 peer, node-b sees 1 peer"
sw node-a node list

scenarios=$repo/tests/sipp
users() { printf 'SEQUENTIAL\n%s;%s;[authentication username=%s password=%s]\n' "$1" "$2" "$1" "$2" >"$dir/$1.csv"; }
users alice alice-pw
users bob bob-pw
oneshot() { # oneshot NODE_PORT SCENARIO ARGS...
    local port=$1 file=$2
    shift 2
    sipp "127.0.0.1:$port" -sf "$file" -key domain localhost -m 1 -l 1 -nostdin \
        -timeout 20 -timeout_error -trace_msg -message_file "$dir/sipp-$(basename "$file" .xml).log" "$@" \
        >"$dir/sipp-$(basename "$file" .xml).out" 2>&1
}
# device PORT USER OOC_SCENARIO NAME: a phone registered at the node,
# answering what the switch sends it with the out-of-call scenario; its trace
# goes to $dir/NAME.log (one file per phone: two SIPp writing one file
# overwrite each other's lines).
device() {
    sipp "127.0.0.1:$1" -sf "$scenarios/register_and_hold.xml" -oocsf "$3" -inf "$dir/$2.csv" \
        -key domain localhost -users 1 -m 50 -nostdin -trace_msg -message_file "$dir/$4.log" \
        >"$dir/$4.out" 2>&1 &
    pids+=($!)
}

# bindings_of LOGIN: how many live bindings the login has in the database.
bindings_of() {
    mariadb -N -e "SELECT COUNT(*) FROM \`$db\`.bindings WHERE login = '$1' AND expires_at > UNIX_TIMESTAMP()"
}
wait_bindings() { # wait_bindings LOGIN N
    for _ in $(seq 1 100); do
        (($(bindings_of "$1") >= $2)) && return 0
        sleep 0.2
    done
    echo "$1 never had $2 binding(s); logs in $dir" >&2
    exit 1
}

say "alice registers on node A, bob's phone on node B"
oneshot 5060 "$scenarios/register_auth.xml" -inf "$dir/alice.csv"
device 5070 bob "$scenarios/ooc_answer_message.xml" bob-messages
wait_bindings bob 1
echo "bindings (login, the node holding the device):"
mariadb -N -e "SELECT login, node FROM \`$db\`.bindings ORDER BY login"

say "alice (on A) sends bob a MESSAGE: A stores it, B delivers it to bob's phone"
oneshot 5060 "$scenarios/uac_message_auth.xml" -inf "$dir/alice.csv" -s bob
grep -q 'hello from sipp-bench message' "$dir/bob-messages.log"
echo "bob's phone got: $(grep -m1 'hello from sipp-bench message' "$dir/bob-messages.log")"
sw node-b message list --to bob

say "alice calls bob: node A rings bob's phone through node B"
device 5070 bob "$scenarios/call_uas.xml" bob-calls
wait_bindings bob 2
oneshot 5060 "$scenarios/call_uac.xml" -inf "$dir/alice.csv" -s bob -d 1000
grep -q '^BYE sip:' "$dir/bob-calls.log"
sw node-a cdr list --login alice
echo
echo "one call record (node A's), answered"

if ((stay)); then
    say "both nodes keep running: A at 127.0.0.1:5060, B at 127.0.0.1:5070 (users alice/alice-pw, bob/bob-pw)"
    echo "logs: $dir/node-a/run.log $dir/node-b/run.log; Ctrl-C stops them"
    wait "${pids[0]}" "${pids[1]}"
fi
say "done (files in $dir)"
