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
# N x 50 packets/s out. How late the phones sent is printed (gen_lag_*;
# GEN_PRIORITY=fifo runs the sender SCHED_FIFO, which keeps the phones on
# time but costs the media side more on 2 cores). A run during which the rest
# of the machine used more than NOISY_CPU % of a core is marked noisy and
# run again, up to RETRIES times (every run is printed). Then, per kind,
# the highest N that held in every clean run, and in every run, and the
# ratio ivr/relay.
# Knobs: SESSIONS_SET ("250 500 1000 1500"), KINDS ("ivr relay"), REPEAT
# (1: runs of each step), WARMUP (3), DURATION (20), DRAIN (1), RAMP (1: the
# endpoints are opened evenly over it, so their ticks fall at random
# phases), WORKERS (2), CODEC (pcma), PORT_MIN/PORT_MAX (30000/39999, apart
# from a switch's range; ivr takes 2 ports per session, relay 4 per
# stream), QUIET_LOAD (wait up to QUIET_WAIT s before each run for the 1-min
# load average to fall below it; unset: no wait), NOISY_CPU (25), RETRIES
# (2), GEN_PRIORITY (normal|fifo), RESULTS (a file the result lines are
# appended to; kept after the run), SUMMARY_ONLY (a results file: print its
# table, run nothing).
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
NOISY_CPU=${NOISY_CPU:-25}
RETRIES=${RETRIES:-2}
GEN_PRIORITY=${GEN_PRIORITY:-normal}

# The table and the verdict, from the result lines.
summary() {
  awk -v kinds="$KINDS" '
  function kv(line, k,   i, a, n) {
    n = split(line, a, " ")
    for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2)
    return ""
  }
  {
    n = kv($0, "sessions") + 0; l = kv($0, "label")
    if (!(n in seen)) { seen[n] = 1; order[++count] = n }
    line[l, n, ++runs[l, n]] = $0
  }
  END {
    nk = split(kinds, kind, " ")
    printf "%6s %-6s %5s %8s %5s %6s %7s %6s %6s %6s %5s %6s %6s %4s %4s %5s %6s %5s\n", "N", "kind", "run", \
      "UTC", "load", "pps", "loss%", "p50ms", "p99ms", "maxms", ">5ms", "lagms", "rtlag", "rt", "gen", "other", \
      "us/pkt", "holds"
    for (i = 1; i <= count; i++) {
      n = order[i]
      for (k = 1; k <= nk; k++) {
        l = kind[k]
        all = 1; clean = 1; cleans = 0
        for (j = 1; j <= runs[l, n]; j++) {
          x = line[l, n, j]
          ok = kv(x, "holds") == "yes"; noisy = kv(x, "noisy") == 1
          printf "%6d %-6s %5s %8s %5s %6.0f %7.3f %6.2f %6.2f %6.1f %5d %6.2f %6.2f %4.0f %4.0f %5.0f %6.2f %5s\n", n, l, \
            kv(x, "run") (kv(x, "try") > 0 ? "." kv(x, "try") : ""), kv(x, "at"), kv(x, "load1"), \
            kv(x, "received_pps"), kv(x, "loss_pct"), kv(x, "jitter_p50_us") / 1000, kv(x, "jitter_p99_us") / 1000, \
            kv(x, "jitter_max_us") / 1000, kv(x, "streams_p99_over5ms"), kv(x, "gen_lag_p99_us") / 1000, \
            kv(x, "rt_lag_p99_us") / 1000, \
            kv(x, "rt_cpu"), kv(x, "send_cpu") + kv(x, "recv_cpu"), kv(x, "other_cpu"), kv(x, "rt_us_per_packet"), \
            (ok ? "+" : "-") (noisy ? "~" : "")
          if (!ok) all = 0
          if (!noisy) { cleans++; if (!ok) clean = 0 }
        }
        if (runs[l, n] && all && n > best[l]) best[l] = n
        if (cleans && clean && n > bestc[l]) bestc[l] = n
      }
    }
    print "run: repeat[.retry]; pps: packets/s out of the media side (expected N x 50); loss by RTP timestamp;"
    print "p50/p99/max: jitter |arrival gap - 20 ms| of the outgoing packets (kernel receive stamps); >5ms: streams"
    print "whose own p99 is over 5 ms; lagms: p99 lateness of the phones sends; rtlag: p99 lateness of a 5 ms tokio"
    print "timer on the media runtime (1 ms grain); CPU in % of one core: rt the media runtime, gen the generator"
    print "(send + receive threads), other the rest of the machine; us/pkt: runtime CPU per packet in or out;"
    print "holds: + when loss < 0.1 %, p99 < 5 ms, >= 99 % of N x 50 packets/s out; ~: noisy (other > NOISY_CPU)"
    for (k = 1; k <= nk; k++) {
      l = kind[k]
      printf "highest N held: %-6s in every clean run %6d, in every run %6d", l, bestc[l], best[l]
      if (l != "relay" && bestc["relay"]) printf "; ratio to relay (clean runs) %.2f", bestc[l] / bestc["relay"]
      printf "\n"
    }
  }' "$1"
}

if [ -n "${SUMMARY_ONLY:-}" ]; then
  summary "$SUMMARY_ONLY"
  exit 0
fi

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
RESULTS=${RESULTS:-$WORK/results}

load1() { cut -d' ' -f1 /proc/loadavg; }
wait_quiet() {
  [ -n "${QUIET_LOAD:-}" ] || return 0
  local waited=0
  while awk -v l="$(load1)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l >= q) }' && ((waited < QUIET_WAIT)); do
    sleep 5
    waited=$((waited + 5))
  done
}

# run <kind> <N> <repeat>: one step, run again while noisy (up to
# RETRIES times); appends each run's line to the results.
run() {
  local kind=$1 n=$2 r=$3 try load_before at line noisy
  for try in $(seq 0 "$RETRIES"); do
    wait_quiet
    load_before=$(load1)
    at=$(date -u +%H:%M:%S)
    line=$("$BIN" "$kind" --sessions "$n" --warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN" \
      --ramp "$RAMP" --workers "$WORKERS" --codec "$CODEC" --port-min "$PORT_MIN" --port-max "$PORT_MAX" \
      --gen-priority "$GEN_PRIORITY" 2> "$WORK/log")
    noisy=$(awk -v l="$line" -v max="$NOISY_CPU" 'BEGIN {
      n = split(l, a, " "); for (i = 1; i <= n; i++) if (index(a[i], "other_cpu=") == 1) o = substr(a[i], 11) + 0
      print (o > max) ? 1 : 0 }')
    echo "$line run=$r try=$try noisy=$noisy at=$at load1=$load_before" | tee -a "$RESULTS"
    sed 's/^/    /' "$WORK/log"
    ((noisy)) || break
  done
}

echo "==> $(date -u '+%d %b %Y %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> kinds: $KINDS; sessions: $SESSIONS_SET; $REPEAT run(s) each; $CODEC; $WORKERS workers;" \
  "${WARMUP} s warm-up, ${DURATION} s measured; a run is noisy when the rest of the machine uses > ${NOISY_CPU} %"
for n in $SESSIONS_SET; do
  for r in $(seq "$REPEAT"); do
    for kind in $KINDS; do run "$kind" "$n" "$r"; done
  done
done

echo
summary "$RESULTS"
echo "==> done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
