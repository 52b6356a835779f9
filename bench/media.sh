#!/usr/bin/env bash
# The media relay under load: concurrent 20 ms G.711 streams (172-byte RTP
# packets, 50/s each) relayed on loopback. For each N, each server of KINDS
# in turn, each in its own process (media/examples/relay_bench.rs), driven by
# one generator process (two unconnected sockets, one facing all relay A
# ports and one all B ports, sendmmsg paced every 250 us from SENDERS
# threads, recvmmsg on a blocking thread; Linux only):
#   direct        no relay: the generator sends straight to its own receiving
#                 socket (the floor; added latency is read against it)
#   echo          a plain tokio UDP forwarder of the relay's shape (the
#                 ceiling of a user-space relay)
#   relay         media::Relay, user space
#   relay-kernel  media::Relay with kernel forwarding (nftables; root)
# A stream is one-way, A->B; DIRECTION=both makes each relay stream carry
# B->A too, counted as two streams.
# Prints per N and server: packets/s received, loss, one-way latency p50/p99
# (µs), CPU of the server, of the generator and of everything else (% of one
# core), whether the step holds and the latency added to `direct`; then the
# highest N that holds per server and its ratio to the echo's. A step "holds"
# when loss < 0.1 %, the generator kept pace (offered >= 99 % of N x 50/s) and
# p99 < 20 ms; a lost packet is one not received by the end of the window +
# DRAIN.
# Knobs: STREAMS_SET ("500 1000 2000 3000 4000"), WARMUP (3), DURATION (20),
# DRAIN (1), DIRECTION (oneway|both), PORT_MIN (12000), WORKERS (cores),
# SENDERS (1: the generator's sender threads; 2 for relay-kernel at 100,000
# packets/s, whose forwarding runs inside the generator's sends), KINDS
# ("direct echo relay", plus relay-kernel as root), QUIET_LOAD (wait up to
# QUIET_WAIT s before each step for the 1-min load average to fall below it;
# unset: no wait).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STREAMS_SET=${STREAMS_SET:-"500 1000 2000 3000 4000"}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-20}
DRAIN=${DRAIN:-1}
DIRECTION=${DIRECTION:-oneway}
PORT_MIN=${PORT_MIN:-12000}
QUIET_WAIT=${QUIET_WAIT:-120}
SENDERS=${SENDERS:-1}
# relay-kernel: the relay with kernel forwarding (nftables), root only.
if [ -z "${KINDS:-}" ]; then
  KINDS="direct echo relay"
  if [ "$(id -u)" = 0 ] && command -v nft > /dev/null; then
    KINDS="$KINDS relay-kernel"
  else
    echo "==> not root (or no nft): relay-kernel left out; KINDS chooses the servers" >&2
  fi
fi

