#!/usr/bin/env bash
# Runs a command (and every process it starts) on CPUS with at most PERCENT
# of one core, so that on a small machine SIPp can offer a server more than
# it can take: a server with both cores of a 2-core machine sets up about as
# many calls as SIPp on the same machine can make.
#   cpu_cap.sh PERCENT CPUS command [args...]
# The share is a CFS quota over a 10 ms period (cgroup v1 "cpu" controller,
# or cgroup v2 cpu.max), fine-grained enough not to show as stalls of more
# than a few milliseconds. PERCENT 0 or 100 (or no cgroup support): CPUS only.
set -euo pipefail
PERCENT=$1 CPUS=$2
shift 2
PERIOD=10000
QUOTA=$((PERIOD * PERCENT / 100))
GROUP=softswitch-bench-cap
if [ "$PERCENT" -gt 0 ] && [ "$PERCENT" -lt 100 ]; then
  if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
    dir=/sys/fs/cgroup/cpu/$GROUP
    mkdir -p "$dir"
    echo "$PERIOD" > "$dir/cpu.cfs_period_us"
    echo "$QUOTA" > "$dir/cpu.cfs_quota_us"
    echo $$ > "$dir/cgroup.procs"
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    dir=/sys/fs/cgroup/$GROUP
    mkdir -p "$dir"
    echo "$QUOTA $PERIOD" > "$dir/cpu.max"
    echo $$ > "$dir/cgroup.procs"
  else
    echo "cpu_cap.sh: no writable cgroup cpu controller: CPUs $CPUS only, no share" >&2
  fi
fi
exec taskset -c "$CPUS" "$@"
