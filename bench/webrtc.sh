#!/usr/bin/env bash
# WebRTC <-> G.711 bridged calls held on the media engine (issue 20, item 6,
# media half: goal >= 200 calls with < 0.1 % loss). For each N and kind: N
# calls, each a browser's leg (endpoint W) bridged to a phone's leg
# (endpoint G: PCMA, plain RTP), one media::Relay on loopback, against a
# load generator that is every browser and every phone. Kinds (W only
# differs):
#   webrtc       what the switch does by default ([media] browser_codec =
#                "g711"): W speaks the browser's PCMU (payload type 0,
#                telephone-event 101) over ICE-lite + DTLS-SRTP, no Opus;
#   webrtc-opus  browser_codec = "opus": the same with W speaking Opus
#                (payload type 111), an Opus transcode per call;
#   opus         W an Opus endpoint on plain RTP (the transcoding without
#                ICE, DTLS and SRTP; not run by default);
#   g711         the baseline: W a plain PCMA endpoint, both legs A-law.
# A fake browser is its own WebRtcTransport as the DTLS client: ICE check,
# handshake, then an SRTP-protected packet (the kind's codec) every 20 ms
# and a consent check every 5 s; W's packets unprotected and followed. A
# phone sends an A-law packet every 20 ms and follows G's. One process per
# run (media/examples/webrtc_bench.rs): the media side on a tokio runtime
# of WORKERS threads, the generator on its own threads (sendmmsg paced by
# deadlines, recvmmsg; Linux only), so the runtime's CPU is the switch's
# and the generator's is reported apart.
# Prints each run's summary, then a table per N and kind: calls keyed and
# handshake times (first ICE check to the browser's SRTP keys), loss per
# direction (p2b: phone -> G -> W -> browser; b2p: browser -> W -> G ->
# phone; by RTP timestamp, over the window), late frames (> 20 ms behind the
# stream's grid), jitter p99, SRTP authentication failures, bridge
# underruns/drops, CPU (process, runtime, generator, rest of the machine, %
# of one core) and CPU per call and second held; then, per N, the ratio of
# each kind's CPU per call to the G.711 baseline's, the cost split, and the
# verdict.
# Exit status: 3 when a run of the default kind (webrtc: PCMU over
# DTLS-SRTP) at N >= GOAL lost >= LOSS_BOUND % in a direction or had a call
# not come up (so it can serve as a check; the other kinds are reported,
# not checked), 1 on an error, else 0.
# Knobs: CALLS_SET ("200"; a sweep: "50 100 150 200 250"), GOAL (200),
# DURATION (60: seconds held and measured), WARMUP (5), DRAIN (1), RAMP (2:
# the calls are opened evenly over it; 0 opens them at once), REPEAT (1),
# KINDS ("webrtc webrtc-opus g711"; add opus to split the Opus kind's cost),
# WORKERS (2), LOSS_BOUND (0.1), SETUP_TIMEOUT (30), OPUS_FMTP (the Opus
# kinds; unset: W takes no a=fmtp from the browser; e.g.
# "minptime=10;useinbandfec=1", Chrome's, makes W's encoder add FEC),
# PORT_MIN/PORT_MAX (50000/55999: 4 ports per call), QUIET_LOAD (wait up to
# QUIET_WAIT s before each run for the 1-min load average to fall below it),
# NICE (e.g. -19: each run in a session of its own whose autogroup gets that
# nice value, root only; see bench/transcode.sh), RESULTS (a file the
# result lines are appended to), SUMMARY_ONLY (a results file: print its
# table, run nothing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CALLS_SET=${CALLS_SET:-"200"}
GOAL=${GOAL:-200}
DURATION=${DURATION:-60}
WARMUP=${WARMUP:-5}
DRAIN=${DRAIN:-1}
RAMP=${RAMP:-2}
REPEAT=${REPEAT:-1}
KINDS=${KINDS:-"webrtc webrtc-opus g711"}
WORKERS=${WORKERS:-2}
LOSS_BOUND=${LOSS_BOUND:-0.1}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-30}
OPUS_FMTP=${OPUS_FMTP:-}
PORT_MIN=${PORT_MIN:-50000}
PORT_MAX=${PORT_MAX:-55999}
QUIET_WAIT=${QUIET_WAIT:-300}
NICE=${NICE:-}

