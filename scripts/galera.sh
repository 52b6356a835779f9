#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on loopback with HAProxy in front, for the
# cluster failover test (tests/galera.rs) and for trying the switch on one by
# hand. Needs root (apt-get, and it runs mariadbd as the `mysql` user).
#
#   scripts/galera.sh start    make the cluster (or complete it: a node that
#                              died is started again and rejoins), database
#                              `softswitch`, user softswitch/softswitch, and
#                              HAProxy on one port
#   scripts/galera.sh stop     kill everything it started, remove GALERA_DIR
#   scripts/galera.sh kill N   SIGKILL DB node N (1-3), as a crash would
#   scripts/galera.sh status   wsrep_cluster_size from each live node, and
#                              what HAProxy thinks of each
#
# The switch connects to HAProxy:
#   [database]
#   url = "mysql://softswitch:softswitch@127.0.0.1:4300/softswitch"
# HAProxy sends every connection to node 1 while it passes its health check
# and to node 2, then node 3, when it does not (the others are `backup`
# servers): one writer at a time, so Galera never has to refuse a commit for
# a conflict with a write on another node.
#
# Environment:
#   GALERA_DIR        where datadirs, sockets, configs and logs go
#                     (default /tmp/softswitch-galera); `stop` deletes it
#   GALERA_PORT_BASE  HAProxy listens on BASE (default 4300); node N takes
#                     client port BASE+5+N (4306-4308) and, for Galera's own
#                     traffic, BASE+10+3(N-1) (group communication), +1
#                     (incremental state transfer) and +2 (rsync state
#                     transfer): 4310-4318 by default
#
# A MariaDB already running (the system one on 3306 that
# scripts/mariadb-test-db.sh starts) is left alone: these servers read only
# their own configuration files (--defaults-file), with their own sockets.
# Idempotent: `start` on a running cluster checks it and ensures the database
# and users; `stop` on nothing does nothing.
set -euo pipefail

GALERA_DIR=${GALERA_DIR:-/tmp/softswitch-galera}
BASE=${GALERA_PORT_BASE:-4300}
HAPROXY_PORT=$BASE
PROVIDER=/usr/lib/galera/libgalera_smm.so
DB=softswitch
DB_USER=softswitch
DB_PASSWORD=softswitch
CHECK_USER=haproxy_check
MARKER=.softswitch-galera

say() { printf '[galera] %s\n' "$*"; }
die() {
    printf '[galera] error: %s\n' "$*" >&2
    exit 1
}

client_port() { echo $((BASE + 5 + $1)); }
gcomm_port() { echo $((BASE + 10 + 3 * ($1 - 1))); }
node_dir() { echo "$GALERA_DIR/node$1"; }

# Whether process PID runs (a zombie does not).
running() {
    local stat
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
    [[ ! ${stat##*) } =~ ^Z ]]
}

# The pid in FILE if that process is alive and is COMMAND (a pid file left
# by a dead process may name a pid reused by something else). A zombie, a
# killed server its new parent has not reaped yet, is dead.
live_pid() {
    local file=$1 command=$2 pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat /proc/"$pid"/comm 2>/dev/null) == "$command" ]] && running "$pid" || return 1
    echo "$pid"
}
node_pid() { live_pid "$(node_dir "$1")/launch.pid" mariadbd; }
haproxy_pid() { live_pid "$GALERA_DIR/haproxy.pid" haproxy; }

sql() { # sql N [client args...]: as root over node N's socket
    local n=$1
    shift
    mariadb --defaults-file="$(node_dir "$n")/my.cnf" -u root --batch --skip-column-names "$@"
}

wsrep_status() { # wsrep_status N VARIABLE
    sql "$1" -e "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | awk '{print $2}'
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and runs mariadbd as the mysql user)"
}

install_missing() {
    local missing=()
    local p
    for p in mariadb-server mariadb-client galera-4 rsync haproxy; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]} (apt-get)"
        apt-get update -qq
        # policy-rc.d or no init system: the packages' own services may not
        # start, which is what we want; this script starts its own servers.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        say "packages present: mariadb-server mariadb-client galera-4 rsync haproxy"
    fi
    [[ -f $PROVIDER ]] || die "$PROVIDER is missing (Debian package galera-4)"
}

