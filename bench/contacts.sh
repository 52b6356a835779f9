#!/usr/bin/env bash
# Address-book discovery with a release build (issue 18 item 10): a
# BOOK-entry book (default 10,000) uploaded against ACCOUNTS accounts
# (default 1,000,000; PHONES of them, default 10,000, with a phone number;
# MATCHES, default 1,000, of those in the book), on SQLite and on MariaDB.
# Goal: the result ready in < 1 s after `done`.
#
# Per backend: a fresh database (SQLite in the run's temp dir; MariaDB a
# database of its own, MYSQL_DB, dropped at the end), the owners made with
# the CLI, the other accounts generated straight into it with SQL (rows as
# the store writes them: account, profile, voicemail settings; the SIP
# password and access-password hash copied from a CLI-made account), then the
# switch on loopback. Each of REPEAT owners (default 3) logs in and
#  1. syncs the book for the first time (empty stored book: 10,000 contacts
#     and 10,000 contact_changes rows written, then discovery),
#  2. syncs the same book again (nothing changes: discovery alone, mostly),
# each one: open + chunks of the API's maximum (1,000 entries), `done`, then
# polling the token every 20 ms; timed from sending `done` to the first poll
# answering `done`, plus the switch's own apply time (its log). The users
# found must be exactly the planted ones.
# Baselines in the same run, on the same database, through the backend's own
# CLI (sqlite3, mariadb): the same 10,000 numbers in a table of their own and
#  - `query`: the switch's discovery query (profiles.phone UNION
#    accounts.login) joined against them, one statement;
#  - `apply`: in one transaction, the same rows the first sync writes
#    (10,000 contacts + 10,000 contact_changes, set-wise) and the query.
# Then the first sync's apply alone, through the store without HTTP
# (host/examples/contacts_apply.rs, owners: generated accounts with an empty
# book): `Store::apply_contact_upload` itself (its writes batched, 500 rows
# a statement), and a copy of it timed per phase, with one row per INSERT as
# the store had before and with 500 as it has now.
# Knobs: BACKENDS ("sqlite mariadb"), ACCOUNTS, PHONES, BOOK, MATCHES,
# REPEAT, MYSQL_DB (softswitch_bench); BUILD=0 reuses the last release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
BACKENDS=${BACKENDS:-sqlite mariadb}
export ACCOUNTS=${ACCOUNTS:-1000000} PHONES=${PHONES:-10000} BOOK=${BOOK:-10000}
export MATCHES=${MATCHES:-1000} CHUNK=1000
REPEAT=${REPEAT:-3}
MYSQL_DB=${MYSQL_DB:-softswitch_bench}
PHONE_STEP=$((ACCOUNTS / PHONES))
client=$root/bench/contacts_client.py

if [[ ${BUILD:-1} != 0 ]]; then
    ./scripts/setup.sh >/dev/null
    ./scripts/build-guests.sh >/dev/null
    cargo build -q --release -p softswitch --bin softswitch --example contacts_apply
fi
bin=$root/target/release/softswitch
apply=$root/target/release/examples/contacts_apply
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3 >/dev/null; }

