#!/usr/bin/env bash
# Builds the IVR voice prompts (voicemail, verification-code readout, numbers)
# of one language from its committed texts, with espeak-ng and sox (Debian
# packages; installed with apt-get when missing).
#
#   scripts/make-prompts.sh          # prompts/en/prompts.txt -> prompts/en/*.wav
#   scripts/make-prompts.sh de       # prompts/de/prompts.txt -> prompts/de/*.wav
#
# prompts/<lang>/prompts.txt holds one prompt a line, `name<TAB>text`; blank
# lines and lines starting with `#` are ignored, except these settings:
#   # @voice <espeak-ng voice>   (default: <lang>, en-us for en; `espeak-ng --voices`)
#   # @speed <words per minute>  (default: 150)
# The environment variables PROMPT_VOICE and PROMPT_SPEED override them.
#
# Every listed prompt becomes prompts/<lang>/<name>.wav: 8000 Hz, mono, 16-bit
# signed PCM WAV with the plain 44-byte header (checked byte by byte below),
# band-limited to 300-3400 Hz, peak-normalised to -3 dBFS, silence trimmed
# and 50 ms of silence kept at each end. No dither, so the same texts and the
# same espeak-ng/sox versions give the same bytes. A file whose new bytes equal
# the old ones is left untouched; WAVs not listed in prompts.txt (for example
# an operator's own recording) are never deleted or overwritten.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[make-prompts] %s\n' "$*"; }
die() { printf '[make-prompts] error: %s\n' "$*" >&2; exit 1; }

lang=${1:-en}
[[ $lang =~ ^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$ ]] || die "bad language tag '$lang' (expected e.g. en, de, pt-br)"
dir="prompts/$lang"
list="$dir/prompts.txt"
[ -f "$list" ] || die "$list not found: write it first (name<TAB>text per line)"

