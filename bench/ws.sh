#!/usr/bin/env bash
# SIP over WebSocket (RFC 7118) with a release build, the load generator
# (host/examples/ws_load.rs) on the same machine:
#  1. CONNECTIONS (20000) WSS connections held: each opened from one of the
#     source addresses 127.1.x.y (PER_SOURCE each), registered once with its
#     own account (REGISTER, 401, REGISTER with an MD5 digest, 200), then a
#     CRLFCRLF keep-alive message every KEEPALIVE seconds for HOLD seconds,
#     pongs counted, and a last keep-alive on every connection at the end
#     (alive = its pong came back). The switch's memory (VmRSS and RssAnon
#     from /proc) before opening and with every connection held gives the
#     memory per connection; a fresh switch per transport in HOLD_TRANSPORTS
#     ("wss tls": the same over plain SIP over TLS, for comparison).
#  2. REGISTER transactions/s over WSS and over TLS (the baseline), in the
#     same run, interleaved step by step: a pool of POOL connections, one
#     account each, transactions started at each rate of RATES for DURATION
#     seconds (0 = as fast as the pool goes), each a new challenge round;
#     p50/p99 from the first REGISTER to the 200, the switch's CPU.
# The switch and the generator each hold CONNECTIONS descriptors: the script
# raises the open-files limit (it runs as root) before starting either.
# Knobs: CONNECTIONS, HOLD (60), KEEPALIVE (30), PER_SOURCE (1000),
# OPEN_CONCURRENCY (200), HOLD_TRANSPORTS ("wss tls"), POOL (50),
# RATES ("2000 4000 6000 0"; the sweep REPEAT times), DURATION (10); empty
# HOLD_TRANSPORTS or RATES skips that part; BUILD=0 reuses the last build;
# BIN=path runs another build of the switch (e.g. to compare two commits).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
CONNECTIONS=${CONNECTIONS:-20000}
HOLD=${HOLD:-60}
KEEPALIVE=${KEEPALIVE:-30}
PER_SOURCE=${PER_SOURCE:-1000}
OPEN_CONCURRENCY=${OPEN_CONCURRENCY:-200}
HOLD_TRANSPORTS=${HOLD_TRANSPORTS-wss tls}
POOL=${POOL:-50}
RATES=${RATES-2000 4000 6000 0}
REPEAT=${REPEAT:-1}
DURATION=${DURATION:-10}

if [[ ${BUILD:-1} != 0 ]]; then
    ./scripts/setup.sh >/dev/null
    ./scripts/build-guests.sh >/dev/null
    cargo build -q --release -p softswitch --bin softswitch --example ws_load
fi
bin=${BIN:-$root/target/release/softswitch}
load=$root/target/release/examples/ws_load

# Descriptors: CONNECTIONS sockets in each process, plus the media port
# range the switch checks its limit against, plus room. Raising the hard
# limit takes CAP_SYS_RESOURCE (root outside a container); without it both
# processes run with the hard limit there is, and each needs CONNECTIONS
# plus its own few dozen descriptors under it.
nofile=$((CONNECTIONS + 100000))
nr_open=$(cat /proc/sys/fs/nr_open)
((nofile > nr_open)) && nofile=$nr_open
if ! ulimit -Hn "$nofile" 2>/dev/null; then
    echo "note: cannot raise the hard open-files limit to $nofile; it stays $(ulimit -Hn)" >&2
    nofile=$(ulimit -Hn)
    ((CONNECTIONS + 100 > nofile)) &&
        echo "note: $CONNECTIONS connections need more than that in the switch (its own descriptors come on top)" >&2
fi
ulimit -Sn "$nofile"

