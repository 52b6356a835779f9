#!/usr/bin/env bash
# Push with a release build against the local stand-ins
# (host/examples/push_standin.rs, same machine, HTTP/2 over TLS):
#  1. pushes per second: ROUNDS test pushes to a user with DEVICES APNs
#     tokens (DEVICES pushes each), timed from the first to the last push
#     the stand-in received; the switch's own request latency from
#     softswitch_push_request_seconds;
#  2. baseline in the same run: the stand-in's ceiling, the same number of
#     HTTP/2 POSTs from one reqwest client with the switch's in-flight
#     limit (push_standin baseline);
#  3. CALLS calls to an offline user with a PushKit token: time from the
#     caller's (authenticated) INVITE to the VoIP push at the stand-in, and
#     from the woken device's (authenticated) INVITE with Replaces to its
#     200 OK, from SIPp's message traces.
# Knobs: DEVICES (200), ROUNDS (5), CALLS (10); BUILD=0 reuses the last release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
DEVICES=${DEVICES:-200}
ROUNDS=${ROUNDS:-5}
CALLS=${CALLS:-10}

if [[ ${BUILD:-1} != 0 ]]; then
    ./scripts/setup.sh >/dev/null
    ./scripts/build-guests.sh >/dev/null
    cargo build -q --release -p softswitch --bin softswitch --example push_standin
fi
bin=$root/target/release/softswitch
standin=$root/target/release/examples/push_standin

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/scripts/lib/ports.sh"
admin=$(free_port); sip=$(free_sip_port)

"$standin" "$tmp/standin" >"$tmp/pushes.txt" 2>"$tmp/standin.err" &
pids+=($!)
for _ in $(seq 1 100); do [[ -f $tmp/standin/push.toml ]] && break; sleep 0.1; done

cat >"$tmp/softswitch.toml" <<TOML
[plugins]
cache_dir = "$tmp/cache"
[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
tls = ["127.0.0.1:0"]
wss = []
[api]
listen = []
[admin]
listen = "127.0.0.1:$admin"
token = "bench"
[stun]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
[guests.routing]
path = "$root/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
cat "$tmp/standin/push.toml" >>"$tmp/softswitch.toml"
export SOFTSWITCH_CONFIG=$tmp/softswitch.toml SOFTSWITCH_DATA_DIR=$tmp/data RUST_LOG=warn

"$bin" account add alice --password alice-pw >/dev/null
"$bin" account add bob --password bob-pw >/dev/null
"$bin" account add carol --password carol-pw >/dev/null
for i in $(seq 1 "$DEVICES"); do
    printf -v token '%064x' "$i"
    "$bin" push token-add carol "dev$i" apns "$token" --app net.example.softphone >/dev/null
done
printf -v token '%064x' 999999
"$bin" push token-add bob iphone apns "$token" --app net.example.softphone --voip >/dev/null
"$bin" run 2>"$tmp/switch.log" &
pids+=($!)
for _ in $(seq 1 300); do
    curl -sf -H 'Authorization: Bearer bench' "http://127.0.0.1:$admin/metrics" >/dev/null && break
    sleep 0.2
done

echo "==> $ROUNDS rounds of $DEVICES pushes"
for r in $(seq 1 "$ROUNDS"); do
    before=$(grep -c '/3/device/' "$tmp/pushes.txt" || true)
    "$bin" push test carol --text "bench round $r" >/dev/null
    for _ in $(seq 1 600); do
        now=$(grep -c '/3/device/' "$tmp/pushes.txt" || true)
        ((now >= before + DEVICES)) && break
        sleep 0.05
    done
done
curl -sf -H 'Authorization: Bearer bench' "http://127.0.0.1:$admin/metrics" >"$tmp/metrics.txt"

echo "==> baseline: the stand-in's ceiling from one HTTP/2 client, 32 in flight"
"$standin" "$tmp/baseline" baseline $((DEVICES * ROUNDS)) 32 2>/dev/null | tail -1 >"$tmp/baseline.json"

echo "==> $CALLS parked calls picked with Replaces"
printf 'SEQUENTIAL\nalice;alice-pw;[authentication username=alice password=alice-pw]\n' >"$tmp/alice.csv"
printf 'SEQUENTIAL\nbob;bob-pw;[authentication username=bob password=bob-pw]\n' >"$tmp/bob.csv"
for c in $(seq 1 "$CALLS"); do
    before=$(grep -c ' incoming-call ' "$tmp/pushes.txt" || true)
    sipp "127.0.0.1:$sip" -sf tests/sipp/call_uac.xml -inf "$tmp/alice.csv" -s bob \
        -key domain localhost -m 1 -d 500 -nostdin -timeout 30 -timeout_error \
        -trace_msg -message_file "$tmp/caller-$c.log" >/dev/null 2>&1 &
    caller=$!
    call_id=""
    for _ in $(seq 1 200); do
        now=$(grep -c ' incoming-call ' "$tmp/pushes.txt" || true)
        if ((now > before)); then
            call_id=$(grep ' incoming-call ' "$tmp/pushes.txt" | tail -1 | awk '{print $7}')
            break
        fi
        sleep 0.05
    done
    [[ -n $call_id ]] || { echo "no push for call $c" >&2; tail -20 "$tmp/switch.log" >&2; exit 1; }
    sed "s/PARKED_CALL_ID/$call_id/" tests/sipp/pickup_uac.xml >"$tmp/pickup.xml"
    sipp "127.0.0.1:$sip" -sf "$tmp/pickup.xml" -inf "$tmp/bob.csv" -s alice \
        -key domain localhost -m 1 -nostdin -timeout 30 -timeout_error \
        -trace_msg -message_file "$tmp/pickup-$c.log" >/dev/null 2>&1
    wait "$caller"
done

python3 - "$tmp" "$DEVICES" "$ROUNDS" "$CALLS" <<'PY'
import datetime, json, re, sys
tmp, devices, rounds, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = [l.split() for l in open(f"{tmp}/pushes.txt") if "/3/device/" in l]
tests = [int(l[0]) for l in lines if l[4] == "text"]
per_round = [tests[i * devices:(i + 1) * devices] for i in range(rounds)]
rates = [(len(r) - 1) / ((r[-1] - r[0]) / 1000) for r in per_round if len(r) > 1 and r[-1] > r[0]]
best = max(rates)
base = json.load(open(f"{tmp}/baseline.json"))
# p50/p99 of the switch's request time, from the histogram buckets.
buckets = []
for l in open(f"{tmp}/metrics.txt"):
    m = re.match(r'softswitch_push_request_seconds_bucket\{([^}]*)\} (\d+)', l)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1])) if m else {}
    if labels.get("provider") == "apns":
        le = labels["le"]
        buckets.append((float("inf") if le == "+Inf" else float(le), int(m[2])))
