"""Render examples/demo.ogg: 16 s of synthesised electronic music made by this script alone.

The README's first command tags it, so a fresh install can be tried offline without any music of
one's own. Drums (kick, snare, hi-hat), a bass line and a chord pad at 124 beats per minute.
Run: python examples/make_demo.py
"""

from pathlib import Path

import numpy as np
import soundfile

RATE_HZ = 44100
BPM = 124
BARS = 8


def envelope(n: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * RATE_HZ))


def kick(n: int) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    sweep = 50 + 90 * np.exp(-t * 30)
    return np.sin(2 * np.pi * np.cumsum(sweep) / RATE_HZ) * envelope(n, 0.18)


def noise_hit(n: int, decay_s: float, rng: np.random.Generator, brightness: float) -> np.ndarray:
    noise = rng.standard_normal(n)
    bright = noise - brightness * np.concatenate([[0.0], noise[:-1]])
    return bright * envelope(n, decay_s)


def saw(freq_hz: float, n: int) -> np.ndarray:
    phase = (np.arange(n) * freq_hz / RATE_HZ) % 1.0
    return 2.0 * phase - 1.0


def render() -> np.ndarray:
    rng = np.random.default_rng(7)
    beat = int(RATE_HZ * 60 / BPM)
    total = beat * 4 * BARS
    mix = np.zeros(total)
    for b in range(4 * BARS):
        start = b * beat
        mix[start:start + beat] += 0.9 * kick(beat)
        if b % 2 == 1:
            mix[start:start + beat // 2] += 0.35 * noise_hit(beat // 2, 0.08, rng, 0.3)
        for half in (0, beat // 2):
            n = beat // 4
            mix[start + half:start + half + n] += 0.12 * noise_hit(n, 0.02, rng, 0.95)
    roots = [55.0, 55.0, 43.65, 49.0]  # A1, A1, F1, G1
    for bar in range(BARS):
        root = roots[bar % 4]
        for eighth in range(8):
            start = bar * 4 * beat + eighth * beat // 2
            n = beat // 2
            note = root * (2 if eighth % 4 == 3 else 1)
            tone = np.tanh(2.5 * saw(note, n)) * envelope(n, 0.25)
            mix[start:start + n] += 0.25 * tone
        chord = [root * 4, root * 4 * 1.2, root * 4 * 1.5]
        n = 4 * beat
        pad = sum(saw(f * (1 + d), n) for f in chord for d in (-0.003, 0.003)) / 6
        smooth = np.convolve(pad, np.ones(8) / 8, mode="same")
        start = bar * 4 * beat
        mix[start:start + n] += 0.18 * smooth * np.minimum(1, np.arange(n) / (0.3 * RATE_HZ))
    return (0.8 * mix / np.abs(mix).max()).astype(np.float32)


if __name__ == "__main__":
    target = Path(__file__).with_name("demo.ogg")
    soundfile.write(target, render(), RATE_HZ, format="OGG", subtype="VORBIS")
    print(target)
