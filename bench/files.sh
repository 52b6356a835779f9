#!/usr/bin/env bash
# File sharing with a release build: a SIZE_MB (50) file uploaded over HTTPS
# to a user (curl, streamed, 100 Continue as apps do), then downloaded by
# the recipient (the last download: the file is deleted after it); REPEAT
# (3) rounds. Printed per round: upload and download MB/s, and the switch's
# memory before the round and at its peak during it, sampled every 20 ms
# from /proc: RssAnon (the heap: what the process itself holds) and VmRSS
# (which also counts the database file's pages SQLite maps, mmap_size). Baselines in the same run: the same bytes as
# 1 MiB blobs into a SQLite table by the sqlite3 CLI (the storage floor:
# what the database alone costs), and an HTTPS GET of the same file from
# `openssl s_server -WWW` (TLS over loopback with nothing behind it).
# Knobs: SIZE_MB, REPEAT, DATABASE_URL (default: SQLite in the temp dir;
# e.g. mysql://softswitch:softswitch@127.0.0.1:3306/softswitch_bench).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
SIZE_MB=${SIZE_MB:-50}
REPEAT=${REPEAT:-3}

./scripts/setup.sh >/dev/null
./scripts/build-guests.sh >/dev/null
cargo build -q --release -p softswitch --bin softswitch
bin=$root/target/release/softswitch

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/scripts/lib/ports.sh"
api=$(free_port); admin=$(free_port); sip=$(free_sip_port); plain=$(free_port)

db_line=""
if [ -n "${DATABASE_URL:-}" ]; then db_line="[database]
url = \"$DATABASE_URL\""; fi
cat >"$tmp/softswitch.toml" <<TOML
$db_line
[plugins]
cache_dir = "$tmp/cache"
[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
tls = ["127.0.0.1:0"]
wss = []
[api]
listen = ["127.0.0.1:$api"]
address_burst = 100000
identity_burst = 100000
[admin]
listen = "127.0.0.1:$admin"
token = "bench"
[guests.routing]
path = "$root/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
export SOFTSWITCH_CONFIG=$tmp/softswitch.toml SOFTSWITCH_DATA_DIR=$tmp/data RUST_LOG=warn

for u in filesender filereader; do
    # Already there from an earlier run on the same DATABASE_URL: kept.
    "$bin" account add "$u" --password "$u-sip" --username "$u" --access-password "$u-pass-1" >/dev/null 2>&1 || true
done
"$bin" run 2>"$tmp/switch.log" &
switch=$!
pids+=($switch)
for _ in $(seq 1 300); do
    curl -ksf "https://127.0.0.1:$api/v1/openapi.json" >/dev/null && break
    sleep 0.2
done
ca=$tmp/data/tls/self-signed-cert.pem
token() {
    curl -sf --cacert "$ca" -H 'content-type: application/json' \
        -d "{\"id\":\"$1\",\"password\":\"$1-pass-1\"}" "https://127.0.0.1:$api/v1/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
sender=$(token filesender)
reader=$(token filereader)

head -c "$((SIZE_MB << 20))" /dev/urandom >"$tmp/file.mp4"
bytes=$(stat -c %s "$tmp/file.mp4")
mem_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# Samples the switch's memory until told to stop; prints the peaks (KiB):
# RssAnon and VmRSS.
sample_peak() {
    local anon=0 rss=0 a r
    while [ ! -e "$tmp/stop" ]; do
        a=$(mem_kb "$switch" RssAnon)
        r=$(mem_kb "$switch" VmRSS)
        [ "$a" -gt "$anon" ] && anon=$a
        [ "$r" -gt "$rss" ] && rss=$r
        sleep 0.02
    done
    echo "$anon $rss"
}
mbps() { python3 -c "print(f'{$bytes / $1 / 1048576:.1f}')"; }

echo "# $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg), ${SIZE_MB} MiB, database ${DATABASE_URL:-sqlite}"
printf '%-6s %10s %9s %10s %10s %18s %18s\n' round "up s" "up MB/s" "down s" "down MB/s" "anon before/peak" "RSS before/peak"
for round in $(seq 1 "$REPEAT"); do
    rm -f "$tmp/stop"
    anon_before=$(mem_kb "$switch" RssAnon)
    rss_before=$(mem_kb "$switch" VmRSS)
    sample_peak >"$tmp/peak" &
    sampler=$!
    up=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $sender" -H 'Content-Type: video/mp4' \
        --data-binary "@$tmp/file.mp4" -o "$tmp/up.json" -w '%{time_total}' \
        "https://127.0.0.1:$api/v1/files?to=filereader")
    id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$tmp/up.json")
    down=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $reader" -o "$tmp/down.mp4" \
        -w '%{time_total}' "https://127.0.0.1:$api/v1/files/$id")
    touch "$tmp/stop"
    wait "$sampler"
    cmp -s "$tmp/file.mp4" "$tmp/down.mp4" || { echo "round $round: the download differs" >&2; exit 1; }
    read -r anon_peak rss_peak <"$tmp/peak"
    printf '%-6s %10s %9s %10s %10s %11s MiB %11s MiB\n' "$round" "$up" "$(mbps "$up")" "$down" "$(mbps "$down")" \
        "$((anon_before / 1024))/$((anon_peak / 1024))" "$((rss_before / 1024))/$((rss_peak / 1024))"
done

# Baselines: the database alone, and TLS over loopback alone.
mkdir "$tmp/parts"
split -b 1048576 -d -a 4 "$tmp/file.mp4" "$tmp/parts/p"
{
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    echo "CREATE TABLE c (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    n=0
    for part in "$tmp"/parts/p*; do
        # A transaction per chunk, as the switch writes them.
        echo "BEGIN; INSERT INTO c VALUES ($n, readfile('$part')); COMMIT;"
        n=$((n + 1))
    done
} >"$tmp/floor.sql"
start=$(date +%s.%N)
sqlite3 "$tmp/floor.db" <"$tmp/floor.sql" >/dev/null
floor=$(python3 -c "print(f'{$(date +%s.%N) - $start:.3f}')")
(cd "$tmp" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$plain" \
    -cert "$tmp/data/tls/self-signed-cert.pem" -key "$tmp/data/tls/self-signed-key.pem") >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    curl -ksf -o /dev/null "https://127.0.0.1:$plain/up.json" && break
    sleep 0.1
done
tls=$(curl -ksf -o /dev/null -w '%{time_total}' "https://127.0.0.1:$plain/file.mp4")
echo "baseline: sqlite3 writing the same bytes as 1 MiB blobs ${floor} s ($(mbps "$floor") MB/s);" \
    "HTTPS GET from openssl s_server -WWW ${tls} s ($(mbps "$tls") MB/s)"