summary() {
  awk -v goal="$GOAL" -v bound="$LOSS_BOUND" '
  function kv(line, k,   i, a, n) {
    n = split(line, a, " ")
    for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2)
    return ""
  }
  function max(a, b) { a += 0; b += 0; return a > b ? a : b }
  {
    n = kv($0, "calls") + 0; k = kv($0, "kind")
    # Results from before the PCMU kind: "webrtc" was the Opus one.
    if (k == "webrtc" && kv($0, "browser_codec") == "") k = "webrtc-opus"
    if (!(n in seen)) { seen[n] = 1; order[++count] = n }
    line[k, n, ++runs[k, n]] = $0
  }
  END {
    nk = split("webrtc webrtc-opus opus g711", kinds, " ")
    desc["webrtc"] = "WebRTC (PCMU over DTLS-SRTP, the default) <-> G.711"
    desc["webrtc-opus"] = "WebRTC (Opus over DTLS-SRTP) <-> G.711"
    desc["opus"] = "Opus (plain RTP) <-> G.711"
    printf "%4s %-11s %3s %8s %5s %7s %6s %6s %7s %7s %6s %6s %4s %7s %5s %4s %4s %5s %6s %6s %5s\n", \
      "N", "kind", "run", "UTC", "load", "keyed", "hs50", "hs99", "p2b%", "b2p%", "late%", "jit99", \
      "auth", "undr/dr", "proc", "rt", "gen", "other", "rt/c", "proc/c", "holds"
    for (i = 1; i <= count; i++) {
      n = order[i]
      for (kk = 1; kk <= nk; kk++) {
        k = kinds[kk]
        w = k == "webrtc" || k == "webrtc-opus"
        for (j = 1; j <= runs[k, n]; j++) {
          x = line[k, n, j]
          printf "%4d %-11s %3d %8s %5s %7s %6s %6s %7.3f %7.3f %6.3f %6.2f %4s %7s %5.0f %4.0f %4.0f %5.0f %6.2f %6.2f %5s\n", \
            n, k, j, kv(x, "at"), kv(x, "load1"), w ? kv(x, "keyed") "/" n : "-", \
            w ? sprintf("%.1f", kv(x, "handshake_p50_ms")) : "-", w ? sprintf("%.1f", kv(x, "handshake_p99_ms")) : "-", \
            kv(x, "p2b_loss_pct"), kv(x, "b2p_loss_pct"), max(kv(x, "p2b_late_pct"), kv(x, "b2p_late_pct")), \
            max(kv(x, "p2b_jitter_p99_ms"), kv(x, "b2p_jitter_p99_ms")), w ? kv(x, "srtp_auth_failed") : "-", \
            (kv(x, "p2b_bridge_underruns") + kv(x, "b2p_bridge_underruns")) "/" \
            (kv(x, "p2b_bridge_dropped") + kv(x, "b2p_bridge_dropped")), \
            kv(x, "process_cpu"), kv(x, "rt_cpu"), kv(x, "gen_cpu"), kv(x, "other_cpu"), \
            kv(x, "rt_ms_per_call_s"), kv(x, "process_ms_per_call_s"), kv(x, "holds") == "yes" ? "+" : "-"
          rt[k, n] += kv(x, "rt_ms_per_call_s"); pr[k, n] += kv(x, "process_ms_per_call_s")
          loss[k, n] = max(loss[k, n], max(kv(x, "p2b_loss_pct"), kv(x, "b2p_loss_pct")))
          p2b[k, n] = max(p2b[k, n], kv(x, "p2b_loss_pct")); b2p[k, n] = max(b2p[k, n], kv(x, "b2p_loss_pct"))
          hs50[k, n] = max(hs50[k, n], kv(x, "handshake_p50_ms")); hs99[k, n] = max(hs99[k, n], kv(x, "handshake_p99_ms"))
          if (kv(x, "holds") != "yes") bad[k, n] = 1
        }
        if (runs[k, n]) { rt[k, n] /= runs[k, n]; pr[k, n] /= runs[k, n] }
      }
    }
    print "N: calls; kind: webrtc W speaks PCMU over ICE-lite + DTLS-SRTP (the switch'"'"'s default, browser_codec"
    print "= \"g711\"), webrtc-opus Opus over it (browser_codec = \"opus\"), opus Opus on plain RTP, g711 the baseline;"
    print "keyed: calls whose browser got its SRTP keys; hs50/hs99: handshake (first ICE check to the"
    print "browser holding its keys) p50/p99, ms; p2b%/b2p%: loss by RTP timestamp over the window (p2b: phone ->"
    print "G -> W -> browser, b2p: browser -> W -> G -> phone); late%: frames > 20 ms behind their stream grid,"
    print "worse direction; jit99: |gap - 20 ms| p99, ms; auth: SRTP authentication failures at the browsers;"
    print "undr/dr: bridge underruns/drops, both directions; CPU in % of one core: proc the process (getrusage),"
    print "rt the media runtime, gen the generator, other the rest of the machine; rt/c, proc/c: ms of CPU per"
    print "call and second held (the lines below average them over runs); holds: + when loss < " bound " %"
    print "each way and every call came up"
    failed = 0
    for (i = 1; i <= count; i++) {
      n = order[i]
      b = rt["g711", n]; d = pr["g711", n]
      for (kk = 1; kk <= nk; kk++) {
        k = kinds[kk]
        if (k == "g711" || !runs[k, n]) continue
        hs = k == "opus" ? "" : sprintf(", handshake p50 %.1f ms / p99 %.1f ms", hs50[k, n], hs99[k, n])
        if (runs["g711", n])
          printf "N=%d: %s costs %.2fx the CPU of G.711 <-> G.711 per call (media runtime: %.2f against %.2f ms per call-second; whole process with the generator: %.2fx, %.2f against %.2f), loss %.3f %% p2b / %.3f %% b2p (baseline %.3f %%)%s\n", \
            n, desc[k], (b > 0 ? rt[k, n] / b : 0), rt[k, n], b, (d > 0 ? pr[k, n] / d : 0), pr[k, n], d, \
            p2b[k, n], b2p[k, n], loss["g711", n], hs
        else
          printf "N=%d: %s: %.2f ms of runtime CPU per call-second (no baseline run), loss %.3f %% p2b / %.3f %% b2p%s\n", \
            n, desc[k], rt[k, n], p2b[k, n], b2p[k, n], hs
      }
      if (runs["webrtc", n] && runs["webrtc-opus", n] && runs["g711", n])
        printf "N=%d: of the runtime CPU per call-second, G.711 <-> G.711 is %.2f ms; ICE-lite + DTLS-SRTP with PCMU (the default) adds %.2f; Opus toward the browser instead of PCMU adds %.2f more (webrtc-opus %.2f)\n", \
          n, b, rt["webrtc", n] - b, rt["webrtc-opus", n] - rt["webrtc", n], rt["webrtc-opus", n]
      if (runs["opus", n] && runs["webrtc-opus", n] && runs["g711", n])
        printf "N=%d: Opus transcoding on plain RTP adds %.2f ms per call-second to G.711 <-> G.711, ICE + DTLS-SRTP over Opus %.2f (opus run: loss %.3f %%)\n", \
          n, rt["opus", n] - b, rt["webrtc-opus", n] - rt["opus", n], loss["opus", n]
      if (runs["webrtc", n] && n >= goal) {
        printf "check at N=%d (>= goal %d), the default configuration (WebRTC PCMU <-> G.711): %s\n", n, goal, \
          bad["webrtc", n] ? "FAILS (loss >= " bound " % or a call not up)" : "passes"
        if (bad["webrtc", n]) failed = 1
      }
    }
    exit failed ? 3 : 0
  }' "$1"
}

