#!/usr/bin/env bash
# Usage: link-sounds.sh SOUNDS CORPUS
# Hard-links make-sounds.sh's groups (SOUNDS, with its manifest-sounds.tsv) into a distill corpus
# (CORPUS: one first-level folder per group). About three sixteenths of each group go to a
# GROUP-held twin for validation, chosen by the md5 of the piece's name, so that one score never
# lands on both sides; renders of both soundfonts share one held-out group, renders-held.
# Running it again links only what is new.
set -euo pipefail
SOUNDS=${1:?usage: link-sounds.sh SOUNDS CORPUS}
CORPUS=${2:?usage: link-sounds.sh SOUNDS CORPUS}
MANIFEST=$SOUNDS/manifest-sounds.tsv
[[ -f $MANIFEST ]] || { echo "link-sounds.sh: $MANIFEST: missing (run make-sounds.sh first)" >&2; exit 1; }

for group in render-timgm6mb render-opl3 arrangements voices voice-mixes; do
  case $group in render-*) held=renders-held ;; *) held=$group-held ;; esac
  mkdir -p "$CORPUS/$group" "$CORPUS/$held"
  tail -n +2 "$MANIFEST" | cut -f1 | { grep "^$group/" || true; } | while read -r rel; do
    name=$(basename "$rel")
    case $group in render-*) piece=${name#*_} ;; *) piece=$name ;; esac  # renders: drop the soundfont prefix
    case $(printf '%s' "$piece" | md5sum | cut -c1) in 0|1|2) dest=$held ;; *) dest=$group ;; esac
    [[ -e $CORPUS/$dest/$name ]] || ln "$SOUNDS/$rel" "$CORPUS/$dest/$name"
  done
done
for group in render-timgm6mb render-opl3 renders-held arrangements arrangements-held voices \
             voices-held voice-mixes voice-mixes-held; do
  echo "$group $(find "$CORPUS/$group" -type f | wc -l)" >&2
done
