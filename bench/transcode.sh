#!/usr/bin/env bash
# Concurrent Opus <-> G.711 transcoding channels on the media engine: N
# channels, each an Opus endpoint (48 kHz RTP clock, 20 ms, payload type
# 111) facing a phone bridged to a G.711 endpoint (PCMA) facing a carrier,
# as the switch opens them for a caller speaking only Opus; against a load
# generator acting as both phones (a voice-like clip pre-encoded once, Opus
# as a phone encodes it at 48 kHz / 32 kbit/s, looped: 20 ms packets to
# each endpoint, every endpoint's packets received and stamped by the
# kernel on arrival). Baseline in the same run: the same number of relayed
# calls, i.e. 2N plain relayed one-way streams (media::Relay; as many
# packets in and out of the media side as N channels: 2N x 50/s each way).
# One process per step (media/examples/ivr_bench.rs, kinds transcode and
# relay): the media side on a tokio runtime of WORKERS threads, the
# generator on two threads (sendmmsg paced every 250 us, recvmmsg; Linux
# only). Each process first measures, on one thread, libopus's own 48 kHz
# encode + decode cost per 20 ms frame and what one channel's codec work
# costs in the engine (decode of the phone's stream to 8 kHz, 8 kHz encode
# at complexity 10 as the endpoint does and at 5, G.711), hence the
# ceiling: cores x 20 ms / cost per channel-frame.
# A frame is late when its packet leaves more than 20 ms after its slot on
# its stream's own 20 ms grid (the grid placed by the stream's earliest
# packet over the window; a phone with one frame of jitter buffer plays
# anything up to that in time). A step holds when, in each direction (o2g:
# Opus in, G.711 out; g2o: G.711 in, Opus out), no frame is lost (by RTP
# timestamp), late frames are < 0.1 % and >= 99 % of the packets due come
# out; the relay baseline is judged the same way (late_holds).
# Prints per N, kind and repeat: packets/s out, loss, late frames (all, and
# per direction), lateness p99, jitter |gap - 20 ms| p99, CPU of the
# runtime, of the generator and of everything else (% of one core), the
# runtime's CPU per channel and 20 ms frame, the engine's codec cost per
# channel-frame measured in that process and the ceiling it gives, N over
# the ceiling, and whether the step holds. A run during which the rest of
# the machine used more than NOISY_CPU % of a core is marked noisy and run
# again, up to RETRIES times (every run is printed). Then, per kind, the
# highest N that held in every clean run, and in every run, the ratio
# transcode/relay, and the ratio of the transcoding N held to the ceiling.
# Knobs: CHANNELS_SET ("50 100 200 300 400"), KINDS ("transcode relay"),
# REPEAT (1: runs of each step), WARMUP (3), DURATION (20), DRAIN (1), RAMP
# (1: the channels are opened evenly over it, so their ticks fall at random
# phases), WORKERS (2), CODEC (pcma: the G.711 side), CLIP (3: seconds of
# the phones' looped audio), COST_FRAMES (1000: frames per line of the
# codec cost; 0 skips it), PORT_MIN/PORT_MAX (30000/39999; transcode takes
# 4 ports per channel, the relay 8), QUIET_LOAD (wait up to QUIET_WAIT s
# before each run for the 1-min load average to fall below it; unset: no
# wait), NOISY_CPU (25), RETRIES (2), GEN_PRIORITY (normal|fifo), NICE (unset:
# as is; e.g. -19 runs each step in a session of its own whose autogroup
# gets that nice value, and under `nice -n -19`, media side and generator
# alike (root): with autogroups on (`kernel.sched_autogroup_enabled`), a
# plain `nice` only ranks a process inside its own session, and another
# session's build gets an equal share of the cores beside the step; with
# NICE the builds of a shared machine get mostly what the step leaves),
# RESULTS (a file the result lines are appended to; kept after the run),
# SUMMARY_ONLY (a results file: print its table, run nothing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHANNELS_SET=${CHANNELS_SET:-"50 100 200 300 400"}
KINDS=${KINDS:-"transcode relay"}
REPEAT=${REPEAT:-1}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-20}
DRAIN=${DRAIN:-1}
RAMP=${RAMP:-1}
WORKERS=${WORKERS:-2}
CODEC=${CODEC:-pcma}
CLIP=${CLIP:-3}
COST_FRAMES=${COST_FRAMES:-1000}
PORT_MIN=${PORT_MIN:-30000}
PORT_MAX=${PORT_MAX:-39999}
QUIET_WAIT=${QUIET_WAIT:-300}
NOISY_CPU=${NOISY_CPU:-25}
RETRIES=${RETRIES:-2}
GEN_PRIORITY=${GEN_PRIORITY:-normal}
NICE=${NICE:-}

