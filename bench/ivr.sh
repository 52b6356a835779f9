#!/usr/bin/env bash
# Concurrent IVR sessions on the media engine: N G.711 (A-law) endpoints,
# each playing a prompt (a 10 s sine, looped) and recording at the same
# time, against a load generator acting as the N phones (20 ms packets to
# each endpoint, every endpoint's packets received and stamped by the
# kernel on arrival); and, as the baseline in the same run, N plain relayed
# streams (media::Relay, one-way A->B: as many packets in and out as an IVR
# session). One process per step (media/examples/ivr_bench.rs): the media
# side on a tokio runtime of WORKERS threads, the generator on two threads
# (sendmmsg paced every 250 us, recvmmsg; Linux only).
# Prints per N, kind and repeat: packets/s out, loss (by RTP timestamp),
# jitter of the outgoing packets, |arrival gap - 20 ms| p50/p99/max, the
# streams whose own p99 is over 5 ms, CPU of the runtime, of the generator
# and of everything else (% of one core), the runtime's CPU per packet, and
# whether the step holds: loss < 0.1 %, jitter p99 < 5 ms, >= 99 % of
# N x 50 packets/s out. Then the highest N that held in every run, per
# kind, and the ratio ivr/relay.
# Knobs: SESSIONS_SET ("250 500 1000 1500"), KINDS ("ivr relay"), REPEAT
# (1: runs of each step), WARMUP (3), DURATION (20), DRAIN (1), RAMP (1: the
# endpoints are opened evenly over it, so their ticks fall at random
# phases), WORKERS (2), CODEC (pcma), PORT_MIN/PORT_MAX (30000/39999, apart
# from a switch's range; ivr takes 2 ports per session, relay 4 per
# stream), QUIET_LOAD (wait up to QUIET_WAIT s before each run for the 1-min
# load average to fall below it; unset: no wait).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SESSIONS_SET=${SESSIONS_SET:-"250 500 1000 1500"}
KINDS=${KINDS:-"ivr relay"}
REPEAT=${REPEAT:-1}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-20}
DRAIN=${DRAIN:-1}
RAMP=${RAMP:-1}
WORKERS=${WORKERS:-2}
CODEC=${CODEC:-pcma}
PORT_MIN=${PORT_MIN:-30000}
PORT_MAX=${PORT_MAX:-39999}
QUIET_WAIT=${QUIET_WAIT:-300}

max_n=0
for n in $SESSIONS_SET; do ((n > max_n)) && max_n=$n; done
# One process holds the relay's 4 sockets per stream (2 per endpoint) and
# the generator's 2.
need=$((4 * max_n + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && ((hard < need)); then
  echo "==> the hard limit on open files ($hard) is below the $need needed for $max_n streams" >&2
  exit 1
fi
ulimit -n "$need"

cargo build --release -p media --example ivr_bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/ivr_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }
wait_quiet() {
  [ -n "${QUIET_LOAD:-}" ] || return 0
  local waited=0
  while awk -v l="$(load1)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l >= q) }' && ((waited < QUIET_WAIT)); do
    sleep 5
    waited=$((waited + 5))
  done
}

# run <kind> <N> <repeat>: one step; appends its line to results.
run() {
  local kind=$1 n=$2 r=$3
  wait_quiet
  local load_before at line
  load_before=$(load1)
  at=$(date -u +%H:%M:%S)
  line=$("$BIN" "$kind" --sessions "$n" --warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN" \
    --ramp "$RAMP" --workers "$WORKERS" --codec "$CODEC" --port-min "$PORT_MIN" --port-max "$PORT_MAX" \
    2> "$WORK/log")
  echo "$line run=$r at=$at load1=$load_before" | tee -a "$WORK/results"
  sed 's/^/    /' "$WORK/log"
}

echo "==> $(date -u '+%d %b %Y %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> kinds: $KINDS; sessions: $SESSIONS_SET; $REPEAT run(s) each; $CODEC; $WORKERS workers;" \
  "${WARMUP} s warm-up, ${DURATION} s measured"
for n in $SESSIONS_SET; do
  for r in $(seq "$REPEAT"); do
    for kind in $KINDS; do run "$kind" "$n" "$r"; done
  done
done

echo
awk -v kinds="$KINDS" '
  function kv(line, k,   i, a, n) {
    n = split(line, a, " ")
    for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2)
    return ""
  }
  {
    n = kv($0, "sessions") + 0; l = kv($0, "label"); r = kv($0, "run")
    if (!(n in seen)) { seen[n] = 1; order[++count] = n }
    key = l SUBSEP n SUBSEP r; runs[l, n] = runs[l, n] " " r
    line[key] = $0
  }
  END {
    nk = split(kinds, kind, " ")
    printf "%6s %-6s %3s %8s %5s %6s %7s %6s %6s %6s %5s %4s %4s %5s %6s %5s\n", "N", "kind", "run", "UTC", \
      "load", "pps", "loss%", "p50ms", "p99ms", "maxms", ">5ms", "rt", "gen", "other", "us/pkt", "holds"
    for (i = 1; i <= count; i++) {
      n = order[i]
      for (k = 1; k <= nk; k++) {
        l = kind[k]
        if (!((l, n) in runs)) continue
        m = split(runs[l, n], rs, " ")
        all = 1
        for (j = 1; j <= m; j++) {
          x = line[l, n, rs[j]]
          printf "%6d %-6s %3s %8s %5s %6.0f %7.3f %6.2f %6.2f %6.1f %5d %4.0f %4.0f %5.0f %6.2f %5s\n", n, l, rs[j], \
            kv(x, "at"), kv(x, "load1"), kv(x, "received_pps"), kv(x, "loss_pct"), kv(x, "jitter_p50_us") / 1000, \
            kv(x, "jitter_p99_us") / 1000, kv(x, "jitter_max_us") / 1000, kv(x, "streams_p99_over5ms"), \
            kv(x, "rt_cpu"), kv(x, "send_cpu") + kv(x, "recv_cpu"), kv(x, "other_cpu"), kv(x, "rt_us_per_packet"), \
            kv(x, "holds") == "yes" ? "+" : "-"
          if (kv(x, "holds") != "yes") all = 0
        }
        if (all && n > best[l]) best[l] = n
      }
    }
    print "pps: packets/s out of the media side (expected N x 50); loss by RTP timestamp; p50/p99/max: jitter"
    print "|arrival gap - 20 ms| of the outgoing packets (kernel receive stamps); >5ms: streams whose own p99 is"
    print "over 5 ms; CPU in % of one core: rt the media runtime, gen the generator (send + receive threads),"
    print "other the rest of the machine; us/pkt: runtime CPU per packet in or out; holds: loss < 0.1 %, p99 < 5 ms,"
    print ">= 99 % of N x 50 packets/s out"
    for (k = 1; k <= nk; k++) {
      l = kind[k]
      printf "highest N held in every run: %-6s %6d", l, best[l]
      if (l != "relay" && best["relay"]) printf "; ratio to relay %.2f", best[l] / best["relay"]
      printf "\n"
    }
  }' "$WORK/results"
echo "==> done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