total = buckets[-1][1] if buckets else 0
def q(p):
    for le, n in buckets:
        if n >= p * total:
            return le * 1000
print(f"pushes: {len(tests)} in {rounds} rounds of {devices}; best round {best:.0f}/s "
      f"(rounds: {', '.join(f'{r:.0f}' for r in rates)}); request time p50 <= {q(0.5)} ms, p99 <= {q(0.99)} ms (bucket bounds)")
print(f"baseline: {base['per_second']:.0f} POSTs/s from one client, p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms "
      f"-> the switch reaches {best / base['per_second']:.2f} of the stand-in's ceiling")

def trace(path):
    """(time, direction, first line) of each message in a SIPp -trace_msg file."""
    out, text = [], open(path, errors="replace").read()
    for block in text.split("----------------------------------------------- ")[1:]:
        head, _, rest = block.partition("\n")
        ts = datetime.datetime.strptime(head.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        direction, _, msg = rest.partition("\n")
        first = msg.strip().split("\n")[0] if msg.strip() else ""
        out.append((ts, "sent" if "sent" in direction else "recv", first.strip(), msg))
    return out
push_times = [int(l[0]) / 1000 for l in lines if l[4] == "incoming-call"]
to_push, pick = [], []
for c in range(1, calls + 1):
    t = trace(f"{tmp}/caller-{c}.log")
    invite = [m for m in t if m[1] == "sent" and m[2].startswith("INVITE") and "Proxy-Authorization" in m[3]]
    if invite and c <= len(push_times):
        to_push.append((push_times[c - 1] - invite[0][0]) * 1000)
    p = trace(f"{tmp}/pickup-{c}.log")
    inv = [m for m in p if m[1] == "sent" and m[2].startswith("INVITE") and "Proxy-Authorization" in m[3]]
    ok = [m for m in p if m[1] == "recv" and m[2].startswith("SIP/2.0 200")]
    if inv and ok:
        pick.append((ok[0][0] - inv[0][0]) * 1000)
def med(v):
    v = sorted(v)
    return v[len(v) // 2] if v else float("nan")
print(f"calls: {len(to_push)} INVITE -> VoIP push at the stand-in: median {med(to_push):.1f} ms, max {max(to_push):.1f} ms; "
      f"{len(pick)} pickup INVITE (Replaces) -> 200 OK: median {med(pick):.1f} ms, max {max(pick):.1f} ms")
PY
