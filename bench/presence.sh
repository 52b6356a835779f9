#!/usr/bin/env bash
# Presence fan-out and buddy-list size, with SIPp as watchers and presentity:
#  1. N_WATCHERS (1000) accounts each SUBSCRIBE to bob's presence (TCP), bob
#     PUBLISHes three changes (open, closed, removal); for each change the
#     switch logs how long it took from the PUBLISH being stored to every
#     watcher's 2xx to its NOTIFY ("presence change notified ... elapsed_ms").
#  2. An owner with N_BUDDIES (500) service users in the address book
#     subscribes to its buddy list (TCP): time from the authenticated SUBSCRIBE
#     to the first (full-state) NOTIFY and to the last NOTIFY of the list.
# Knobs: N_WATCHERS, N_BUDDIES, RATE (SUBSCRIBEs/s, 200), PROFILE (release|debug),
# PORT (5095). Everything is persisted in SQLite under a temporary data dir.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N_WATCHERS=${N_WATCHERS:-1000}
N_BUDDIES=${N_BUDDIES:-500}
RATE=${RATE:-200}
PORT=${PORT:-5095}
PROFILE=${PROFILE:-release}
command -v sipp >/dev/null || ./scripts/setup.sh
./scripts/build-guests.sh
if [ "$PROFILE" = release ]; then cargo build --release -p softswitch; else cargo build -p softswitch; fi
BIN=$PWD/target/$PROFILE/softswitch

WORK=$(mktemp -d)
SW=
trap '[ -n "$SW" ] && kill "$SW" 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
cat > "$WORK/softswitch.toml" <<TOML
[sip]
udp = ["127.0.0.1:$PORT"]
tcp = ["127.0.0.1:$PORT"]
tls = []
wss = []
[admin]
listen = "127.0.0.1:0"
[presence]
# 1,000 strangers watch bob: the address-book rule would need bob to know them all.
watch_policy = "open"
[guests.routing]
path = "$PWD/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
export SOFTSWITCH_CONFIG=$WORK/softswitch.toml SOFTSWITCH_DATA_DIR=$WORK/data

echo "==> $N_WATCHERS watchers, bob, and an owner with $N_BUDDIES buddies"
{
  echo SEQUENTIAL
  for i in $(seq 1 "$N_WATCHERS"); do
    u=$(printf '4870%07d' "$i")
    echo "$u;pw-$u;[authentication username=$u password=pw-$u]"
  done
} > "$WORK/watchers.csv"
printf 'SEQUENTIAL\nbob;bob-pw;[authentication username=bob password=bob-pw]\n' > "$WORK/bob.csv"
printf 'SEQUENTIAL\nowner;owner-pw;[authentication username=owner password=owner-pw]\n' > "$WORK/owner.csv"
"$BIN" account import "$WORK/watchers.csv"
"$BIN" account add bob --password bob-pw >/dev/null
"$BIN" account add owner --password owner-pw --phone 48600999000 >/dev/null
# The watchers' logins are E.164 numbers (generic mode), so they are the
# owner's address-book entries too.
for i in $(seq 1 "$N_BUDDIES"); do printf '+4870%07d;Buddy %d\n' "$i" "$i"; done > "$WORK/book.txt"
"$BIN" contact import owner "$WORK/book.txt"

RUST_LOG=softswitch::sip::presence=info,warn "$BIN" run > "$WORK/softswitch.log" 2>&1 &
SW=$!
sleep 2
kill -0 "$SW" || { cat "$WORK/softswitch.log"; exit 1; }

# The test watcher scenario, holding the subscription for HOLD_MS after the
# initial NOTIFY; the change NOTIFYs (as many as the switch sends: changes
# close together are coalesced) are answered by SIPp's -aa.
HOLD_MS=${HOLD_MS:-$(( (N_WATCHERS / RATE + 12) * 1000 ))}
python3 - "$WORK/watch.xml" "$HOLD_MS" <<'PY'
import sys
text = open("tests/sipp/presence_watch.xml").read()
b = text.index("<!--/NOTIFY-->")
open(sys.argv[1], "w").write(text[:b] + f'<pause milliseconds="{sys.argv[2]}"/>\n' + text[b:])
PY

