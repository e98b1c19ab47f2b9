#!/usr/bin/env bash
# More freely licensed music from Debian packages, beside what ../shared/corpus/fetch-music.sh
# fetches: the default model's fourth training stage learnt from both. The student generalised
# to the held-out packages far worse than it fitted the training ones (held-out ROC-AUC 0.84
# against 0.95 on training packages), so it needed more kinds of music, not more steps.
# Two tables, named by the stage that first trained on them (see README):
#   4: 11 packages, the shipped default's fourth stage (1.7 GB of downloads, 0.4 GB kept);
#   5: 11 more packages of game music (1.7 GB, 0.7 GB kept): the fifth-stage trial (not
#      shipped) trained on them, and since the shipped default never heard them they are also
#      its wider held-out set (`musictag agreement`, README).
# Some packages' audio belongs to the acceptance set that judges the default model and must
# never reach a training corpus; they are not fetched here (one package left table 5, and
# table 6 was removed).
# Only each package's music is kept (the PATTERN below: its music folders), not sound effects;
# game archives (.pk3) are unpacked first.
# Usage: bash fetch-more-music.sh DEST TABLE...   (TABLE: 4 or 5; apt-get, unzip, root)
# Result: DEST/<package>/... audio files, each package's Debian copyright file as
# DEST/<package>/COPYRIGHT, and DEST/manifest-more.tsv (path, package, version, licence file),
# which lists what every call so far has fetched into DEST.
set -euo pipefail
USAGE="usage: fetch-more-music.sh DEST TABLE...  (TABLE: 4 or 5)"
DEST=${1:?$USAGE}
shift
(($# > 0)) || { echo "fetch-more-music.sh: no TABLE given; $USAGE" >&2; exit 2; }
declare -A FOURTH_STAGE=(
  [supertux-data]='/music/'                    # platformer themes, GPL-2+ / CC-BY-SA
  [supertuxkart-data]='/data/music/'           # kart racing: rock, electronic, orchestral
  [widelands-data]='/data/music/'              # orchestral, celtic, ambient
  [fretsonfire-songs-sectoid]='/songs/'        # rock/metal songs as stems
  [btanks-data]='/tunes/'                      # electronic
  [scorched3d-data]='/data/music/'
  [megaglest-data]='/music/'                   # orchestral
  [freeorion-data]='/data/sound/[^/]*$'        # ambient / orchestral score (not combat sounds)
  [zaz-data]='.'                               # electronic
  [funnyboat]='/data/'
  [sonic-pi-samples]='/samples/'               # loops and ambient pads
)
declare -A FIFTH_STAGE=(
  [ufoai-music]='/music/'                      # orchestral, rock, electronic (in a .pk3)
  [naev-data]='/snd/music/'                    # space ambient, orchestral, electronic
  [colobot-common-sounds]='/music/'
  [flare-game]='/music/'                       # fantasy orchestral
  [freecol]='/music/'                          # folk and chamber orchestra
  [freedroidrpg-data]='/music/'
  [marsshooter-data]='/music/'
  [warmux-data]='/music/'
  [pushover-data]='/themes/'
  [openclonk-data]='/Music.ocg/'
  [fillets-ng-data]='/music/'
)
declare -A PATTERN=()
for table in "$@"; do
  case $table in
    4) for pkg in "${!FOURTH_STAGE[@]}"; do PATTERN[$pkg]=${FOURTH_STAGE[$pkg]}; done ;;
    5) for pkg in "${!FIFTH_STAGE[@]}"; do PATTERN[$pkg]=${FIFTH_STAGE[$pkg]}; done ;;
    *) echo "fetch-more-music.sh: TABLE must be 4 or 5, not $table" >&2; exit 2 ;;
  esac
done
mkdir -p "$DEST/.debs"
(cd "$DEST/.debs" && apt-get download "${!PATTERN[@]}")
[[ -f $DEST/manifest-more.tsv ]] || printf 'path\tpackage\tversion\tlicence\n' > "$DEST/manifest-more.tsv"
added=0
for deb in "$DEST"/.debs/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package); ver=$(dpkg-deb -f "$deb" Version)
  tmp=$(mktemp -d); dpkg-deb -x "$deb" "$tmp"
  find "$tmp" -name '*.pk3' -exec unzip -q -o {} -d "$tmp/pk3" \;
  mkdir -p "$DEST/$pkg"
  cp "$tmp/usr/share/doc/$pkg/copyright" "$DEST/$pkg/COPYRIGHT" 2>/dev/null || true
  while IFS= read -r -d '' f; do
    rel=${f#"$tmp"/}
    [[ /$rel =~ ${PATTERN[$pkg]} ]] || continue
    out="$DEST/$pkg/${rel//\//__}"
    cp "$f" "$out"
    added=$((added + 1))
    printf '%s\t%s\t%s\t%s\n' "${out#"$DEST"/}" "$pkg" "$ver" "$pkg/COPYRIGHT" \
      >> "$DEST/manifest-more.tsv"
  done < <(find "$tmp" -type f \( -iname '*.ogg' -o -iname '*.opus' -o -iname '*.flac' \
             -o -iname '*.wav' -o -iname '*.mp3' \) -print0)
  rm -rf "$tmp"
done
rm -rf "$DEST/.debs"
# A table fetched twice lists its files once.
{ head -n 1 "$DEST/manifest-more.tsv"; tail -n +2 "$DEST/manifest-more.tsv" | sort -u; } \
  > "$DEST/manifest-more.tsv.new" && mv "$DEST/manifest-more.tsv.new" "$DEST/manifest-more.tsv"
echo "$added audio files of ${#PATTERN[@]} packages added under $DEST (manifest-more.tsv)"
