#!/usr/bin/env bash
# More freely licensed music from Debian packages, beside what ../shared/corpus/fetch-music.sh
# fetches: the default model's fourth training stage learnt from both. The student generalised
# to the held-out packages far worse than it fitted the training ones (held-out ROC-AUC 0.84
# against 0.95 on training packages), so it needed more kinds of music, not more steps.
# A fifth stage (not shipped: see README) added the second table below, 12 more packages.
# Only each package's music is kept (the PATTERN below: its music folders), not sound effects;
# game archives (.pk3) are unpacked first.
# Usage: bash fetch-more-music.sh DEST [4|5]   (stage 4: the first 11 packages, about 1.7 GB of
# downloads, 0.4 GB kept; stage 5, the default: all 23, about 3.4 GB, 1.1 GB kept; apt-get, unzip,
# root)
# Result: DEST/<package>/... audio files, each package's Debian copyright file as
# DEST/<package>/COPYRIGHT, and DEST/manifest-more.tsv (path, package, version, licence file).
set -euo pipefail
DEST=${1:?usage: fetch-more-music.sh DEST [4|5]}
STAGE=${2:-5}
[[ $STAGE == 4 || $STAGE == 5 ]] || { echo "fetch-more-music.sh: stage must be 4 or 5, not $STAGE" >&2; exit 2; }
declare -A PATTERN=(
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
  [asc-music]='/music/'
  [fillets-ng-data]='/music/'
)
if [[ $STAGE == 5 ]]; then for pkg in "${!FIFTH_STAGE[@]}"; do PATTERN[$pkg]=${FIFTH_STAGE[$pkg]}; done; fi
mkdir -p "$DEST/.debs"
(cd "$DEST/.debs" && apt-get download "${!PATTERN[@]}")
printf 'path\tpackage\tversion\tlicence\n' > "$DEST/manifest-more.tsv"
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
    printf '%s\t%s\t%s\t%s\n' "${out#"$DEST"/}" "$pkg" "$ver" "$pkg/COPYRIGHT" \
      >> "$DEST/manifest-more.tsv"
  done < <(find "$tmp" -type f \( -iname '*.ogg' -o -iname '*.opus' -o -iname '*.flac' \
             -o -iname '*.wav' -o -iname '*.mp3' \) -print0)
  rm -rf "$tmp"
done
rm -rf "$DEST/.debs"
echo "$(($(wc -l < "$DEST/manifest-more.tsv") - 1)) audio files added under $DEST (manifest-more.tsv)"
