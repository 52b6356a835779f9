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

# Python guests: a folder of guests/<kind>/ named *-py whose app.py is built
# with componentize-py (from PyPI, pinned, in a venv under guests/target) into
# <kind-prefix>_<name>_py.wasm, e.g. sms-providers/messagebird-py ->
# sms_messagebird_py.wasm. The WIT folder is the kind's world.
componentize_py_version=0.25.1
venv=guests/target/py-venv
declare -A py_world=([sms-providers]="sms-provider provider sms" [routing]="routing router routing")
for app in guests/*/*-py/app.py; do
    [[ -e $app ]] || continue
    folder=$(dirname "$app")
    kind=$(basename "$(dirname "$folder")")
    read -r wit world prefix <<<"${py_world[$kind]:?no world known for Python guests in guests/$kind}"
    name=$(basename "$folder")
    wasm="$out/${prefix}_${name//-/_}.wasm"
    if [[ -f $wasm && -z $(find "$folder" "wit/$wit" -newer "$wasm" -type f -print -quit) ]]; then
        echo "==> $wasm is up to date"
        continue
    fi
    if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $componentize_py_version"; then
        echo "==> installing componentize-py $componentize_py_version (pip, in $venv)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "componentize-py==$componentize_py_version"
    fi
    echo "==> componentize-py: $folder -> $wasm"
    mkdir -p "$out"
    "$venv/bin/componentize-py" -d "wit/$wit" -w "$world" componentize app -p "$folder" -o "$wasm"
done

# JavaScript guests: a folder of guests/<kind>/ named *-js whose app.js is
# built with componentize-js (from the npm registry, pinned, installed under
# guests/target) into <kind-prefix>_<name>_js.wasm, e.g. routing/lcr-js ->
# routing_lcr_js.wasm. The guests get no HTTP, fetch or stdio (the switch
# grants none), so those WASI features are left out of the component.
componentize_js_version=0.23.0
js_tools=guests/target/js-tools
declare -A js_world=([routing]="routing router routing" [sms-providers]="sms-provider provider sms")
for app in guests/*/*-js/app.js; do
    [[ -e $app ]] || continue
    folder=$(dirname "$app")
    kind=$(basename "$(dirname "$folder")")
    read -r wit world prefix <<<"${js_world[$kind]:?no world known for JavaScript guests in guests/$kind}"
    name=$(basename "$folder")
    wasm="$out/${prefix}_${name//-/_}.wasm"
    if [[ -f $wasm && -z $(find "$folder" "wit/$wit" -newer "$wasm" -type f -print -quit) ]]; then
        echo "==> $wasm is up to date"
        continue
    fi
    componentize_js=$js_tools/node_modules/.bin/componentize-js
    if [[ $("$componentize_js" --version 2>/dev/null) != "$componentize_js_version" ]]; then
        command -v npm >/dev/null || { echo "npm is missing (Node.js 20 or later): scripts/setup.sh installs it" >&2; exit 1; }
        echo "==> installing componentize-js $componentize_js_version (npm, in $js_tools)"
        mkdir -p "$js_tools"
        npm install --prefix "$js_tools" --no-audit --no-fund --silent \
            "@bytecodealliance/componentize-js@$componentize_js_version"
    fi
    echo "==> componentize-js: $folder -> $wasm"
    mkdir -p "$out"
    "$componentize_js" "$app" --wit "wit/$wit" --world-name "$world" -d http fetch-event stdio -o "$wasm"
done

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