echo "==> $N_WATCHERS watchers subscribe to bob at $RATE/s"
# TCP, one connection per watcher (TRANSPORT=un for UDP with a socket each): a
# burst of 1,000 datagrams at one SIPp socket overflows its receive buffer,
# and the retransmissions would measure SIPp, not the switch.
sipp 127.0.0.1:$PORT -t "${TRANSPORT:-tn}" -sf "$WORK/watch.xml" -inf "$WORK/watchers.csv" -s bob -key domain localhost \
  -r "$RATE" -m "$N_WATCHERS" -l "$N_WATCHERS" -max_socket $(( N_WATCHERS + 100 )) -aa -nostdin -timeout 120 -timeout_error \
  -trace_err -error_file "$WORK/watch-errors.log" \
  > /dev/null 2>&1 &
WATCH=$!
# Polling the database from another process would slow the writes being
# measured: wait for the time the rate needs, then check once.
sleep $(( N_WATCHERS / RATE + 3 ))
have=$("$BIN" presence subscriptions | wc -l)
echo "    $have subscriptions stored"
[ "$have" -ge "$N_WATCHERS" ] || { echo "not every watcher subscribed"; tail -20 "$WORK/watch-errors.log"; exit 1; }
echo "==> bob publishes open, closed, then removes the publication"
sipp 127.0.0.1:$PORT -sf tests/sipp/presence_publish.xml -inf "$WORK/bob.csv" -key domain localhost \
  -m 1 -l 1 -nostdin -timeout 60 -timeout_error > /dev/null 2>&1
wait "$WATCH" && echo "watchers: all $N_WATCHERS subscribed, were notified and unsubscribed" || echo "watchers: some failed (see $WORK/watch-errors.log with KEEP=1)"
grep 'presence change notified' "$WORK/softswitch.log" | grep 'login="\?bob' \
  | sed -E 's/.*watchers=([0-9]+) notified=([0-9]+) built_ms=([0-9.]+) elapsed_ms=([0-9.]+).*/fan-out: \1 NOTIFYs built in \3 ms, \2 answered 2xx after \4 ms/'

echo "==> owner subscribes to a list of $N_BUDDIES buddies (TCP)"
sipp 127.0.0.1:$PORT -t t1 -sf bench/presence_list_watch.xml -inf "$WORK/owner.csv" -s owner-buddies \
  -key domain localhost -m 1 -l 1 -nostdin -timeout 60 -timeout_error \
  -trace_msg -message_file "$WORK/list.log" > /dev/null 2>&1 || echo "list watcher failed"
python3 - "$WORK/list.log" <<'PY'
import re, sys
from datetime import datetime
blocks = open(sys.argv[1]).read().split("-----------------------------------------------")
def stamp(b):
    return datetime.strptime(b.strip().splitlines()[0].strip(), "%Y-%m-%d %H:%M:%S.%f")
sent = next(stamp(b) for b in blocks if "message sent" in b and "CSeq: 2 SUBSCRIBE" in b)
notifies = [b for b in blocks if "message received" in b and "\nNOTIFY " in b and "terminated" not in b]
first, last = stamp(notifies[0]), stamp(notifies[-1])
full = notifies[0]
members = full.count("<resource ")
states = sum(b.count("application/pidf+xml") for b in notifies)
print(f"buddy list: {members} members listed, {states} documents in {len(notifies)} NOTIFYs; "
      f"first (full-state) NOTIFY after {(first - sent).total_seconds() * 1000:.1f} ms, "
      f"last after {(last - sent).total_seconds() * 1000:.1f} ms")
PY