tmp=$(mktemp -d)
sw=
cleanup() {
    [[ -n $sw ]] && kill "$sw" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/scripts/lib/ports.sh"
admin=$(free_port); sip=$(free_sip_port); tls=$(free_port); wss=$(free_port)

cat >"$tmp/softswitch.toml" <<TOML
[plugins]
cache_dir = "$tmp/cache"
[sip]
domain = "127.0.0.1"
udp = ["127.0.0.1:$sip"]
tcp = []
tls = ["127.0.0.1:$tls"]
wss = ["127.0.0.1:$wss"]
# One generator: its connections come from a few addresses.
ws_max_per_address = $((CONNECTIONS + 2 * POOL))
[api]
listen = []
[admin]
listen = "127.0.0.1:$admin"
token = "bench"
[guests.routing]
path = "$root/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
export SOFTSWITCH_CONFIG=$tmp/softswitch.toml SOFTSWITCH_DATA_DIR=$tmp/data RUST_LOG=warn
metrics=http://127.0.0.1:$admin/metrics

users=$((CONNECTIONS + 2 * POOL))
echo "==> importing $users accounts"
"$root/bench/anchors/gen_users.sh" "$users" "$tmp/users" >/dev/null
t0=$(date +%s.%N)
"$bin" account import "$tmp/users/users.csv" >/dev/null
echo "    $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"

gauge() { curl -sf -H "Authorization: Bearer bench" "$metrics" | awk -v n="softswitch_$1" '$1 == n { print $2 }'; }
start_switch() {
    "$bin" run 2>>"$tmp/switch.log" &
    sw=$!
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null -H "Authorization: Bearer bench" "$metrics" && return 0
        kill -0 "$sw" 2>/dev/null || break
        sleep 0.2
    done
    cat "$tmp/switch.log" >&2
    exit 1
}
# Stops the switch and forgets the bindings the last phase left (a closed
# flow's binding stays until it expires, and a start loads them all), so
# every phase starts from the same database.
stop_switch() {
    kill "$sw" 2>/dev/null || true
    wait "$sw" 2>/dev/null || true
    sw=
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM bindings"); c.commit()' \
        "$tmp/data/softswitch.db"
}
# Waits until the switch has no connection left (after the generator
# closed them all); prints the seconds it took and its memory then.
drained() {
    local t0 n
    t0=$(date +%s.%N)
    for _ in $(seq 1 600); do
        n=$(gauge sip_connections)
        [[ ${n:-1} == 0 ]] && break
        sleep 0.2
    done
    printf '{"connections": %s, "drain_secs": %s, "registered": %s, "vm_rss_kb": %s, "rss_anon_kb": %s}\n' \
        "${n:-null}" "$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")" "$(gauge sip_registered_accounts)" \
        "$(awk '/^VmRSS:/ {print $2}' /proc/$sw/status)" "$(awk '/^RssAnon:/ {print $2}' /proc/$sw/status)"
}

# A first start compiles the routing guest into the cache: every measured
# start after it begins from the same memory.
start_switch
stop_switch

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)," \
    "open files $(ulimit -n), load before: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%d %b %Y %H:%M UTC')"

for transport in $HOLD_TRANSPORTS; do
    port=$wss; [[ $transport == tls ]] && port=$tls
    start_switch
    echo "==> hold: $CONNECTIONS $transport connections, keep-alive every $KEEPALIVE s, $HOLD s (switch pid $sw, load $(cut -d' ' -f1 /proc/loadavg))"
    "$load" hold "$CONNECTIONS" --transport "$transport" --addr "127.0.0.1:$port" \
        --cert "$tmp/data/tls/self-signed-cert.pem" --hold-secs "$HOLD" --keepalive-secs "$KEEPALIVE" \
        --concurrency "$OPEN_CONCURRENCY" --per-source "$PER_SOURCE" --pid "$sw" \
        --metrics "$metrics" --token bench >"$tmp/hold-$transport.json"
    drained >"$tmp/drain-$transport.json"
    stop_switch
done

