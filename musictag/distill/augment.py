"""Augmentations that keep soft labels honest: the teacher relabels the audio after every change.

Because targets are computed on the final augmented segment, any change of the music (a mix of
two tracks, a speed/pitch shift) gets the label the teacher gives it rather than the label of the
source. Gain changes matter for SampleCNN in particular: it sees raw, unnormalised waveforms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import soxr

from ..errors import RunError
from .corpus import Corpus, CorpusTrack

#: Segments quieter than this RMS (about -50 dBFS) are redrawn: intros and gaps teach nothing.
MIN_RMS = 3e-3


@dataclass(frozen=True)
class AugmentConfig:
    gain_db: tuple[float, float] = (-18.0, 0.0)
    speed_probability: float = 0.5
    max_speed_change: float = 0.06  # +-6 %: speed and pitch together, about one semitone
    eq_probability: float = 0.5
    eq_max_db: float = 6.0
    noise_probability: float = 0.3
    noise_snr_db: tuple[float, float] = (20.0, 45.0)
    mix_probability: float = 0.3
    # Narrow-band audio (telephone prompts, old low-rate files, lossy encodes that drop the top
    # octave) is common in users' folders and absent from a full-band corpus; the teachers,
    # which hear only up to 8 kHz, still name a voice in it.
    band_limit_probability: float = 0.15
    band_limit_rates_hz: tuple[float, ...] = (8000.0, 11025.0, 16000.0)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        """A stored config back; one written before band limiting existed keeps none of it, so
        its label bank's seeds still rebuild the segments they labelled."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        values.setdefault("band_limit_probability", 0.0)
        return cls(**values)

    def fingerprint_dict(self) -> dict:
        """The fields a label bank depends on; band limiting only where it is on, so banks made
        before it existed keep their fingerprint."""
        values = dataclasses.asdict(self)
        if not self.band_limit_probability:
            del values["band_limit_probability"], values["band_limit_rates_hz"]
        return values


def parse_group_weight(spec: str) -> tuple[str, float]:
    """``GROUP:WEIGHT``, the weight a positive number."""
    group, _, weight = spec.rpartition(":")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if not group or not value > 0:
        raise RunError(f"group weight {spec!r}: expected GROUP:WEIGHT with a positive weight")
    return group, value


class SegmentSampler:
    """Draws augmented segments from a list of tracks; a segment is a pure function of its seed.

    The label bank (:mod:`musictag.distill.bank`) stores seeds instead of audio, so drawing the
    same seed again must give the same samples, bit for bit.
    """

    def __init__(self, corpus: Corpus, tracks: list[CorpusTrack], *, sample_rate_hz: int,
                 config: AugmentConfig, group_weights: dict[str, float] | None = None):
        self.corpus, self.tracks, self.rate = corpus, tracks, sample_rate_hz
        self.config = config
        # Long tracks are drawn more often, but capped at 5 minutes so no album dominates; a
        # group weight draws a scarce kind of sound (voices, say) that much more often.
        weights = np.array([min(t.n_samples, 300 * sample_rate_hz) *
                            (group_weights or {}).get(t.group, 1.0) for t in tracks], np.float64)
        self.probabilities = weights / weights.sum()

    def raw(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """An unaugmented segment that is not near-silent (after a few tries, whatever came)."""
        for _ in range(8):
            track = self.tracks[rng.choice(len(self.tracks), p=self.probabilities)]
            start = int(rng.integers(0, max(track.n_samples - length, 0) + 1))
            segment = self.corpus.segment(track, start, length)
            if np.sqrt(np.mean(segment**2)) >= MIN_RMS:
                break
        return segment

    def draw(self, length: int, seed: int) -> np.ndarray:
        """The augmented segment of ``length`` samples that ``seed`` stands for."""
        config, rng = self.config, np.random.default_rng(seed)
        segment = self._speed(length, rng) if rng.random() < config.speed_probability \
            else self.raw(length, rng)
        if rng.random() < config.mix_probability:
            other = self.raw(length, rng)
            level = 10 ** (rng.uniform(-9.0, 0.0) / 20)
            segment = 0.7 * segment + 0.7 * level * other
        if rng.random() < config.eq_probability:
            segment = self._equalise(segment, rng)
        if rng.random() < config.noise_probability:
            segment = self._noise(segment, rng)
        # Drawn last and only when on, so that the draws above stay those of earlier runs.
        if config.band_limit_probability and rng.random() < config.band_limit_probability:
            segment = self._band_limit(segment, rng)
        segment = segment * 10 ** (rng.uniform(*config.gain_db) / 20)
        peak = np.abs(segment).max()
        return (segment / peak if peak > 1.0 else segment).astype(np.float32)

    def _speed(self, length: int, rng: np.random.Generator) -> np.ndarray:
        factor = 1.0 + rng.uniform(-1.0, 1.0) * self.config.max_speed_change
        source = self.raw(int(np.ceil(length * factor)) + 64, rng)
        changed = soxr.resample(source, self.rate * factor, self.rate, quality="HQ")
        return changed[:length] if len(changed) >= length else np.pad(
            changed, (0, length - len(changed)))

    def _equalise(self, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A smooth random gain curve over log frequency (8 bands, +-eq_max_db)."""
        spectrum = np.fft.rfft(segment)
        freqs = np.fft.rfftfreq(len(segment), 1.0 / self.rate)
        band_edges = np.geomspace(30.0, self.rate / 2, 8)
        gains_db = rng.uniform(-1.0, 1.0, 8) * self.config.eq_max_db
        curve = np.interp(np.log(np.maximum(freqs, 30.0)), np.log(band_edges), gains_db)
        return np.fft.irfft(spectrum * 10 ** (curve / 20), n=len(segment)).astype(np.float32)

    def _band_limit(self, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Down to a lower sample rate and back: nothing above its Nyquist frequency is left."""
        rates = [r for r in self.config.band_limit_rates_hz if r < self.rate]
        if not rates:
            return segment
        low = float(rates[rng.integers(len(rates))])
        narrow = soxr.resample(soxr.resample(segment, self.rate, low, quality="HQ"), low,
                               self.rate, quality="HQ")
        return np.pad(narrow, (0, max(len(segment) - len(narrow), 0)))[:len(segment)] \
            .astype(np.float32)

    def _noise(self, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """White or pink noise at a random signal-to-noise ratio."""
        noise = rng.standard_normal(len(segment))
        if rng.random() < 0.5:
            spectrum = np.fft.rfft(noise)
            spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
            noise = np.fft.irfft(spectrum, n=len(segment))
        snr_db = rng.uniform(*self.config.noise_snr_db)
        signal_rms = np.sqrt(np.mean(segment**2)) + 1e-9
        noise *= signal_rms / (np.sqrt(np.mean(noise**2)) + 1e-12) / 10 ** (snr_db / 20)
        return (segment + noise).astype(np.float32)