write_node_config() {
    local n=$1 dir gcomm peers="" i
    dir=$(node_dir "$n")
    gcomm=$(gcomm_port "$n")
    for i in 1 2 3; do
        peers+="${peers:+,}127.0.0.1:$(gcomm_port "$i")"
    done
    cat >"$dir/my.cnf" <<EOF
# Written by scripts/galera.sh: node $n of the loopback Galera cluster.
[client]
socket = $dir/mysqld.sock

[mariadbd]
user = mysql
datadir = $dir/data
socket = $dir/mysqld.sock
pid-file = $dir/mariadbd.pid
log-error = $dir/error.log
bind-address = 127.0.0.1
port = $(client_port "$n")
skip-name-resolve
# HAProxy's health checks connect every half second.
max_connect_errors = 1000000
innodb_buffer_pool_size = 64M
innodb_log_file_size = 48M
# What Galera needs.
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_flush_log_at_trx_commit = 2
wsrep_on = ON
wsrep_provider = $PROVIDER
wsrep_cluster_name = softswitch-galera
wsrep_cluster_address = gcomm://$peers
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:$gcomm
wsrep_node_incoming_address = 127.0.0.1:$(client_port "$n")
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:$((gcomm + 2))
# Three nodes on one host: every Galera port set apart. A killed node is
# suspected after 2 s of silence and the survivors go on without it (the
# default, 5 s, stalls every commit for that long); shorter makes busy
# survivors suspect each other and fall into non-primary components.
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:$gcomm;ist.recv_addr=127.0.0.1:$((gcomm + 1));evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;gcache.size=64M"
EOF
}

# Starts node N's mariadbd in the background (extra args: --wsrep-new-cluster).
start_node() {
    local n=$1 dir
    shift
    dir=$(node_dir "$n")
    say "starting node $n (client port $(client_port "$n"), galera port $(gcomm_port "$n"))${*:+ $*}"
    # Not attached to the caller's stdout/stderr: a test reading this
    # script's output would otherwise wait for the servers to exit.
    nohup mariadbd --defaults-file="$dir/my.cnf" "$@" </dev/null >>"$dir/stdout.log" 2>&1 &
    # Its own pid file (pid-file, written as mysql) comes later and goes
    # away with a clean shutdown; this one is the script's.
    local pid=$! i
    echo "$pid" >"$dir/launch.pid"
    # Until nohup has exec'd the server, the pid's command is something else.
    for i in $(seq 1 50); do
        [[ -e /proc/$pid && $(cat /proc/"$pid"/comm 2>/dev/null) != mariadbd ]] || break
        sleep 0.1
    done
}

# Waits until node N answers and is Synced with the cluster.
wait_synced() {
    local n=$1 state="" i
    for i in $(seq 1 240); do
        if ! node_pid "$n" >/dev/null; then
            tail -n 30 "$(node_dir "$n")/error.log" >&2 || true
            die "node $n exited while starting (log above: $(node_dir "$n")/error.log)"
        fi
        state=$(wsrep_status "$n" wsrep_local_state_comment || true)
        if [[ $state == Synced ]]; then
            say "node $n synced (cluster size $(wsrep_status "$n" wsrep_cluster_size))"
            return 0
        fi
        sleep 0.5
    done
    tail -n 30 "$(node_dir "$n")/error.log" >&2 || true
    die "node $n not synced after 120 s (state '${state:-no answer}', log: $(node_dir "$n")/error.log)"
}

