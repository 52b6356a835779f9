#!/usr/bin/env bash
# Runs the README's "Tutorial: an SMS provider in Python" exactly as written:
# the ```sh blocks between <!-- tutorial-sms:start --> and
# <!-- tutorial-sms:end -->, in order, in one shell started in the
# repository's folder as the tutorial says, with the switch's binary first
# on PATH. Exits non-zero when a step fails.
#
#   scripts/tutorial-sms.sh          builds the release binary first
#   SOFTSWITCH_BIN=path scripts/tutorial-sms.sh
#
# TUTORIAL_DIR (default: a new temporary folder) holds the steps, and is the
# TMPDIR of the steps' `mktemp -d` (so the project lands in it); what the
# steps started in the background is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

if [[ -z ${SOFTSWITCH_BIN:-} ]]; then
    cargo build --release -p softswitch
    SOFTSWITCH_BIN=$repo/target/release/softswitch
fi
dir=${TUTORIAL_DIR:-$(mktemp -d /tmp/tutorial-sms.XXXXXX)}
bin_dir=$dir/bin
mkdir -p "$bin_dir"
ln -sf "$SOFTSWITCH_BIN" "$bin_dir/softswitch"

steps=$dir/steps.sh
awk '
    /<!-- tutorial-sms:start -->/ { on = 1; next }
    /<!-- tutorial-sms:end -->/ { on = 0 }
    on && /^```sh$/ { code = 1; next }
    on && code && /^```$/ { code = 0; print ""; next }
    on && code { print }
' README.md >"$steps"
[[ -s $steps ]] || { echo "no tutorial steps found in README.md" >&2; exit 1; }

# One process group for the steps and what they start, so that all of it
# stops at the end, however the steps end.
cleanup() {
    [[ -n ${group:-} ]] && kill -- "-$group" 2>/dev/null || true
}
trap cleanup EXIT
set +e
# Bounded: a step waiting for something that never comes must not hang CI.
PATH="$bin_dir:$PATH" TMPDIR=$dir setsid timeout 600 bash -euo pipefail -x "$steps" &
group=$!
wait "$group"
rc=$?
set -e
if ((rc != 0)); then
    echo "[tutorial-sms] a step failed (exit $rc); the switch's log:" >&2
    tail -n 30 "$dir"/*/acme-sms/switch.log >&2 2>/dev/null || true
    exit "$rc"
fi
echo "[tutorial-sms] every step ran (folder $dir)"
