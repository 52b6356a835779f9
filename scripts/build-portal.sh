#!/usr/bin/env bash
# Builds the self-care portal the switch serves at /portal/ into portal/dist/
# (ignored by git): the portal's own files (portal/src/: HTML, CSS, plain
# JavaScript modules) as they are, plus JsSIP, which comes from the npm
# registry at the version pinned in portal/package.json and
# portal/package-lock.json (`npm ci` into portal/node_modules/, also
# ignored) and is bundled by esbuild into one ES module,
# dist/vendor/jssip.js. Safe to run again: npm runs only when the lock file
# changed, and dist/ is replaced whole.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../portal"

say() { printf '[build-portal] %s\n' "$*"; }

command -v npm >/dev/null || { echo "npm is missing (Node.js 18 or later): scripts/setup.sh installs it" >&2; exit 1; }

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.softswitch-lock.sha256
if [[ -f $stamp && $(cat "$stamp") == "$lock_sum" && -x node_modules/.bin/esbuild ]]; then
    say "node_modules matches package-lock.json"
else
    # --ignore-scripts: no package's install script runs on this machine
    # (esbuild's only checks its binary, which it finds without it).
    say "npm ci (JsSIP and esbuild as pinned in package-lock.json)"
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "$lock_sum" >"$stamp"
fi

out=dist.new
rm -rf "$out"
mkdir -p "$out/vendor"
cp -R src/. "$out/"
node_modules/.bin/esbuild jssip-entry.js --bundle --format=esm --platform=browser \
    --target=es2020 --minify --legal-comments=eof --log-level=warning \
    --outfile="$out/vendor/jssip.js"
# JsSIP is MIT: its licence goes with it.
cp node_modules/jssip/LICENSE.md "$out/vendor/jssip-LICENSE.txt"
rm -rf dist
mv "$out" dist
say "portal built into portal/dist ($(find dist -type f | wc -l) files, version $(node -p 'require("./node_modules/jssip/package.json").version') of JsSIP)"