# The table and the verdict, from the result lines.
summary() {
  awk -v kinds="$KINDS" '
  function kv(line, k,   i, a, n) {
    n = split(line, a, " ")
    for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2)
    return ""
  }
  function dash(v) { return v == "" ? "-" : v }
  {
    n = kv($0, "channels") + 0; l = kv($0, "label")
    if (!(n in seen)) { seen[n] = 1; order[++count] = n }
    line[l, n, ++runs[l, n]] = $0
  }
  END {
    nk = split(kinds, kind, " ")
    printf "%5s %-9s %5s %8s %5s %6s %6s %7s %7s %7s %6s %6s %4s %4s %5s %6s %6s %5s %5s %5s\n", "N", "kind", \
      "run", "UTC", "load", "pps", "lost", "late%", "g2o%", "o2g%", "latp99", "jitp99", "rt", "gen", "other", \
      "us/ch", "codec", "ceil", "N/ce", "holds"
    for (i = 1; i <= count; i++) {
      n = order[i]
      for (k = 1; k <= nk; k++) {
        l = kind[k]
        all = 1; clean = 1; cleans = 0
        for (j = 1; j <= runs[l, n]; j++) {
          x = line[l, n, j]
          ok = kv(x, "late_holds") == "yes"; noisy = kv(x, "noisy") == 1
          tc = kv(x, "kind") == "transcode"
          printf "%5d %-9s %5s %8s %5s %6.0f %6d %7.3f %7s %7s %6.2f %6.2f %4.0f %4.0f %5.0f %6.1f %6.1f %5.0f %5s %5s\n", \
            n, l, kv(x, "run") (kv(x, "try") > 0 ? "." kv(x, "try") : ""), kv(x, "at"), kv(x, "load1"), \
            kv(x, "received_pps"), kv(x, "lost"), kv(x, "late_pct"), \
            tc ? sprintf("%.3f", kv(x, "g2o_late_pct")) : "-", tc ? sprintf("%.3f", kv(x, "o2g_late_pct")) : "-", \
            kv(x, "lateness_p99_us") / 1000, kv(x, "jitter_p99_us") / 1000, \
            kv(x, "rt_cpu"), kv(x, "send_cpu") + kv(x, "recv_cpu"), kv(x, "other_cpu"), \
            kv(x, "rt_us_per_session_frame") * (tc ? 1 : 2), kv(x, "chan_ns") / 1000, kv(x, "ceiling_engine"), \
            tc ? sprintf("%.2f", kv(x, "n_over_ceiling") / 1) : "-", (ok ? "+" : "-") (noisy ? "~" : "")
          if (!ok) all = 0
          if (!noisy) { cleans++; if (!ok) clean = 0 }
          if (tc) { ceil_sum[n] += kv(x, "ceiling_engine"); ceil_48[n] += kv(x, "ceiling_opus48"); ceil_c5[n] += kv(x, "ceiling_engine_c5"); ceil_runs[n]++ }
        }
        if (runs[l, n] && all && n > best[l]) best[l] = n
        if (cleans && clean && n > bestc[l]) bestc[l] = n
      }
    }
    print "N: channels (transcode: N Opus endpoints bridged to N G.711 endpoints; relay: 2N one-way relayed streams);"
    print "pps: packets/s out of the media side (expected 2N x 50); lost: frames lost by RTP timestamp, both directions;"
    print "late%: frames whose packet left > 20 ms behind its slot on its stream grid, of those due (g2o: G.711 in,"
    print "Opus out; o2g: Opus in, G.711 out); latp99: that lateness, p99 (ms); jitp99: |arrival gap - 20 ms| p99 (ms);"
    print "CPU in % of one core: rt the media runtime, gen the generator (send + receive threads), other the rest of"
    print "the machine; us/ch: runtime CPU per channel and 20 ms frame (relay: per pair of streams); codec: the"
    print "engine codec work per channel-frame measured in that process on one thread (us: Opus decode to 8 kHz +"
    print "8 kHz Opus encode at complexity 10 + G.711); ceil: channels the cores could hold doing only that;"
    print "N/ce: N over it; holds: + when no frame lost, late < 0.1 % in each direction, >= 99 % of 2N x 50"
    print "packets/s out; ~: noisy (other > NOISY_CPU)"
    for (k = 1; k <= nk; k++) {
      l = kind[k]
      printf "highest N held: %-9s in every clean run %5d, in every run %5d", l, bestc[l], best[l]
      if (l != "relay" && bestc["relay"]) printf "; ratio to relay (clean runs) %.2f", bestc[l] / bestc["relay"]
      if (l == "transcode" && bestc[l] && ceil_runs[bestc[l]]) {
        m = bestc[l]
        printf "; ceiling there %.0f (complexity 5: %.0f; libopus 48 kHz enc+dec: %.0f), held %.2f of it", \
          ceil_sum[m] / ceil_runs[m], ceil_c5[m] / ceil_runs[m], ceil_48[m] / ceil_runs[m], m / (ceil_sum[m] / ceil_runs[m])
      }
      printf "\n"
    }
  }' "$1"
}