tmp=$(mktemp -d)
pids=()
mysql_created=0
stop_switch() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}
cleanup() {
    stop_switch
    if ((mysql_created)); then
        mariadb -u root -e "DROP DATABASE IF EXISTS \`$MYSQL_DB\`;
            REVOKE ALL ON \`$MYSQL_DB\`.* FROM 'softswitch'@'localhost';
            REVOKE ALL ON \`$MYSQL_DB\`.* FROM 'softswitch'@'127.0.0.1';" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/scripts/lib/ports.sh"

ms() { date +%s%3N; }
python3 "$client" numbers >"$tmp/numbers.txt"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "machine: $(nproc) cores ($cpu), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "accounts $ACCOUNTS ($PHONES with a phone), book $BOOK entries ($MATCHES of them users), chunks of $CHUNK, $REPEAT owners"

# The discovery query as the switch runs it (store/contact_uploads.rs,
# `discover`), against a table `book` of the numbers instead of IN lists.
discovery="SELECT p.phone AS number, p.login AS login FROM profiles p WHERE p.phone IN (SELECT number FROM book) \
UNION SELECT a.login AS number, a.login AS login FROM accounts a WHERE a.login IN (SELECT number FROM book)"
explain="SELECT p.phone AS number, p.login AS login FROM profiles p WHERE p.phone IN ('48600001000', '48600002000') \
UNION SELECT a.login AS number, a.login AS login FROM accounts a WHERE a.login IN ('48600001000', '48600002000')"
# The first sync's writes, set-wise, for the owner `baseline` (an empty book).
writes="INSERT INTO contacts (owner, contact_id, name, number, created_at) \
SELECT 'baseline', number, 'Someone', number, 0 FROM book; \
INSERT INTO contact_changes (owner, number, removed, created_at) SELECT 'baseline', number, 0, 0 FROM book;"
undo="DELETE FROM contacts WHERE owner = 'baseline'; DELETE FROM contact_changes WHERE owner = 'baseline';"

# generate BACKEND: the ACCOUNTS generated accounts, copied from owner1's row.
generate_sqlite() {
    sqlite3 "$1" <<SQL
PRAGMA foreign_keys = ON;
BEGIN;
CREATE TEMP TABLE seq AS WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $ACCOUNTS) SELECT n FROM s;
INSERT INTO accounts (login, sip_password_enc, access_password_hash, active, tariff, currency,
                      dialplan_rule, balance_micro, plan, created_at)
    SELECT printf('u%07d', n), t.sip_password_enc, t.access_password_hash, 1, t.tariff, t.currency,
           t.dialplan_rule, t.balance_micro, t.plan, t.created_at
    FROM seq, (SELECT * FROM accounts WHERE login = 'owner1') t ORDER BY n;
INSERT INTO profiles (login, phone)
    SELECT printf('u%07d', n), CASE WHEN n % $PHONE_STEP = 0 THEN printf('4860%07d', n) END FROM seq ORDER BY n;
INSERT INTO voicemail_settings (login, enabled, email_copy, updated_at)
    SELECT printf('u%07d', n), 1, 0, 0 FROM seq ORDER BY n;
COMMIT;
SQL
}
generate_mariadb() {
    mariadb -u root "$MYSQL_DB" <<SQL
START TRANSACTION;
INSERT INTO accounts (login, sip_password_enc, access_password_hash, active, tariff, currency,
                      dialplan_rule, balance_micro, plan, created_at)
    SELECT CONCAT('u', LPAD(s.seq, 7, '0')), t.sip_password_enc, t.access_password_hash, 1, t.tariff,
           t.currency, t.dialplan_rule, t.balance_micro, t.plan, t.created_at
    FROM seq_1_to_$ACCOUNTS s JOIN (SELECT * FROM accounts WHERE login = 'owner1') t;
COMMIT;
START TRANSACTION;
INSERT INTO profiles (login, phone)
    SELECT CONCAT('u', LPAD(seq, 7, '0')),
           CASE WHEN seq % $PHONE_STEP = 0 THEN CONCAT('4860', LPAD(seq, 7, '0')) END
    FROM seq_1_to_$ACCOUNTS;
COMMIT;
START TRANSACTION;
INSERT INTO voicemail_settings (login, enabled, email_copy, updated_at)
    SELECT CONCAT('u', LPAD(seq, 7, '0')), 1, 0, 0 FROM seq_1_to_$ACCOUNTS;
COMMIT;
SQL
}

# baseline BACKEND: "query_ms apply_ms" per line, REPEAT lines.
baseline_sqlite() {
    {
        echo "CREATE TEMP TABLE book (number TEXT PRIMARY KEY NOT NULL);"
        echo "BEGIN;"
        sed "s/.*/INSERT INTO book VALUES ('&');/" "$tmp/numbers.txt"
        echo "COMMIT;"
        echo ".timer on"
        for _ in $(seq 1 "$REPEAT"); do
            echo "SELECT 'query', count(*) FROM ($discovery);"
            echo "BEGIN;"
            echo "$writes"
            echo "SELECT 'apply', count(*) FROM ($discovery);"
            echo "COMMIT;"
            echo ".timer off"
            echo "$undo"
            echo ".timer on"
        done
    } | sqlite3 "$1" | python3 -c '
import re, sys
lines = sys.stdin.read().splitlines()
times = [float(m[1]) * 1000 for l in lines if (m := re.match(r"Run Time: real ([0-9.]+)", l))]
counts = [l for l in lines if l.startswith(("query|", "apply|"))]
step = 6  # query; then BEGIN, two inserts, query, COMMIT
for i in range(0, len(times), step):
    t = times[i:i + step]
    print(f"{t[0]:.1f} {sum(t[1:]):.1f}")
print("counts", " ".join(c.split("|")[1] for c in counts), file=sys.stderr)
'
}
baseline_mariadb() {
    {
        # A plain table: MariaDB cannot open a temporary one twice in a query.
        echo "CREATE TABLE book (number VARCHAR(32) NOT NULL PRIMARY KEY) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;"
        echo "INSERT INTO book VALUES $(sed "s/.*/('&')/" "$tmp/numbers.txt" | paste -sd,);"
        for _ in $(seq 1 "$REPEAT"); do
            echo "SET @t := NOW(6);"
            echo "SELECT 'count', COUNT(*) FROM ($discovery) x;"
            echo "SET @q := TIMESTAMPDIFF(MICROSECOND, @t, NOW(6));"
            echo "SET @t := NOW(6);"
            echo "START TRANSACTION; $writes"
            echo "SELECT 'count', COUNT(*) FROM ($discovery) x;"
            echo "COMMIT;"
            echo "SELECT 'times', @q / 1000, TIMESTAMPDIFF(MICROSECOND, @t, NOW(6)) / 1000;"
            echo "$undo"
        done
    } | mariadb -u root -N -B "$MYSQL_DB" | awk '$1 == "times" { print $2, $3 } $1 == "count" { c = c " " $2 } END { print "counts" c > "/dev/stderr" }'
}

results=$tmp/results.txt
: >"$results"
for backend in $BACKENDS; do
    echo "==> $backend"
    dir=$tmp/$backend
    mkdir -p "$dir"
    api=$(free_port); admin=$(free_port); sip=$(free_sip_port)
    case $backend in
    sqlite) url="sqlite:$dir/softswitch.db" ;;
    mariadb)
        ./scripts/mariadb-test-db.sh >/dev/null
        mariadb -u root <<SQL
DROP DATABASE IF EXISTS \`$MYSQL_DB\`;
CREATE DATABASE \`$MYSQL_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL ON \`$MYSQL_DB\`.* TO 'softswitch'@'localhost';
GRANT ALL ON \`$MYSQL_DB\`.* TO 'softswitch'@'127.0.0.1';
SQL
        mysql_created=1
        url="mysql://softswitch:softswitch@127.0.0.1:3306/$MYSQL_DB"
        ;;
    *) echo "unknown backend $backend" >&2; exit 1 ;;
    esac
    # Rate limits out of the way: every login comes from one address.
    cat >"$dir/softswitch.toml" <<TOML
[database]
url = "$url"
[plugins]
cache_dir = "$dir/cache"
[sip]
udp = ["127.0.0.1:$sip"]
tcp = ["127.0.0.1:$sip"]
tls = ["127.0.0.1:0"]
wss = []
[api]
listen = ["127.0.0.1:$api"]
address_burst = 100000000
address_refill_secs = 1
identity_burst = 100000000
identity_refill_secs = 1
[admin]
listen = "127.0.0.1:$admin"
token = "bench"
[guests.routing]
path = "$root/guests/target/wasm32-wasip2/release/routing_default.wasm"
TOML
    export SOFTSWITCH_CONFIG=$dir/softswitch.toml SOFTSWITCH_DATA_DIR=$dir/data
    export RUST_LOG=warn,softswitch::api::contacts=info
    for r in $(seq 1 "$REPEAT"); do
        "$bin" account add "owner$r" --password owner-sip-secret --username "owner$r" \
            --phone "48500000$(printf %03d "$r")" --access-password bench-pass-1 >/dev/null
    done
    "$bin" account add baseline --password owner-sip-secret >/dev/null

    start=$(ms)
    "generate_$backend" "${url#sqlite:}" >/dev/null
    gen_ms=$(($(ms) - start))
    echo "generated $ACCOUNTS accounts in $((gen_ms / 1000)).$(((gen_ms % 1000) / 100)) s"

    "$bin" run 2>"$dir/switch.log" &
    pids+=($!)
    up=0
    for _ in $(seq 1 600); do
        if curl -ksf "https://127.0.0.1:$api/v1/openapi.json" >/dev/null; then up=1; break; fi
        sleep 0.2
    done
    ((up)) || { echo "the switch did not start" >&2; tail -20 "$dir/switch.log" >&2; exit 1; }
    for r in $(seq 1 "$REPEAT"); do
        python3 "$client" sync "https://127.0.0.1:$api" "$dir/data/tls/self-signed-cert.pem" \
            "owner$r" bench-pass-1 2 >"$dir/sync-$r.json"
        sed -n 1p "$dir/sync-$r.json" | sed "s/^/$backend first /" >>"$results"
        sed -n 2p "$dir/sync-$r.json" | sed "s/^/$backend again /" >>"$results"
    done
    stop_switch
    # The switch's own apply time per sync (first, again, first, again, ...).
    sed 's/\x1b\[[0-9;]*m//g' "$dir/switch.log" | grep 'address book applied' |
        grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2 | paste -sd' ' | sed "s/^/$backend applied /" >>"$results"
    "baseline_$backend" "${url#sqlite:}" 2>"$dir/baseline-counts.txt" | sed "s/^/$backend baseline /" >>"$results"
    echo "$backend generated $gen_ms" >>"$results"
    # The apply alone, through the store (no HTTP, no polling), for
    # generated accounts with an empty book as owners (u0000001, ...).
    owner=0
    for mode in store rows=1,discover=in rows=500,discover=in rows=500,discover=join; do
        for _ in $(seq 1 "$REPEAT"); do
            owner=$((owner + 1))
            "$apply" "$url" "$dir/data" "$(printf u%07d "$owner")" "$tmp/numbers.txt" "$mode" |
                sed "s/^/$backend proto /" >>"$results"
        done
    done
    echo "baseline result counts (query, apply per repeat):$(cut -d' ' -f2- "$dir/baseline-counts.txt")"
    echo "plan of the switch's discovery query (two of its IN-list numbers):"
    case $backend in
    sqlite) sqlite3 "$dir/softswitch.db" "EXPLAIN QUERY PLAN $explain" ;;
    mariadb) mariadb -u root -t "$MYSQL_DB" -e "EXPLAIN $explain" ;;
    esac
    if [[ $backend == mariadb ]]; then
        mariadb -u root -e "DROP DATABASE IF EXISTS \`$MYSQL_DB\`"
    fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$MATCHES" "$(((BOOK + CHUNK - 1) / CHUNK))" <<'PY'
import json, sys
from collections import defaultdict
rows = defaultdict(lambda: defaultdict(list))
gen = {}
for line in open(sys.argv[1]):
    backend, kind, rest = line.rstrip("\n").split(" ", 2)
    if kind in ("first", "again"):
        rows[backend][kind].append(json.loads(rest))
    elif kind == "applied":
        v = [int(x) for x in rest.split()]
        rows[backend]["applied_first"] = v[0::2]
        rows[backend]["applied_again"] = v[1::2]
    elif kind == "baseline":
        q, a = rest.split()
        rows[backend]["query"].append(float(q))
        rows[backend]["apply"].append(float(a))
    elif kind == "generated":
        gen[backend] = int(rest) / 1000
    elif kind == "proto":
        p = json.loads(rest)
        rows[backend]["proto"].append(p)
def p50(v):
    v = sorted(v)
    return v[(len(v) - 1) // 2] if v else float("nan")
def pm(v):
    return f"{p50(v):,.0f} / {max(v):,.0f}" if v else "-"
ok = True
print()
print("times in ms, p50 / max over the owners")
print(f"| backend | accounts generated | upload (open + {sys.argv[3]} chunks) | first sync: done -> ready (switch's apply) | same book again: done -> ready (apply) | baseline query | baseline apply (writes + query) |")
print("|---|---|---|---|---|---|---|")
for b, r in rows.items():
    for kind in ("first", "again"):
        for s in r[kind]:
            if not s["right"] or s["users"] != int(sys.argv[2]):
                ok = False
                print(f"WRONG RESULT on {b} ({kind}): {s}")
    up = [s["upload_ms"] for s in r["first"] + r["again"]]
    first = [s["ready_ms"] for s in r["first"]]
    again = [s["ready_ms"] for s in r["again"]]
    print(f"| {b} | {gen.get(b, 0):.1f} s | {pm(up)} | {pm(first)} ({pm(r['applied_first'])}) "
          f"| {pm(again)} ({pm(r['applied_again'])}) | {p50(r['query']):.1f} / {max(r['query']):.1f} "
          f"| {p50(r['apply']):.1f} / {max(r['apply']):.1f} |")
print()
print("the first sync's apply alone, through the store (host/examples/contacts_apply.rs, no HTTP), ms p50 / max:")
print("| backend | store's apply_contact_upload | copy, 1 row per INSERT (the store's old shape) | copy, 500 rows per INSERT (the store's shape now) | copy, 500 rows per INSERT, discovery as one join |")
print("|---|---|---|---|---|")
phases = {}
for b, r in rows.items():
    by = defaultdict(list)
    for p in r["proto"]:
        by[p["mode"]].append(p)
        if p["users"] != int(sys.argv[2]):
            ok = False
            print(f"WRONG RESULT on {b} ({p['mode']}): {p['users']} users")
    cells = [pm([p["apply_ms"] for p in by[m]]) for m in
             ("store", "rows=1,discover=in", "rows=500,discover=in", "rows=500,discover=join")]
    print(f"| {b} | " + " | ".join(cells) + " |")
    for m in ("rows=1,discover=in", "rows=500,discover=in"):
        names = ["read_staged", "read_stored", "update_delete", "insert_contacts", "read_after",
                 "insert_changes", "discover", "finish", "commit"] if by[m] else []
        phases[(b, m)] = {n: p50([p["phases"][n] for p in by[m]]) for n in names}
for (b, m), ph in phases.items():
    print(f"{b} {m} phases p50 ms: " + ", ".join(f"{n} {v:.0f}" for n, v in ph.items()))
users = {b: {s["users"] for s in r["first"] + r["again"]} for b, r in rows.items()}
print(f"users found per sync: {users} (planted: {sys.argv[2]}); {'all right' if ok else 'SOME WRONG'}")
worst = max((s["ready_ms"] for r in rows.values() for s in r["first"] + r["again"]), default=0)
print(f"goal < 1 s from done to ready: {'holds' if worst < 1000 else 'MISSED'} (worst {worst:,.0f} ms)")
PY
