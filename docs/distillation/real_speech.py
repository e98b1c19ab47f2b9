"""Join recorded voice clips into speech files, alone and over game-music beds.

make-real-speech.sh runs it: python real_speech.py VOICE_DIR CORPUS. The clip order, pauses,
beds and levels come from one seeded generator, so the same inputs give the same files.
"""

import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 22050
FILE_SECONDS = 40  # a file ends with the first clip past this length
BED_PACKAGES = ("wesnoth-1.16-music", "warzone2100-music", "nexuiz-music", "supertuxkart-data",
                "widelands-data", "megaglest-data", "hedgewars-data", "frozen-bubble-data",
                "supertux-data", "btanks-data")  # training packages only, never held-out ones


def load(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, RATE).astype(np.float32)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples ** 2) + 1e-9))


def speech_files(clips: list[Path], rng: random.Random) -> list[np.ndarray]:
    files, parts, seconds = [], [], 0.0
    for clip in clips:
        samples = load(clip)
        parts += [samples, np.zeros(int(RATE * rng.uniform(0.2, 0.9)), np.float32)]
        seconds += len(samples) / RATE
        if seconds > FILE_SECONDS:
            files.append(np.concatenate(parts))
            parts, seconds = [], 0.0
    if seconds > 10:
        files.append(np.concatenate(parts))
    return files


def over_bed(speech: np.ndarray, bed: np.ndarray, rng: random.Random) -> np.ndarray:
    start = rng.randrange(max(1, len(bed) - len(speech)))
    bed = np.resize(bed[start:start + len(speech)], len(speech))
    voice_db = rng.uniform(-12, 6)
    mix = speech + bed * (rms(speech) / rms(bed)) * 10 ** (-voice_db / 20)
    return mix / max(1.0, float(np.abs(mix).max()) / 0.98)


def main(voice_dir: Path, corpus: Path) -> None:
    rng = random.Random(7)
    clips = sorted(voice_dir.glob("audio/**/*.ogg"))
    rng.shuffle(clips)
    beds = sorted(p for package in BED_PACKAGES for p in (corpus / package).glob("*.ogg"))
    if not clips or not beds:
        sys.exit(f"real_speech.py: no clips under {voice_dir} or no beds under {corpus}")
    for i, speech in enumerate(speech_files(clips, rng)):
        suffix = "-held" if i % 5 == 0 else ""
        mix = over_bed(speech, load(rng.choice(beds)), rng)
        for group, samples in (("speech-real", speech), ("speech-real-mixes", mix)):
            folder = corpus / f"{group}{suffix}"
            folder.mkdir(exist_ok=True)
            sf.write(folder / f"wz-speech-{i:02d}.flac", samples, RATE, subtype="PCM_16")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