if [ -n "${SUMMARY_ONLY:-}" ]; then
  summary "$SUMMARY_ONLY"
  exit 0
fi

max_n=0
for n in $CHANNELS_SET; do ((n > max_n)) && max_n=$n; done
# One process holds the relay's 4 sockets per stream, 2 streams per channel
# (transcode: 2 endpoints of 2 sockets), and the generator's 2.
need=$((8 * max_n + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && ((hard < need)); then
  echo "==> the hard limit on open files ($hard) is below the $need needed for $max_n channels" >&2
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

# prio <command...>: as is, or (NICE) in a session of its own whose
# autogroup, and the command, get that nice value.
prio() {
  if [ -z "$NICE" ]; then
    "$@"
  else
    setsid -w sh -c 'echo "$0" > /proc/self/autogroup 2> /dev/null; exec nice -n "$0" "$@"' "$NICE" "$@"
  fi
}

# run <kind> <N> <repeat>: one step, run again while noisy (up to
# RETRIES times); appends each run's line to the results.
run() {
  local kind=$1 n=$2 r=$3 sessions=$2 try load_before at line noisy
  [ "$kind" = relay ] && sessions=$((2 * n))
  for try in $(seq 0 "$RETRIES"); do
    wait_quiet
    load_before=$(load1)
    at=$(date -u +%H:%M:%S)
    line=$(prio "$BIN" "$kind" --sessions "$sessions" --warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN" \
      --ramp "$RAMP" --workers "$WORKERS" --codec "$CODEC" --port-min "$PORT_MIN" --port-max "$PORT_MAX" \
      --gen-priority "$GEN_PRIORITY" --clip "$CLIP" --cost-frames "$COST_FRAMES" 2> "$WORK/log")
    noisy=$(awk -v l="$line" -v max="$NOISY_CPU" 'BEGIN {
      n = split(l, a, " "); for (i = 1; i <= n; i++) if (index(a[i], "other_cpu=") == 1) o = substr(a[i], 11) + 0
      print (o > max) ? 1 : 0 }')
    echo "$line channels=$n run=$r try=$try noisy=$noisy at=$at load1=$load_before nice=${NICE:-0}" | tee -a "$RESULTS"
    sed 's/^/    /' "$WORK/log"
    ((noisy)) || break
  done
}

echo "==> $(date -u '+%d %b %Y %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> kinds: $KINDS; channels: $CHANNELS_SET; $REPEAT run(s) each; Opus <-> $CODEC; $WORKERS workers;" \
  "${WARMUP} s warm-up, ${DURATION} s measured; nice ${NICE:-0}; a run is noisy when the rest of the machine" \
  "uses > ${NOISY_CPU} %"
for n in $CHANNELS_SET; do
  for r in $(seq "$REPEAT"); do
    for kind in $KINDS; do run "$kind" "$n" "$r"; done
  done
done

echo
summary "$RESULTS"
echo "==> done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
