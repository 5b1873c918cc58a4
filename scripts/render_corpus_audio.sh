#!/usr/bin/env bash
# Render corpus rows as telephone audio: tests/corpus/audio/<id>.wav and tests/corpus/audio/audio.tsv.
#
#   scripts/render_corpus_audio.sh [-o OUT_DIR] [-p PLAN.tsv] [CORPUS.tsv ...]
#
# PLAN.tsv (default: OUT_DIR/audio.tsv, written by scripts/select_corpus_audio.py) has a header and
# the columns `id voice noise`; the text of each id is looked up in the CORPUS files (default:
# tests/corpus/dev.tsv and tests/corpus/heldout.tsv, columns `id text intent also tags`). The plan
# is copied to OUT_DIR/audio.tsv, so the rendered set always says which voice and noise each file has.
#
# Each row: festival with one of three voices (slt = cmu_us_slt_arctic_hts, American female, HTS;
# kal = kal_diphone, American male; ked = ked_diphone, American male), optionally mixed with line
# noise (pink / brown / white hiss about 30 dB below full scale, roughly 12-15 dB SNR), then put on
# the phone line: 300-3400 Hz band, 8 kHz mono, G.711 mu-law, with silence before and after the speech
# as a caller's RTP stream carries it (the VAD has to find the speech).
#
# Needs: apt-get install -y festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k sox
# sox runs with -R (repeatable random numbers) so the same plan gives the same files on every run.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/tests/corpus/audio"
plan=""
while getopts "o:p:" opt; do
  case "$opt" in
    o) out="$OPTARG" ;;
    p) plan="$OPTARG" ;;
    *) echo "usage: $0 [-o OUT_DIR] [-p PLAN.tsv] [CORPUS.tsv ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
plan="${plan:-$out/audio.tsv}"
if [[ $# -eq 0 ]]; then
  set -- "$here/tests/corpus/dev.tsv" "$here/tests/corpus/heldout.tsv"
fi
for tool in text2wave sox soxi; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see header)" >&2; exit 1; }
done
[[ -f "$plan" ]] || { echo "no plan $plan (run scripts/select_corpus_audio.py first)" >&2; exit 1; }
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

voice_cmd() {
  case "$1" in
    slt) echo "(voice_cmu_us_slt_arctic_hts)" ;;
    kal) echo "(voice_kal_diphone)" ;;
    ked) echo "(voice_ked_diphone)" ;;
    *) echo "unknown voice $1" >&2; exit 1 ;;
  esac
}

# id -> text from every corpus file (header lines skipped).
awk -F'\t' 'FNR > 1 && $1 != "" { print $1 "\t" $2 }' "$@" > "$tmp/texts.tsv"

count=0
while IFS=$'\t' read -r id voice noise; do
  [[ -z "$id" || "$id" == "id" || "$id" == \#* ]] && continue
  text="$(awk -F'\t' -v id="$id" '$1 == id { print $2; exit }' "$tmp/texts.tsv")"
  [[ -n "$text" ]] || { echo "id $id is in the plan but in no corpus file" >&2; exit 1; }
  printf '%s\n' "$text" > "$tmp/text.txt"
  text2wave -eval "$(voice_cmd "$voice")" -o "$tmp/tts.wav" "$tmp/text.txt"
  # Normalise, band-limit like a phone line, resample to 8 kHz, pad with silence.
  sox -R "$tmp/tts.wav" -r 8000 -c 1 -b 16 "$tmp/speech.wav" \
      gain -n -3 highpass 300 lowpass 3400 pad 0.4 0.8
  if [[ "$noise" == "none" ]]; then
    cp "$tmp/speech.wav" "$tmp/mixed.wav"
  else
    len="$(soxi -D "$tmp/speech.wav")"
    sox -R -n -r 8000 -c 1 -b 16 "$tmp/noise.wav" synth "$len" "${noise}noise" vol 0.03
    # The line noise is band-limited too: it comes down the same phone line as the voice.
    sox -R -m "$tmp/speech.wav" "$tmp/noise.wav" "$tmp/mixed.wav" highpass 300 lowpass 3400 gain -n -3
  fi
  sox -R "$tmp/mixed.wav" -r 8000 -c 1 -e u-law -b 8 "$out/$id.wav"
  count=$((count + 1))
done < "$plan"

if [[ "$(realpath "$plan")" != "$(realpath -m "$out/audio.tsv")" ]]; then
  cp "$plan" "$out/audio.tsv"
fi
echo "wrote $count files to $out" >&2
