#!/usr/bin/env bash
# Builds every Wasm guest (routing guests and sandbox fixtures) as
# wasm32-wasip2 components into guests/target/wasm32-wasip2/release/.
# Safe to run again: cargo rebuilds only what changed.
set -euo pipefail

target=wasm32-wasip2
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if rustup target list --installed | grep -qx "$target"; then
    echo "==> rust target $target already installed"
else
    echo "==> installing rust target $target"
    rustup target add "$target"
fi

echo "==> cargo build --release --target $target --manifest-path guests/Cargo.toml"
cargo build --release --target "$target" --manifest-path guests/Cargo.toml

out="guests/target/$target/release"
echo "==> components in $out:"
shopt -s nullglob
wasm=("$out"/*.wasm)
if ((${#wasm[@]} == 0)); then
    echo "no .wasm files produced" >&2
    exit 1
fi
for f in "${wasm[@]}"; do
    printf '  %8d bytes  %s\n' "$(stat -c %s "$f")" "$f"
done