max_n=0
for n in $STREAMS_SET; do ((n > max_n)) && max_n=$n; done
# The relay holds 4 sockets per stream (RTP and RTCP on each side); the
# generator only 2 in all. Each is its own process.
need=$((4 * max_n + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && ((hard < need)); then
  echo "==> the hard limit on open files ($hard) is below the $need the relay needs for $max_n streams" >&2
  exit 1
fi
ulimit -n "$need"

cargo build --release -p media --example relay_bench
BIN=$PWD/target/release/examples/relay_bench
args=()
[ "$DIRECTION" = both ] && args+=(--both)
[ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS") || workers=()

# SERVER_CPUS / LOAD_CPUS (taskset lists, e.g. 0 and 1) give the server and
# the generator a core each, so the figure says what the relay does with one
# core of its own rather than how the two share the machine.
server_pin=() load_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${LOAD_CPUS:-}" ] && load_pin=(taskset -c "$LOAD_CPUS")
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }
wait_quiet() {
  [ -n "${QUIET_LOAD:-}" ] || return 0
  local waited=0
  while awk -v l="$(load1)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l >= q) }' && ((waited < QUIET_WAIT)); do
    sleep 5
    waited=$((waited + 5))
  done
}

# run <echo|relay> <N>: one step; appends the generator's line to results.
run() {
  local kind=$1 n=$2 ports=$WORK/ports-$1-$2
  wait_quiet
  local load_before
  load_before=$(load1)
  "${server_pin[@]}" "$BIN" "$kind" --streams "$n" --ports-file "$ports" --port-min "$PORT_MIN" "${workers[@]}" \
    2> "$WORK/$kind-$n.log" &
  SERVER=$!
  for _ in $(seq 200); do [ -f "$ports" ] && break; sleep 0.1; done
  [ -f "$ports" ] || { cat "$WORK/$kind-$n.log"; exit 1; }
  local line
  line=$("${load_pin[@]}" "$BIN" load --streams "$n" --ports-file "$ports" --warmup "$WARMUP" --duration "$DURATION" \
    --drain "$DRAIN" --senders "$SENDERS" --server-pid "$SERVER" --label "$kind" "${args[@]}")
  kill -INT "$SERVER"
  wait "$SERVER" || true
  SERVER=
  echo "$line load1=$load_before" | tee -a "$WORK/results"
  sed 's/^/    /' "$WORK/$kind-$n.log"
}

echo "==> $(date -u '+%d %b %Y %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> servers: $KINDS; streams: $STREAMS_SET; $DIRECTION; ${WARMUP} s warm-up, ${DURATION} s measured"
for n in $STREAMS_SET; do
  for kind in $KINDS; do run "$kind" "$n"; done
done

echo
awk -v per=50 -v kinds="$KINDS" '
  function kv(line, k,   i, a, n) {
    n = split(line, a, " ")
    for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2) + 0
    return ""
  }
  function label_of(line,   i, a, n) {
    n = split(line, a, " ")
    for (i = 1; i <= n; i++) if (index(a[i], "label=") == 1) return substr(a[i], 7)
    return ""
  }
  # A step holds when loss < 0.1 %, the generator offered >= 99 % of N x 50
  # packets/s (it kept pace) and p99 stays under one packet time (20 ms):
  # beyond that queues are growing and a jitter buffer would drop the packets.
  function holds(l, n) { return loss[l, n] < 0.1 && off[l, n] >= 0.99 * n * per && p99[l, n] < 20000 }
  {
    n = kv($0, "streams"); label = label_of($0)
    if (!(n in seen)) { seen[n] = 1; order[++count] = n }
    pps[label, n] = kv($0, "received_pps"); off[label, n] = kv($0, "offered_pps")
    loss[label, n] = kv($0, "loss_pct"); p50[label, n] = kv($0, "p50_us"); p99[label, n] = kv($0, "p99_us")
    cpu[label, n] = kv($0, "server_cpu"); gen[label, n] = kv($0, "load_cpu"); oth[label, n] = kv($0, "other_cpu")
  }
  END {
    nk = split(kinds, kind, " ")
    printf "%6s %-13s %7s %7s %6s %6s %4s %4s %5s %5s | %s\n", "N", "server", "pps", "loss%", "p50us", "p99us", \
      "cpu", "gen", "other", "holds", "added vs direct p50/p99 us"
    for (i = 1; i <= count; i++) {
      n = order[i]
      for (k = 1; k <= nk; k++) {
        l = kind[k]
        if (!((l, n) in pps)) continue
        printf "%6d %-13s %7.0f %7.3f %6.0f %6.0f %4.0f %4.0f %5.0f %5s | ", n, l, pps[l, n], loss[l, n], \
          p50[l, n], p99[l, n], cpu[l, n], gen[l, n], oth[l, n], holds(l, n) ? "+" : "-"
        if (l != "direct" && (("direct", n) in pps)) printf "%.0f / %.0f", p50[l, n] - p50["direct", n], p99[l, n] - p99["direct", n]
        printf "\n"
        if (holds(l, n) && n > best[l]) best[l] = n
      }
    }
    print "pps: packets/s received in the window; cpu: the server process, gen: the generator, other: everything"
    print "else on the machine (% of one core); holds: loss < 0.1 %, offered >= 99 % of N x 50/s, p99 < 20 ms"
    for (k = 1; k <= nk; k++) {
      l = kind[k]
      printf "highest N that holds: %-13s %6d (%.0f pps)", l, best[l], pps[l, best[l]]
      if (l != "echo" && best["echo"]) printf "; ratio to echo %.2f", best[l] / best["echo"]
      printf "\n"
    }
  }' "$WORK/results"
echo "==> done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