if [[ -n $RATES ]]; then
    start_switch
    echo "==> REGISTER/s, pool of $POOL connections, $DURATION s a step, wss then tls, $REPEAT time(s) (switch pid $sw, load $(cut -d' ' -f1 /proc/loadavg))"
    for _ in $(seq 1 "$REPEAT"); do
        for rate in $RATES; do
            for transport in wss tls; do
                port=$wss; first=$((CONNECTIONS + 1)); src=300
                [[ $transport == tls ]] && { port=$tls; first=$((CONNECTIONS + POOL + 1)); src=400; }
                "$load" register-rate "$rate" "$DURATION" "$transport" --addr "127.0.0.1:$port" \
                    --cert "$tmp/data/tls/self-signed-cert.pem" --conns "$POOL" --first-user "$first" \
                    --first-source "$src" --pid "$sw" >>"$tmp/rates.json"
            done
            echo "    $(date -u +%H:%M:%S) rate ${rate/#0/max} done, load $(cut -d' ' -f1 /proc/loadavg)"
        done
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$tmp" "$HOLD_TRANSPORTS" <<'PY'
import json, sys, os
tmp, transports = sys.argv[1], sys.argv[2].split()
mib = lambda kb: f"{kb / 1024:,.0f}"
print("\nHeld connections (memory of the switch: before opening / with all held; per connection = the difference / registered)")
print("| transport | registered / N | opened in | alive at end | dropped | pongs / pings | VmRSS before / held (MiB) | RssAnon before / held (MiB) | per connection VmRSS / RssAnon | switch CPU opening / holding | keep-alives/s | after close: connections gone in, RssAnon, accounts still registered |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in transports:
    path = os.path.join(tmp, f"hold-{t}.json")
    if not os.path.exists(path):
        continue
    h = json.load(open(path)); s = h["switch"]; b, held = s["before"], s["held"]
    d = json.load(open(os.path.join(tmp, f"drain-{t}.json")))
    print(f"| {t} | {h['registered']:,} / {h['n']:,} | {h['open_secs']} s ({h['opened_per_sec']:,.0f}/s) | {h['alive_at_end']:,} "
          f"| {h['dropped_in_hold']} | {h['pongs']:,} / {h['pings']:,} | {mib(b['vm_rss_kb'])} / {mib(held['vm_rss_kb'])} "
          f"| {mib(b['rss_anon_kb'])} / {mib(held['rss_anon_kb'])} | {s['vm_rss_per_conn_bytes'] / 1024:.1f} / {s['rss_anon_per_conn_bytes'] / 1024:.1f} KiB "
          f"| {s['cpu_s_opening']} s / {s['cpu_s_holding']} s | {h['keepalives_per_sec_in_hold']:,.0f} | {d['drain_secs']} s, {mib(d['rss_anon_kb'] or 0)} MiB, {d['registered']} |")
    if h["errors"]:
        print(f"  {t} errors: {h['errors']}")
    print(f"  {t} gauges held: {s['gauges_held']}; switch fds held {held['fds']}, threads {held['threads']}; "
          f"generator VmRSS held {mib(h['client']['held']['vm_rss_kb'])} MiB")
print("\nREGISTER transactions/s (each REGISTER, 401, REGISTER with credentials, 200); target 0 = as fast as the pool goes")
print("| target/s | WSS done/s | WSS p50 / p99 (ms) | WSS failed | WSS switch CPU, µs/reg; generator CPU | TLS done/s | TLS p50 / p99 (ms) | TLS failed | TLS switch CPU, µs/reg; generator CPU | WSS / TLS |")
print("|---|---|---|---|---|---|---|---|---|---|")
rates = os.path.join(tmp, "rates.json")
rows = [json.loads(l) for l in open(rates) if l.strip()] if os.path.exists(rates) else []
for w, t in zip(rows[0::2], rows[1::2]):
    rate = w["target_rate"]
    cell = lambda r: (f"{r['rate']:,.0f} | {r['p50_ms']} / {r['p99_ms']} | {r['failed']} | {r['switch_cpu_pct']:.0f} %, {r['switch_cpu_us_per_register']:.0f}; {r['client_cpu_pct']:.0f} %"
                      if r else "- | - | - | -")
    ratio = f"{w['rate'] / t['rate']:.2f}" if w and t and t["rate"] else "-"
    print(f"| {rate or 'max'} | {cell(w)} | {cell(t)} | {ratio} |")
for r in rows:
    if r["errors"]:
        print(f"  {r['transport']} at {r['target_rate']}: {r['errors']}")
PY
