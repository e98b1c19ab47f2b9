#!/usr/bin/env bash
# Real recorded speech for the distillation corpus: the voice lines of Warzone 2100
# (warzone2100-data, GPL-2+; a woman's voice: mission messages, tutorial, countdowns, about 12
# minutes at 11025 Hz), which the synthetic voices of make-sounds.sh cannot stand in for: a
# student trained on espeak-ng and festival alone did not hear real speakers (docs/default-model.md).
# The clips are joined into ~50 s files with short pauses, alone (speech-real) and over excerpts
# of game music from the training packages at -12..+6 dB voice against bed (speech-real-mixes);
# every fifth file goes to the -held twin of each group, for validation.
# warzone2100-data is not on the keep-out list, nor used by the check set (fetch-check-set.sh).
# Usage: bash make-real-speech.sh CORPUS   (CORPUS: fetch-music.sh's folder, whose game music
#        gives the beds; apt-get and unzip, as root; 140 MB download, about a minute)
# Result: CORPUS/speech-real{,-mixes}{,-held}/wz-speech-NN.flac (22050 Hz mono) with COPYRIGHT.
set -euo pipefail
CORPUS=${1:?usage: make-real-speech.sh CORPUS}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import numpy, soundfile, soxr' ||
  { echo "make-real-speech.sh: $PYTHON needs numpy, soundfile and soxr (musictag's venv has them)" >&2; exit 2; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download warzone2100-data >/dev/null)
dpkg-deb -x "$WORK"/warzone2100-data_*.deb "$WORK/x"
unzip -q "$WORK/x/usr/share/games/warzone2100/base.wz" 'audio/tutorial/*' 'audio/memressp/*' \
  'audio/extra/*' 'audio/vtoltalk/*' 'audio/countdown/*' -d "$WORK/voice"
"$PYTHON" "$HERE/real_speech.py" "$WORK/voice" "$CORPUS"
for group in speech-real speech-real-mixes speech-real-held speech-real-mixes-held; do
  cp "$WORK/x/usr/share/doc/warzone2100-data/copyright" "$CORPUS/$group/COPYRIGHT"
done
