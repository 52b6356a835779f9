#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets of fuzz/ for a bounded time each:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 30 s, every target)
#
# Each target starts from a fresh temporary corpus holding its seeds
# (fuzz/seeds/<target>/ plus the conformance data of tests/data that fits
# it), so runs are comparable and nothing they grow ends up in the tree. Set
# FUZZ_KEEP_CORPUS=DIR to keep the grown corpora under DIR/<target>/ (and to
# start from them next time) for long runs. Targets run FUZZ_JOBS at a time
# (default: the number of cores, at most 4). Fails if any target crashes,
# printing the crash input and the command that replays it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-30}
shift || true
# cargo-fuzz passes -Z flags (sanitizer-coverage) to rustc: the stable
# toolchain accepts them with RUSTC_BOOTSTRAP, so CI needs no nightly.
export RUSTC_BOOTSTRAP=1
# No sanitizer: host and media deny unsafe code, so AddressSanitizer would
# only slow the runs (about 2x) and the build of wasmtime and sqlx; panics,
# overflow checks (-a: debug assertions) and libFuzzer's own checks (leaks
# aside) are what catch bugs here.
build_flags=(--sanitizer none --debug-assertions)
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
jobs=${FUZZ_JOBS:-$(nproc)}
((jobs > 4)) && jobs=4

say() { printf '[fuzz] %s\n' "$*"; }

start=$SECONDS
if (($#)); then
    for t in "${targets[@]}"; do
        cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}" "$t"
    done
else
    cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}"
fi
say "built ${#targets[@]} targets in $((SECONDS - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

seed() {
    local t=$1 dir=$2
    mkdir -p "$dir"
    cp fuzz/seeds/"$t"/* "$dir"/ 2>/dev/null || true
    case $t in
        sip_datagram | sip_stream) cp tests/data/rfc4475/msgs/*.dat "$dir"/ ;;
        stun | rtp_rtcp | webrtc_leg) cp tests/data/rfc5769/*.bin "$dir"/ ;;
    esac
}

run() {
    local t=$1
    local corpus=$work/corpus/$t
    if [[ -n ${FUZZ_KEEP_CORPUS:-} ]]; then
        corpus=$FUZZ_KEEP_CORPUS/$t
    fi
    seed "$t" "$corpus"
    mkdir -p fuzz/artifacts/"$t"
    # -timeout: any one input taking 10 s is a hang worth a report;
    # -rss_limit_mb: a runaway allocation is a crash, not a swapping CI box.
    "$bin_dir/$t" "$corpus" -max_total_time="$seconds" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix=fuzz/artifacts/"$t"/ \
        >"$work/$t.log" 2>&1
}

summary() {
    local t=$1 status=$2 log=$work/$1.log
    local execs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    if ((status == 0)); then
        say "$t: ok, ${execs:-?} execs in ${seconds} s, ${cov:-no coverage line}"
        return 0
    fi
    say "$t: FAILED (exit $status) after ${execs:-?} execs"
    grep -E 'panicked at|^==[0-9]+== ERROR|deadly signal|Test unit written' "$log" | head -n 8 >&2 || true
    tail -n 25 "$log" >&2
    local artifact
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [[ -n $artifact ]]; then
        say "crash input: $artifact" >&2
        say "replay it:   RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} --fuzz-dir fuzz $t $artifact" >&2
    fi
    return 1
}

failed=()
pids=()
names=()
wait_one() {
    local pid=${pids[0]} t=${names[0]} status=0
    wait "$pid" || status=$?
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
    summary "$t" "$status" || failed+=("$t")
}
for t in "${targets[@]}"; do
    if [[ ! -x $bin_dir/$t ]]; then
        say "no such target: $t" >&2
        failed+=("$t")
        continue
    fi
    ((${#pids[@]} >= jobs)) && wait_one
    run "$t" &
    pids+=($!)
    names+=("$t")
done
while ((${#pids[@]})); do wait_one; done

say "done in $((SECONDS - start)) s"
if ((${#failed[@]})); then
    say "crashed: ${failed[*]}" >&2
    exit 1
fi