# --- tools ----------------------------------------------------------------
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
{ command -v sox >/dev/null && command -v soxi >/dev/null; } || need+=(sox)
if ((${#need[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing ${need[*]}; run as root or install: apt-get install ${need[*]}"
        sudo=(sudo)
    fi
    say "installing ${need[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"
fi
espeak_version=$(espeak-ng --version | sed -n 's/.*text-to-speech: \([^ ]*\).*/\1/p')
sox_version=$(sox --version | sed 's/.*SoX v//')
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
say "espeak-ng $espeak_version (package $(pkg_version espeak-ng)), sox $sox_version (package $(pkg_version sox))"

# --- settings -------------------------------------------------------------
voice=$lang
[ "$lang" = en ] && voice=en-us
speed=150
while IFS= read -r line; do
    if [[ $line =~ ^#[[:space:]]*@voice[[:space:]]+([^[:space:]]+) ]]; then voice=${BASH_REMATCH[1]}; fi
    if [[ $line =~ ^#[[:space:]]*@speed[[:space:]]+([0-9]+) ]]; then speed=${BASH_REMATCH[1]}; fi
done <"$list"
voice=${PROMPT_VOICE:-$voice}
speed=${PROMPT_SPEED:-$speed}
echo test | espeak-ng -v "$voice" --stdin -w /dev/null 2>/dev/null \
    || die "espeak-ng has no voice '$voice' (see espeak-ng --voices)"
say "language $lang: $list, voice $voice, $speed words/min"

# --- header check ---------------------------------------------------------
# Plain RIFF/WAVE, 16-byte `fmt ` chunk of format 1 (PCM), 1 channel,
# 8000 Hz, 16000 bytes/s, block align 2, 16 bits, then `data` at byte 36
# running to the end of the file: nothing else in the file.
u16() { od -An -tu2 -j"$2" -N2 --endian=little "$1" | tr -d ' '; }
u32() { od -An -tu4 -j"$2" -N4 --endian=little "$1" | tr -d ' '; }
check_header() {
    local f=$1 size
    size=$(stat -c %s "$f")
    [ "$(head -c 4 "$f")" = RIFF ] || return 1
    [ "$(dd if="$f" bs=1 skip=8 count=8 status=none)" = "WAVEfmt " ] || return 1
    [ "$(dd if="$f" bs=1 skip=36 count=4 status=none)" = data ] || return 1
    [ "$(u32 "$f" 4)" -eq $((size - 8)) ] || return 1
    [ "$(u32 "$f" 16)" -eq 16 ] || return 1      # fmt chunk size
    [ "$(u16 "$f" 20)" -eq 1 ] || return 1       # WAVE_FORMAT_PCM
    [ "$(u16 "$f" 22)" -eq 1 ] || return 1       # channels
    [ "$(u32 "$f" 24)" -eq 8000 ] || return 1    # sample rate
    [ "$(u32 "$f" 28)" -eq 16000 ] || return 1   # byte rate
    [ "$(u16 "$f" 32)" -eq 2 ] || return 1       # block align
    [ "$(u16 "$f" 34)" -eq 16 ] || return 1      # bits per sample
    [ "$(u32 "$f" 40)" -eq $((size - 44)) ] || return 1
    [ "$(soxi -r "$f")" = 8000 ] && [ "$(soxi -c "$f")" = 1 ] && [ "$(soxi -b "$f")" = 16 ] \
        && [ "$(soxi -e "$f")" = "Signed Integer PCM" ] || return 1
}

# --- generate -------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -A seen=()
count=0 written=0 total=0 lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    [[ -z ${line//[[:space:]]/} || $line == \#* ]] && continue
    [[ $line == *$'\t'* ]] || die "$list:$lineno: expected name<TAB>text"
    name=${line%%$'\t'*}
    text=${line#*$'\t'}
    text=${text#"${text%%[![:space:]]*}"}
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_-]*$ ]] || die "$list:$lineno: bad prompt name '$name'"
    [ -n "$text" ] || die "$list:$lineno: empty text for '$name'"
    [ -z "${seen[$name]:-}" ] || die "$list:$lineno: '$name' already defined on line ${seen[$name]}"
    seen[$name]=$lineno

    out="$dir/$name.wav"
    raw="$tmp/$name.raw.wav"
    new="$tmp/$name.wav"
    printf '%s\n' "$text" | espeak-ng -v "$voice" -s "$speed" --stdin -w "$raw"
    # silence: trim everything below -60 dBFS at both ends (espeak's silence is
    #          digital zero, so quiet onsets such as "f" and "s" are kept);
    # sinc:    300-3400 Hz telephone band; rate: to 8 kHz (its own anti-alias);
    # norm:    peak at -3 dBFS; pad: 50 ms of silence before and after.
    sox -D -V1 "$raw" -t wav -e signed-integer -b 16 -c 1 -r 8000 "$new" \
        silence 1 0.005 -60d reverse silence 1 0.005 -60d reverse \
        sinc 300-3400 rate -h 8000 norm -3 pad 0.05 0.05
    check_header "$new" || die "$new: not a plain 44-byte PCM 8000/1/16 WAV"

    if [ -f "$out" ] && cmp -s "$new" "$out"; then
        state=unchanged
    else
        mv "$new" "$out"
        state=written
        written=$((written + 1))
    fi
    count=$((count + 1))
    size=$(stat -c %s "$out")
    total=$((total + size))
    printf '[make-prompts] %-24s %6.2f s %7d B  %-9s "%s"\n' \
        "$name.wav" "$(soxi -D "$out")" "$size" "$state" "$text"
done <"$list"

((count)) || die "$list lists no prompts"
shopt -s nullglob
for f in "$dir"/*.wav; do
    n=$(basename "$f" .wav)
    [ -n "${seen[$n]:-}" ] || say "note: $f is not in $list (kept as is)"
done
say "$count prompts in $dir ($written written, $((count - written)) unchanged), $total bytes ($((total / 1024)) KiB)"
