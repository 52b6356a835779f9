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
# CLUSTER_TOUR_DIR (default: a new temporary folder). A_SIP, B_SIP (SIP;
# TLS is the port after), A_ADMIN, B_ADMIN and A_MEDIA, B_MEDIA (the first
# of 1,000 media ports) move the nodes off their usual ports (the tests do,
# so that nothing else on the machine can be in the way).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

stay=0
[[ ${1:-} == --stay ]] && stay=1
db=${CLUSTER_TOUR_DB:-softswitch_tour}
a_sip=${A_SIP:-5060} b_sip=${B_SIP:-5070}
a_admin=${A_ADMIN:-8089} b_admin=${B_ADMIN:-8090}
a_media=${A_MEDIA:-40000} b_media=${B_MEDIA:-41000}
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
wss = []

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
node node-a "$a_sip" "$a_admin" "$a_media"
node node-b "$b_sip" "$b_admin" "$b_media"
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
    echo "[cluster-tour] failed at line $1; who listens on the nodes' ports:" >&2
    ss -Hltnup 2>/dev/null | grep -E ":($a_sip|$b_sip|$a_admin|$b_admin) " >&2 || true
    echo "[cluster-tour] the last lines of each log:" >&2
    for f in "$dir"/*.log "$dir"/*.out "$dir"/node-*/run.log; do
        [[ -f $f ]] || continue
        echo "--- $f" >&2
        tail -n 40 "$f" >&2
    done
}
trap 'on_error $LINENO' ERR
fail() { # fail WHY: a step that did not come out as it should
    echo "[cluster-tour] $*" >&2
    trap - ERR
    on_error "${BASH_LINENO[0]}"
    exit 1
}
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
    a=$(metric "$a_admin" node-a cluster_peers || true)
    b=$(metric "$b_admin" node-b cluster_peers || true)
    [[ $a == 1 && $b == 1 ]] && break
    sleep 0.2
done
[[ $a == 1 && $b == 1 ]] || fail "the nodes never saw each other (peers seen: node-a ${a:-none}, node-b ${b:-none})"
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
    fail "$1 never had $2 binding(s)"
}

say "alice registers on node A, bob's phone on node B"
oneshot "$a_sip" "$scenarios/register_auth.xml" -inf "$dir/alice.csv"
device "$b_sip" bob "$scenarios/ooc_answer_message.xml" bob-messages
wait_bindings bob 1
echo "bindings (login, the node holding the device):"
mariadb -N -e "SELECT login, node FROM \`$db\`.bindings ORDER BY login"

say "alice (on A) sends bob a MESSAGE: A stores it, B delivers it to bob's phone"
oneshot "$a_sip" "$scenarios/uac_message_auth.xml" -inf "$dir/alice.csv" -s bob
grep -q 'hello from sipp-bench message' "$dir/bob-messages.log"
echo "bob's phone got: $(grep -m1 'hello from sipp-bench message' "$dir/bob-messages.log")"
sw node-b message list --to bob

say "alice calls bob: node A rings bob's phone through node B"
device "$b_sip" bob "$scenarios/call_uas.xml" bob-calls
wait_bindings bob 2
oneshot "$a_sip" "$scenarios/call_uac.xml" -inf "$dir/alice.csv" -s bob -d 1000
# The phone's SIPp writes its trace when it gets round to it.
for _ in $(seq 1 50); do
    grep -q '^BYE sip:' "$dir/bob-calls.log" && break
    sleep 0.2
done
grep -q '^BYE sip:' "$dir/bob-calls.log" || fail "bob's phone never saw the BYE"
sw node-a cdr list --login alice
echo
echo "one call record (node A's), answered"

if ((stay)); then
    say "both nodes keep running: A at 127.0.0.1:$a_sip, B at 127.0.0.1:$b_sip (users alice/alice-pw, bob/bob-pw)"
    echo "logs: $dir/node-a/run.log $dir/node-b/run.log; Ctrl-C stops them"
    wait "${pids[0]}" "${pids[1]}"
fi
say "done (files in $dir)"