ensure_database_and_users() {
    local n=$1
    say "ensuring database '$DB', user '$DB_USER' and the health-check user '$CHECK_USER' (through node $n)"
    sql "$n" <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON \`$DB\`.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON \`$DB\`.* TO '$DB_USER'@'localhost';
CREATE USER IF NOT EXISTS '$CHECK_USER'@'127.0.0.1';
SQL
}

# HAProxy's health check of a node: a MariaDB login as $CHECK_USER that
# passes only when the node is Synced (wsrep_local_state 4) and ready. A
# node that answers but is joining, or desynced as a donor, gets no
# switch: it would refuse or lag behind the others' writes.
write_check_script() {
    cat >"$GALERA_DIR/galera-check.sh" <<EOF
#!/bin/sh
# Written by scripts/galera.sh. HAProxy runs it as: ... ADDRESS PORT.
status=\$(mariadb -h "\$3" -P "\$4" -u $CHECK_USER --connect-timeout=1 -N -B -e \\
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_ready')" 2>/dev/null) || exit 1
echo "\$status" | grep -q '^wsrep_local_state[[:space:]]4\$' || exit 1
echo "\$status" | grep -q '^wsrep_ready[[:space:]]ON\$' || exit 1
EOF
    chmod +x "$GALERA_DIR/galera-check.sh"
}

write_haproxy_config() {
    local i role
    write_check_script
    cat >"$GALERA_DIR/haproxy.cfg" <<EOF
# Written by scripts/galera.sh.
global
    stats socket $GALERA_DIR/haproxy.sock mode 600 level admin
    # The health check is a script (galera-check.sh): it asks each node
    # whether it is in sync, which a login alone does not tell.
    external-check
    insecure-fork-wanted
    # One thread: HAProxy 2.6 (Debian 12) aborts on a bug condition when an
    # external check and a connection error meet on different threads.
    nbthread 1

defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h
    # A connection refused by a dead node is tried again on a live one.
    retries 2
    option redispatch

listen galera
    bind 127.0.0.1:$HAPROXY_PORT
    # galera-check.sh every 500 ms: a node not Synced, or not answering,
    # fails it; a node failing two checks is left (within about a second),
    # one passing two is taken back. Sessions on a server marked down are
    # cut, and sessions on a backup are cut when the first server is back:
    # one writer.
    option external-check
    external-check path "/usr/bin:/bin"
    external-check command $GALERA_DIR/galera-check.sh
    # A connection the node refuses marks it down at once (no waiting for
    # the checks), so the retry goes to the next server.
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2 on-marked-down shutdown-sessions observe layer4 error-limit 1 on-error mark-down
EOF
    for i in 1 2 3; do
        if ((i == 1)); then
            role=" on-marked-up shutdown-backup-sessions"
        else
            role=" backup"
        fi
        echo "    server node$i 127.0.0.1:$(client_port "$i") check$role" >>"$GALERA_DIR/haproxy.cfg"
    done
}

start_haproxy() {
    if haproxy_pid >/dev/null; then
        say "haproxy already running on 127.0.0.1:$HAPROXY_PORT"
        return 0
    fi
    write_haproxy_config
    haproxy -c -q -f "$GALERA_DIR/haproxy.cfg" || die "haproxy rejected $GALERA_DIR/haproxy.cfg"
    # Its warnings (a server going down or up) go to haproxy.log.
    say "starting haproxy on 127.0.0.1:$HAPROXY_PORT (node 1 active, nodes 2 and 3 backup)"
    nohup haproxy -db -f "$GALERA_DIR/haproxy.cfg" </dev/null >>"$GALERA_DIR/haproxy.log" 2>&1 &
    local pid=$! i
    echo "$pid" >"$GALERA_DIR/haproxy.pid"
    for i in $(seq 1 50); do
        [[ -e /proc/$pid && $(cat /proc/"$pid"/comm 2>/dev/null) != haproxy ]] || break
        sleep 0.1
    done
}

wait_haproxy() {
    local i
    for i in $(seq 1 60); do
        haproxy_pid >/dev/null || die "haproxy exited (see $GALERA_DIR/haproxy.log)"
        if mariadb --no-defaults -h 127.0.0.1 -P "$HAPROXY_PORT" -u "$DB_USER" -p"$DB_PASSWORD" \
            --connect-timeout=2 -e 'SELECT 1' "$DB" >/dev/null 2>&1; then
            say "ready: mysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$HAPROXY_PORT/$DB"
            return 0
        fi
        sleep 0.5
    done
    die "nothing answers through haproxy on 127.0.0.1:$HAPROXY_PORT (see $GALERA_DIR/haproxy.log)"
}

cmd_start() {
    need_root
    install_missing
    command -v ss >/dev/null || command -v lsof >/dev/null ||
        die "the rsync state transfer needs ss (iproute2) or lsof"
    if [[ -e $GALERA_DIR && ! -e $GALERA_DIR/$MARKER && -n $(ls -A "$GALERA_DIR") ]]; then
        die "$GALERA_DIR exists and is not ours (no $MARKER): choose another GALERA_DIR"
    fi
    mkdir -p "$GALERA_DIR"
    touch "$GALERA_DIR/$MARKER"
    chmod 755 "$GALERA_DIR"

    local n live=() dead=()
    for n in 1 2 3; do
        if node_pid "$n" >/dev/null; then live+=("$n"); else dead+=("$n"); fi
    done

    if ((${#live[@]} == 0)); then
        # No node left to join: a new cluster from scratch.
        say "making a new cluster in $GALERA_DIR"
        for n in 1 2 3; do
            rm -rf "$(node_dir "$n")"
            mkdir -p "$(node_dir "$n")/data"
            write_node_config "$n"
            chown -R mysql:mysql "$(node_dir "$n")"
        done
        runuser -u mysql -- test -w "$(node_dir 1)/data" ||
            die "the mysql user cannot write to $(node_dir 1)/data: choose a GALERA_DIR it can reach (e.g. under /tmp)"
        say "initialising node 1's datadir (mariadb-install-db)"
        mariadb-install-db --defaults-file="$(node_dir 1)/my.cnf" --user=mysql \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$(node_dir 1)/install.log" 2>&1 ||
            { tail -n 30 "$(node_dir 1)/install.log" >&2; die "mariadb-install-db failed"; }
        start_node 1 --wsrep-new-cluster
        wait_synced 1
        live=(1)
        dead=(2 3)
    else
        say "nodes running: ${live[*]}"
    fi

    # The others join (one at a time: each gets a state transfer).
    for n in "${dead[@]}"; do
        if [[ ! -f $(node_dir "$n")/my.cnf ]]; then
            mkdir -p "$(node_dir "$n")/data"
            write_node_config "$n"
            chown -R mysql:mysql "$(node_dir "$n")"
        fi
        start_node "$n"
        wait_synced "$n"
    done
    ensure_database_and_users "${live[0]}"
    start_haproxy
    wait_haproxy
    cmd_status
}

cmd_stop() {
    if [[ ! -e $GALERA_DIR ]]; then
        say "nothing to stop ($GALERA_DIR does not exist)"
        return 0
    fi
    [[ -e $GALERA_DIR/$MARKER ]] || die "$GALERA_DIR is not ours (no $MARKER): not touching it"
    local pids=() pid n
    if pid=$(haproxy_pid); then pids+=("$pid"); fi
    for n in 1 2 3; do
        if pid=$(node_pid "$n"); then pids+=("$pid"); fi
        # An rsync daemon of a state transfer cut short.
        if pid=$(live_pid "$(node_dir "$n")/data/rsync_sst.pid" rsync); then pids+=("$pid"); fi
    done
    if ((${#pids[@]})); then
        # Killed outright: the data is thrown away next.
        say "killing ${pids[*]}"
        kill -KILL "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 1 50); do
            local alive=0
            for pid in "${pids[@]}"; do
                running "$pid" && alive=1
            done
            ((alive)) || break
            sleep 0.1
        done
    fi
    rm -rf "$GALERA_DIR"
    say "stopped; removed $GALERA_DIR"
}

cmd_kill() {
    local n=${1:-}
    [[ $n =~ ^[123]$ ]] || die "usage: $0 kill N (N = 1, 2 or 3)"
    local pid
    if pid=$(node_pid "$n"); then
        kill -KILL "$pid"
        for _ in $(seq 1 50); do
            node_pid "$n" >/dev/null || break
            sleep 0.1
        done
        say "node $n (pid $pid, port $(client_port "$n")) killed"
    else
        say "node $n is not running"
    fi
}

cmd_status() {
    local n pid size state
    for n in 1 2 3; do
        if pid=$(node_pid "$n"); then
            size=$(wsrep_status "$n" wsrep_cluster_size || true)
            state=$(wsrep_status "$n" wsrep_local_state_comment || true)
            say "node $n (port $(client_port "$n"), pid $pid): wsrep_cluster_size=${size:-?} state=${state:-no answer}"
        else
            say "node $n (port $(client_port "$n")): down"
        fi
    done
    if haproxy_pid >/dev/null; then
        if command -v socat >/dev/null && [[ -S $GALERA_DIR/haproxy.sock ]]; then
            echo "show stat" | socat stdio "unix-connect:$GALERA_DIR/haproxy.sock" 2>/dev/null |
                awk -F, '$1 == "galera" && $2 ~ /^node/ { printf "[galera] haproxy: %s %s\n", $2, $18 }' || true
        else
            say "haproxy running on 127.0.0.1:$HAPROXY_PORT"
        fi
    else
        say "haproxy: down"
    fi
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
kill) cmd_kill "${2:-}" ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|kill N|status" >&2
    exit 2
    ;;
esac
