#!/usr/bin/env bash
# Generate freely licensed audio with the sounds the distillation corpus lacks (issue 20, part 1):
# voices (speech and singing, male and female), choirs, piano / harp / harpsichord and every other
# General MIDI family, and generated pop, rock, dance, techno, metal, country, jazz, latin and
# ambient arrangements. Nothing is downloaded but Debian packages and PyPI's music21 and mido
# (in DEST/.venv, never the project's environment).
# Groups (first-level folders, each can be held out on its own; make_sounds.py says how each is made):
#   render-timgm6mb, render-opl3: music21 corpus scores (Bach chorales, Palestrina,
#       Monteverdi, quartets, keyboard works, fiddle and folk tunes) through fluidsynth with one
#       soundfont each; the two groups share no score. GM programs are varied per part (choir
#       presets 52/53/54 for most sung repertoire), tempo +-20 %, velocity, reverb, chorus, width.
#   arrangements: mido-generated drums, bass, chords and lead in nine styles, both soundfonts.
#   voices: espeak-ng (en/de/fr/es/it/la/pt/nl/sv/pl, male and female variants, pitch and speed
#       varied, and sung-like sustained syllables on folk melodies) and festival (HTS slt female,
#       kal and ked diphone male) speaking and singing (festival's singing mode).
#   voice-mixes: new voice takes over new instrumental beds, voice -12..+6 dB against the bed (score
#       beds from 15 % of the corpus kept from the render groups).
# Kept out (an acceptance set uses them): the Fluid R3 soundfont in every packaging, MuseScore
# General included, which is built largely from Fluid R3 Mono's samples (never installed here:
# fluidsynth is installed without recommends and always given an explicit soundfont), the
# audio of gcompris-qt-data, csmash-demosong, 0ad-data, asc-music, pyo/pygame/librosa examples,
# npm audio-lena, and music21's Mozart K. 545, Joplin, Corelli op. 3 no. 1, Bach BWV 66.6 / 4.8 /
# 269, Beethoven op. 18 no. 1 and the reel "Acacia": EXCLUDED_SOURCES at the top of make_sounds.py
# filters them out of the score list and the script fails if any manifest row matches it.
# Usage: bash make-sounds.sh DEST        (root for apt-get; about 10 h of audio, 1.5 GB)
#   SOUNDS_HOURS=10     hours of audio in all (split by GROUP_SHARE in make_sounds.py)
#   SOUNDS_JOBS=2       parallel renders
#   SOUNDS_MINUTES=     stop starting new files after this many minutes (smaller corpus, on time)
#   SOUNDS_SEED=20      random seed (the same seed and versions give the same corpus)
# A second call with the same seed resumes: the files the manifest lists are kept, each group goes on
# after its last file, unlisted audio under the group folders is deleted. Rendering ran 5-16x
# real time with 2 jobs on a shared 2-core machine (load 5-12): 10 h takes 40 minutes to 2 hours, so use
# SOUNDS_MINUTES for a deadline and call again later to top up.
# Result: DEST/<group>/*.flac (22050 Hz; renders stereo, voices mono, 16-bit), DEST/<group>/COPYRIGHT,
# DEST/manifest-sounds.tsv (path, source: corpus piece / generator, PyPI project and Debian packages
# with versions, licence: the group's COPYRIGHT file), and DEST/SUMMARY (files and hours per group).
set -euo pipefail
DEST=${1:?usage: make-sounds.sh DEST}
HOURS=${SOUNDS_HOURS:-10}
JOBS=${SOUNDS_JOBS:-2}
SEED=${SOUNDS_SEED:-20}
MINUTES=${SOUNDS_MINUTES:-1000000000}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FORBIDDEN=(fluid-soundfont-gm fluid-soundfont-gs fluidr3mono-gm-soundfont musescore-general-soundfont)
PACKAGES=(fluidsynth timgm6mb-soundfont opl3-soundfont sox
          espeak-ng festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k)
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)

missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-cache show fluidsynth >/dev/null 2>&1 || apt-get update >/dev/null
  # --no-install-recommends: fluidsynth recommends fluid-soundfont-gm, which must stay out.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${FORBIDDEN[@]}"; do
  if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    echo "make-sounds.sh: warning: $p is installed; it is never used here (explicit soundfont paths)" >&2
  fi
