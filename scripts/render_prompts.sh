#!/usr/bin/env bash
# Render pbx_router/prompts/prompts.yaml to Asterisk-playable WAVs: pbx_router/prompts/en/<name>.wav,
# 8 kHz, mono, 16-bit signed linear PCM (Asterisk's "wav" format), telephone band, trimmed silence.
#
# Needs: apt-get install -y festival festvox-us-slt-hts sox   (and python3 with PyYAML)
# Usage: scripts/render_prompts.sh [--src PROMPTS.yaml --out DIR] [name ...]   (no names: every prompt)
#   default: pbx_router/prompts/prompts.yaml -> pbx_router/prompts/en/ (the booking flow's prompts);
#   the example clinic's own messages: --src examples/sounds/clinic-prompts.yaml --out examples/sounds/en/custom
# Admins then copy the WAVs to Asterisk's sounds directory (docs/asterisk.md).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/pbx_router/prompts/prompts.yaml"
out="$here/pbx_router/prompts/en"
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --src) src="$(realpath "$2")"; shift 2 ;;
    --out) mkdir -p "$2"; out="$(realpath "$2")"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-$here/.venv/bin/python}"
[[ -x "$python" ]] || python=python3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tool in text2wave sox; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see header)" >&2; exit 1; }
done
mkdir -p "$out"

# name<TAB>text lines; YAML folded text is one line already.
"$python" - "$src" "$@" > "$tmp/list.tsv" <<'PY'
import sys, yaml
prompts = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
wanted = set(sys.argv[2:])
for name, text in prompts.items():
    if not wanted or name in wanted:
        print(f"{name}\t{' '.join(str(text).split())}")
PY

count=0
while IFS=$'\t' read -r name text; do
  printf '%s\n' "$text" > "$tmp/text.txt"
  text2wave -eval "(voice_cmu_us_slt_arctic_hts)" -o "$tmp/tts.wav" "$tmp/text.txt"
  # Trim leading/trailing silence (prompts chain without gaps), keep a short tail, phone band.
  sox "$tmp/tts.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$name.wav" \
      silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
      highpass 300 lowpass 3400 gain -n -3 pad 0 0.15
  count=$((count + 1))
done < "$tmp/list.tsv"
echo "wrote $count prompts to $out" >&2
