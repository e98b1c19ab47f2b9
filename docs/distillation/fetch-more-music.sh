#!/usr/bin/env bash
# More freely licensed music from Debian packages, beside what ../shared/corpus/fetch-music.sh
# fetches: the default model's fourth training stage learnt from both. The student generalised
# to the held-out packages far worse than it fitted the training ones (held-out ROC-AUC 0.84
# against 0.95 on training packages), so it needed more kinds of music, not more steps.
# Only each package's music is kept (the PATTERN below: its music folders), not sound effects.
# Usage: bash fetch-more-music.sh DEST   (about 1.7 GB of downloads, 0.4 GB kept; apt-get, root)
# Result: DEST/<package>/... audio files, each package's Debian copyright file as
# DEST/<package>/COPYRIGHT, and DEST/manifest-more.tsv (path, package, version, licence file).
set -euo pipefail
DEST=${1:?usage: fetch-more-music.sh DEST}
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
mkdir -p "$DEST/.debs"
(cd "$DEST/.debs" && apt-get download "${!PATTERN[@]}")
printf 'path\tpackage\tversion\tlicence\n' > "$DEST/manifest-more.tsv"
for deb in "$DEST"/.debs/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package); ver=$(dpkg-deb -f "$deb" Version)
  tmp=$(mktemp -d); dpkg-deb -x "$deb" "$tmp"
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
