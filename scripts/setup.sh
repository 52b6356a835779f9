#!/usr/bin/env bash
# Installs what building and testing the switch needs on a Debian machine.
# Idempotent: installs only what is missing, and says what it does.
set -euo pipefail

say() { printf '[setup] %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    say "cargo not found: install a Rust toolchain (rustup, Rust >= 1.95) first" >&2
    exit 1
fi
say "$(cargo --version)"

# C toolchain for crates that build C (bundled SQLite, ring); SIPp
# (sip-tester) and baresip as the real SIP peers of the black-box tests;
# python3-aiosmtpd as the SMTP server the client API tests send e-mails to;
# iproute2 and nftables for the media test that puts two phones behind NATs
# made of network namespaces (it needs root); coturn (for its
# turnutils_stunclient) and stun-client (the classic RFC 3489 client) as the
# STUN server's real clients (Debian 12 has no stuntman-client); chromium and
# chromium-driver for the browser tests of the activation and reset pages and
# of the portal; python3-venv for scripts/api-fuzz.sh (schemathesis from PyPI
# in a venv); socat to put TLS in front of a SIPp carrier (Debian's SIPp is
# built without TLS); mpg123 to decode the MP3 of voicemail e-mails in the
# tests; cmake to build the libopus the `opus` crate bundles (the media
# engine's Opus); openssl (its s_client) as the TLS tests' client and
# certificate maker; curl and sqlite3 for the file-sharing test (an upload
# that waits for 100 Continue, the rows left); haproxy and rsync for
# scripts/galera.sh's test cluster (HAProxy moves the switch to a live Galera
# node when one dies; rsync copies a joining node's data), which installs
# mariadb-server and galera-4 itself.
packages=(build-essential pkg-config cmake sip-tester baresip-core python3-aiosmtpd iproute2 nftables coturn stun-client chromium chromium-driver python3-venv socat mpg123 openssl curl sqlite3 haproxy rsync)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt-get)"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
else
    say "apt packages present: ${packages[*]}"
fi

if rustup target list --installed | grep -qx wasm32-wasip2; then
    say "rust target wasm32-wasip2 present"
else
    say "installing rust target wasm32-wasip2"
    rustup target add wasm32-wasip2
fi

# cargo-fuzz for scripts/fuzz.sh (libFuzzer targets in fuzz/); it runs on the
# stable toolchain with RUSTC_BOOTSTRAP=1, so no nightly is installed.
if cargo fuzz --version >/dev/null 2>&1; then
    say "$(cargo fuzz --version) present"
else
    say "installing cargo-fuzz (cargo install)"
    cargo install --locked cargo-fuzz
fi

# Node.js and npm for the JavaScript guests (scripts/build-guests.sh installs
# componentize-js from the npm registry) and the portal (scripts/build-portal.sh
# installs JsSIP and esbuild from it); the machine's own Node.js 20 when it
# has one, else Debian's.
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
    say "node $(node --version) and npm $(npm --version) present"
else
    say "installing nodejs and npm (apt-get)"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
