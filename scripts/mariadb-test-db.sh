#!/usr/bin/env bash
# Make a local MariaDB ready for the MySQL path of the store tests:
#   SOFTSWITCH_TEST_MYSQL_URL=mysql://softswitch:softswitch@127.0.0.1:3306/softswitch_test \
#     cargo test -p softswitch --lib store
# Idempotent: installs the server only if missing, starts it only if it is
# not answering, and creates the database and user only if absent.
# Needs root (apt-get, and the unix-socket root login Debian sets up).
set -euo pipefail

DB=${SOFTSWITCH_TEST_DB:-softswitch_test}
USER_NAME=${SOFTSWITCH_TEST_DB_USER:-softswitch}
PASSWORD=${SOFTSWITCH_TEST_DB_PASSWORD:-softswitch}

say() { printf '[mariadb-test-db] %s\n' "$*"; }

if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
    say "installing mariadb-server (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client
else
    say "mariadb-server already installed"
fi

client() {
    if command -v mariadb >/dev/null 2>&1; then mariadb "$@"; else mysql "$@"; fi
}

alive() {
    if command -v mariadb-admin >/dev/null 2>&1; then
        mariadb-admin --silent ping >/dev/null 2>&1
    else
        mysqladmin --silent ping >/dev/null 2>&1
    fi
}

if alive; then
    say "server already running"
else
    say "starting server"
    # Containers often lack a working init system, so fall back to mysqld_safe.
    if ! service mariadb start >/dev/null 2>&1; then
        say "service start failed; launching mysqld_safe in the background"
        mkdir -p /run/mysqld
        chown mysql:mysql /run/mysqld 2>/dev/null || true
        nohup mysqld_safe >/tmp/mariadb-test-db.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
        alive && break
        sleep 1
    done
    if ! alive; then
        say "server did not answer within 60 s (see /tmp/mariadb-test-db.log)"
        exit 1
    fi
    say "server is up"
fi

say "ensuring database '$DB' and user '$USER_NAME'@'localhost'/'127.0.0.1'"
client -u root <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
GRANT ALL ON \`$DB\`.* TO '$USER_NAME'@'localhost';
GRANT ALL ON \`$DB\`.* TO '$USER_NAME'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

say "ready: mysql://$USER_NAME:$PASSWORD@127.0.0.1:3306/$DB"