done

if [[ ! -x $DEST/.venv/bin/python ]]; then python3 -m venv "$DEST/.venv"; fi
"$DEST/.venv/bin/python" -c 'import music21, mido, soundfile, numpy' 2>/dev/null ||
  "$DEST/.venv/bin/pip" install -q 'music21>=9' 'mido>=1.3' soundfile numpy

# Licence files, one per group, from the sources that group's audio comes from.
m21_licence=$(find "$DEST/.venv" -path '*/music21-*.dist-info/*' -name 'LICENSE*' -print -quit)
licence() {  # licence GROUP header-text package...
  local group=$1 header=$2; shift 2
  mkdir -p "$DEST/$group"
  {
    echo "$header"
    echo
    if [[ " $* " == *" music21 "* ]]; then
      echo "=== music21 $("$DEST/.venv/bin/python" -c 'import music21; print(music21.__version__)') (PyPI): its corpus"
      echo "    (public-domain works; encodings distributed with music21, see corpus/*/license.txt"
      echo "    and the music21 licence below)"
      cat "$m21_licence"; echo
    fi
    if [[ " $* " == *" mido "* ]]; then
      echo "=== mido (PyPI, MIT) writes the generated MIDI; the patterns are this script's own."; echo
    fi
    for p in "$@"; do
      [[ $p == music21 || $p == mido ]] && continue
      echo "=== Debian package $p $(dpkg-query -W -f '${Version}' "$p"): /usr/share/doc/$p/copyright"
      cat "/usr/share/doc/$p/copyright"; echo
    done
  } > "$DEST/$group/COPYRIGHT"
}
SYNTH=(fluidsynth)
licence render-timgm6mb "Renders of music21 corpus scores with fluidsynth and TimGM6mb (GPL-2)." \
  music21 timgm6mb-soundfont "${SYNTH[@]}"
licence render-opl3 "Renders of music21 corpus scores with fluidsynth and OPL-3 FM 128M (CC-BY-SA-4.0 / GPL-3+)." \
  music21 opl3-soundfont "${SYNTH[@]}"
licence arrangements "Generated arrangements (mido) rendered with fluidsynth through two soundfonts." \
  mido timgm6mb-soundfont opl3-soundfont "${SYNTH[@]}"
VOICE=(espeak-ng espeak-ng-data festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k)
licence voices "Synthetic speech and singing (espeak-ng, festival) of public-domain texts and generated
sentences; sung melodies from the music21 corpus." music21 "${VOICE[@]}"
licence voice-mixes "Synthetic voices mixed over generated arrangements and music21 corpus renders." \
  music21 mido "${VOICE[@]}" timgm6mb-soundfont opl3-soundfont "${SYNTH[@]}"

nice -n 10 "$DEST/.venv/bin/python" "$HERE/make_sounds.py" generate "$DEST" --hours "$HOURS" \
  --jobs "$JOBS" --seed "$SEED" --max-minutes "$MINUTES"
# make_sounds.py generate ends with `check`; run it again on its own so a hand-edited manifest is caught too.
"$DEST/.venv/bin/python" "$HERE/make_sounds.py" check "$DEST"
grep -qiE 'fluid[-_ ]?r3|fluid-soundfont|fluidr3mono' "$DEST/manifest-sounds.tsv" &&
  { echo "make-sounds.sh: a Fluid R3 render is in the manifest" >&2; exit 1; }
"$DEST/.venv/bin/python" - "$DEST" <<'EOF' | tee "$DEST/SUMMARY"
import csv, sys, collections, soundfile as sf
dest = sys.argv[1]
secs, n = collections.Counter(), collections.Counter()
for r in csv.DictReader(open(f"{dest}/manifest-sounds.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE):
    g = r["path"].split("/")[0]
    secs[g] += sf.info(f"{dest}/{r['path']}").duration
    n[g] += 1
for g in sorted(n):
    print(f"{g}\t{n[g]} files\t{secs[g] / 3600:.2f} h")
print(f"total\t{sum(n.values())} files\t{sum(secs.values()) / 3600:.2f} h")
EOF
