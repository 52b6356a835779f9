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

# Guests in other languages: a folder of guests/<kind>/ named *-py (app.py,
# built with componentize-py from PyPI, pinned, in a venv under
# guests/target) or *-js (app.js, built with componentize-js from the npm
# registry, pinned, under guests/target) becomes
# <kind-prefix>_<name>.wasm with `-` as `_`: sms-providers/messagebird-py ->
# sms_messagebird_py.wasm, routing/lcr-js -> routing_lcr_js.wasm.
componentize_py_version=0.25.1
venv=guests/target/py-venv
componentize_js_version=0.23.0
js_tools=guests/target/js-tools
componentize_js=$js_tools/node_modules/.bin/componentize-js
# kind -> WIT folder (wit/<world>/<version>: the version these guests are
# written for, not necessarily the newest the switch serves), world, file prefix
declare -A worlds=([sms-providers]="sms-provider/0.1.0 provider sms" [routing]="routing/0.1.0 router routing")

ensure_componentize_py() {
    "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $componentize_py_version" && return
    echo "==> installing componentize-py $componentize_py_version (pip, in $venv)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "componentize-py==$componentize_py_version"
}

ensure_componentize_js() {
    [[ $("$componentize_js" --version 2>/dev/null) == "$componentize_js_version" ]] && return
    command -v npm >/dev/null || { echo "npm is missing (Node.js 20 or later): scripts/setup.sh installs it" >&2; exit 1; }
    echo "==> installing componentize-js $componentize_js_version (npm, in $js_tools)"
    mkdir -p "$js_tools"
    npm install --prefix "$js_tools" --no-audit --no-fund --silent \
        "@bytecodealliance/componentize-js@$componentize_js_version"
}

mkdir -p "$out"
for app in guests/*/*-py/app.py guests/*/*-js/app.js; do
    [[ -e $app ]] || continue
    folder=$(dirname "$app")
    kind=$(basename "$(dirname "$folder")")
    read -r wit world prefix <<<"${worlds[$kind]:?no world known for guests in guests/$kind}"
    name=$(basename "$folder")
    wasm="$out/${prefix}_${name//-/_}.wasm"
    if [[ -f $wasm && -z $(find "$folder" "wit/$wit" -newer "$wasm" -type f -print -quit) ]]; then
        echo "==> $wasm is up to date"
        continue
    fi
    echo "==> $folder -> $wasm"
    case $app in
    *.py)
        ensure_componentize_py
        "$venv/bin/componentize-py" -d "wit/$wit" -w "$world" componentize app -p "$folder" -o "$wasm"
        ;;
    *.js)
        ensure_componentize_js
        # The switch grants guests no HTTP, fetch or stdio: left out.
        "$componentize_js" "$app" --wit "wit/$wit" --world-name "$world" -d http fetch-event stdio -o "$wasm"
        ;;
    esac
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