if [ -n "${SUMMARY_ONLY:-}" ]; then
  summary "$SUMMARY_ONLY"
  exit $?
fi

max_n=0
for n in $CALLS_SET; do ((n > max_n)) && max_n=$n; done
# 4 sockets per call (two endpoints, RTP and RTCP each), the generator's one.
need=$((4 * max_n + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && ((hard < need)); then
  echo "==> the hard limit on open files ($hard) is below the $need needed for $max_n calls" >&2
  exit 1
fi
ulimit -n "$need"

cargo build --release -p media --example webrtc_bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/webrtc_bench
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

prio() {
  if [ -z "$NICE" ]; then
    "$@"
  else
    setsid -w sh -c 'echo "$0" > /proc/self/autogroup 2> /dev/null; exec nice -n "$0" "$@"' "$NICE" "$@"
  fi
}

# run <kind> <N> <repeat>: one run; appends its line to the results.
run() {
  local kind=$1 n=$2 r=$3 load_before at line rc=0
  wait_quiet
  load_before=$(load1)
  at=$(date -u +%H:%M:%S)
  local fmtp=()
  [ -n "$OPUS_FMTP" ] && fmtp=(--opus-fmtp "$OPUS_FMTP")
  line=$(prio "$BIN" "$kind" --calls "$n" --warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN" \
    --ramp "$RAMP" --workers "$WORKERS" --goal "$GOAL" --loss-bound "$LOSS_BOUND" \
    --setup-timeout "$SETUP_TIMEOUT" --port-min "$PORT_MIN" --port-max "$PORT_MAX" "${fmtp[@]}" \
    2> "$WORK/log") || rc=$?
  sed 's/^/    /' "$WORK/log"
  # 3: the run's own check failed; it is judged again in the summary.
  if ((rc != 0 && rc != 3)); then
    echo "==> $kind at N=$n failed (exit $rc)" >&2
    exit 1
  fi
  echo "$line run=$r at=$at load1=$load_before nice=${NICE:-0}" >> "$RESULTS"
}

echo "==> $(date -u '+%d %b %Y %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> kinds: $KINDS; calls: $CALLS_SET; $REPEAT run(s) each; ${WARMUP} s warm-up, ${DURATION} s held;" \
  "calls opened over ${RAMP} s; $WORKERS workers; nice ${NICE:-0}; goal $GOAL calls with loss < ${LOSS_BOUND} %"
for n in $CALLS_SET; do
  for r in $(seq "$REPEAT"); do
    for kind in $KINDS; do run "$kind" "$n" "$r"; done
  done
done

echo
rc=0
summary "$RESULTS" || rc=$?
echo "==> done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
