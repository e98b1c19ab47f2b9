"""Audio in: decode, downmix, resample and cut into model windows, in bounded memory.

Files are read in blocks and resampled with a streaming soxr resampler, so a two-hour recording
never sits in memory at once. libsndfile (through soundfile) reads wav, flac, ogg/vorbis, opus and
mp3; what it refuses (m4a/aac, webm, odd wav wrappers) goes to FFmpeg through PyAV, the optional
``ffmpeg`` extra (its FFmpeg libraries are 104 MB, more than any other dependency of the small
tagging-only install). numpy only: the onnxruntime tagging path must work without torch.

Windowing policy (documented in README.md):
- ``consecutive`` (the paper): non-overlapping windows from the start. A remainder of at least half
  a window gets one more window aligned to the end of the file (overlapping its neighbour); a
  shorter remainder is dropped, as the paper drops the end of each 29.1 s clip.
- ``evenly_spaced`` (Won et al.'s evaluation): ``n`` windows spread from start to end.
- A clip shorter than one window but at least :data:`MIN_DURATION_S` long is zero-padded on both
  sides to one window; a shorter one is an error.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .errors import AudioError, ModelError
from .native_stderr import capture_notes

log = logging.getLogger(__name__)

#: Extensions picked up when a folder is tagged.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm",
    ".aif", ".aiff", ".aifc", ".wma", ".mka", ".wv", ".ape", ".caf",
})
#: Clips shorter than this carry too little music to tag.
MIN_DURATION_S = 1.0
#: Peak below which a whole file counts as silent (-100 dBFS).
SILENCE_PEAK = 1e-5
#: Sample peak above which a (float) file is refused: +24 dBFS, far past any recording's overs.
MAX_PEAK = 16.0
#: Lowest sample rate accepted; telephone audio is 8000 Hz.
MIN_SAMPLE_RATE_HZ = 1000
BLOCK_SECONDS = 30.0


@dataclass(frozen=True)
class AudioInfo:
    sample_rate_hz: int
    channels: int
    n_frames: int | None  # as the container declares it; None when unknown
    decoder: str
    cut_short: bool = False  # the container shows that the file stops early

    @property
    def duration_s(self) -> float | None:
        return None if self.n_frames is None else self.n_frames / self.sample_rate_hz


@dataclass(frozen=True)
class WindowRule:
    """How a track is covered by windows; travels with a model card (``averaging``)."""

    kind: str = "consecutive"
    n_windows: int = 16

    @classmethod
    def from_dict(cls, data: dict) -> WindowRule:
        rule = cls(kind=data.get("rule", "consecutive"), n_windows=int(data.get("n_windows", 16)))
        if rule.kind not in ("consecutive", "evenly_spaced"):
            raise ModelError(f"unknown averaging rule {rule.kind!r}")
        return rule

    def to_dict(self) -> dict:
        if self.kind == "consecutive":
            return {"rule": "consecutive"}
        return {"rule": self.kind, "n_windows": self.n_windows}


def wav_declared_frames(path: Path) -> int | None:
    """The frame count a RIFF/WAVE header's ``data`` chunk claims, or None when it claims none.

    libsndfile silently shortens ``frames`` to the bytes present, so a WAV cut short (an
    interrupted copy or download) would look complete; this reads the claim itself so that
    :func:`stream_mono` can warn that the file holds less than its header says. Streamed WAVs
    write 0 or 0xFFFFFFFF as the size; those claim nothing.
    """
    try:
        with open(path, "rb") as handle:
            riff = handle.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            block_align = None
            while len(header := handle.read(8)) == 8:
                chunk_id, size = header[:4], int.from_bytes(header[4:], "little")
                if chunk_id == b"fmt " and size >= 14:
                    block_align = int.from_bytes(handle.read(14)[12:14], "little")
                    handle.seek(size - 14 + size % 2, os.SEEK_CUR)
                elif chunk_id == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    handle.seek(size + size % 2, os.SEEK_CUR)
    except OSError:
        return None
    return None


_OGG_CAPTURE = b"OggS\x00"  # capture pattern and stream structure version; header type follows
_OGG_PAGE_HEADER_BYTES = 27
_OGG_TAIL_BYTES = 65307 + _OGG_PAGE_HEADER_BYTES  # the largest page: the last one starts in it


def ogg_stream_ended(path: Path) -> bool:
    """Whether the file's last Ogg page carries the end-of-stream flag.

    libsndfile takes an Ogg file's length from its last page, so an Ogg Vorbis or Opus file cut
    short reads as a complete shorter one; only the missing end-of-stream flag (0x04 in the
    header-type byte), which an encoder sets on a stream's final page, gives it away.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - _OGG_TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return True
    # the last capture pattern with a whole page header after it
    page = tail.rfind(_OGG_CAPTURE, 0, len(tail) - _OGG_PAGE_HEADER_BYTES + len(_OGG_CAPTURE))
    return page < 0 or bool(tail[page + len(_OGG_CAPTURE)] & 0x04)


class _SoundfileReader:
    def __init__(self, path: Path):
        self.notes: list[str] = []  # what libmpg123 printed (native_stderr), for one warning
        with capture_notes(self.notes):
            # bytes: soundfile encodes a str name strictly, which fails for a name that is not
            # valid UTF-8 (its undecodable bytes are surrogate escapes in the str)
            self._file = soundfile.SoundFile(os.fsencode(path))
        frames = self._file.frames if self._file.frames > 0 else None
        if frames is not None and self._file.format == "WAV":
            frames = max(frames, wav_declared_frames(path) or 0)
        cut_short = self._file.format == "OGG" and not ogg_stream_ended(path)
        self.info = AudioInfo(self._file.samplerate, self._file.channels, frames, "soundfile",
                              cut_short)

    def close(self) -> None:
        self._file.close()

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 ``(frames, channels)`` blocks, read with libsndfile's ``sf_readf_float``.

        Called directly (through soundfile's cffi handle) rather than by ``SoundFile.read``,
        which after every read seeks to where the read ended and, when the read fails, raises
        without the frames it decoded: a FLAC cut short lost everything of its last block (the
        whole file when under 30 s), and the seek restarts libmpg123 mid-stream, which damaged
        the samples at each block boundary of low-rate MP3s and printed error notes.
        """
        handle = self._file._file
        with self._file:
            while True:
                block = np.empty((block_frames, self.info.channels), np.float32)
                with capture_notes(self.notes):
                    n_frames = soundfile._snd.sf_readf_float(
                        handle, soundfile._ffi.cast("float *", block.ctypes.data), block_frames)
                    code = soundfile._snd.sf_error(handle)
                if n_frames > 0:
                    yield block[:n_frames]
                if code:
                    raise soundfile.LibsndfileError(code)
                if n_frames < block_frames:
                    return


class _PyAVReader:
    def __init__(self, path: Path):
        import av  # imported here: FFmpeg is only needed for what libsndfile refuses

        self._av = av
        self._container = av.open(str(path))
        if not self._container.streams.audio:
            self._container.close()
            raise ValueError("no audio stream")
        stream = self._container.streams.audio[0]
        codec = stream.codec_context
        if codec is None or not codec.sample_rate:
            self._container.close()
            raise ValueError("audio codec not supported")
        rate = codec.sample_rate
        n_frames = None
        if stream.duration is not None and stream.time_base is not None:
            n_frames = int(stream.duration * stream.time_base * rate)
        elif self._container.duration:
            n_frames = int(self._container.duration / 1_000_000 * rate)
        self._stream = stream
        self.info = AudioInfo(rate, codec.layout.nb_channels, n_frames, "pyav")
        self.notes: list[str] = []  # FFmpeg reports through PyAV's logging, not fd 2

    def close(self) -> None:
        self._container.close()

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        return _gathered(self._frames(), block_frames)

    def _frames(self) -> Iterator[np.ndarray]:
        """Decoded frames as float32 ``(frames, channels)``, every channel kept.

        FFmpeg's own stereo-to-mono matrix gives (L + R) / sqrt(2), 3 dB louder than the mean of
        the channels that libsndfile's files get, and the same PCM then scored differently in a
        .wav and a .mka; the downmix is left to :class:`MonoStream`, one rule for every decoder.
        The layout is fixed to the stream's, so a frame with another layout cannot change the
        channel count partway.
        """
        resampler = self._av.AudioResampler(format="fltp", layout=self._stream.codec_context.layout)
        with self._container:
            for frame in self._container.decode(self._stream):
                for converted in resampler.resample(frame):
                    yield converted.to_ndarray().T


def _gathered(frames: Iterator[np.ndarray], block_frames: int) -> Iterator[np.ndarray]:
    """Decoded frames joined into blocks of at least ``block_frames``.

    When the decoder fails partway, the frames gathered so far come out before its error, so
    that a file cut short is tagged as far as it decodes.
    """
    pending: list[np.ndarray] = []
    pending_frames = 0
    try:
        for piece in frames:
            pending.append(piece)
            pending_frames += len(piece)
            if pending_frames >= block_frames:
                yield np.concatenate(pending)
                pending, pending_frames = [], 0
    except Exception:
        if pending:
            yield np.concatenate(pending)
        raise
    if pending:
        yield np.concatenate(pending)


def _open(path: Path) -> _SoundfileReader | _PyAVReader:
    """The first decoder that accepts the file; the error names both causes when none does."""
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory")
    if not path.is_file():  # checked before any open: opening a FIFO would wait for a writer
        raise AudioError(path, f"not a regular file ({_file_kind(path.stat().st_mode)})")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        return _SoundfileReader(path)
    except (soundfile.LibsndfileError, RuntimeError) as sndfile_error:
        first = _sndfile_reason(sndfile_error)
    try:
        return _PyAVReader(path)
    except ImportError:
        raise AudioError(path, f"not decodable by libsndfile ({first}), and FFmpeg decoding "
                               f"(m4a/aac, webm) is not installed: pip install "
                               f"'musictag[ffmpeg]'") from None
    except Exception as ffmpeg_error:  # PyAV raises many FFmpeg error types
        second = (getattr(ffmpeg_error, "strerror", None) or str(ffmpeg_error).strip()
                  or type(ffmpeg_error).__name__)
        raise AudioError(path, f"not a decodable audio file (libsndfile: {first}; "
                               f"ffmpeg: {second})") from None


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _sndfile_reason(error: Exception) -> str:
    """libsndfile's cause without the path it quotes.

    libsndfile 1.2 reports content it does not recognise as "File does not exist or is not a
    regular file"; :func:`_open` has already checked that the file exists, so say what it means.
    """
    reason = (getattr(error, "error_string", None) or str(error)).strip().rstrip(".")
    return "format not recognised" if "does not exist" in reason else reason or "unsupported"


def _open_audio(path: Path) -> _SoundfileReader | _PyAVReader:
    """:func:`_open`, refusing a sample rate no recording has.

    A damaged header declaring 1 Hz made a 4 KB WAV into 2000 s of audio and the resampler's
    22050-fold upsampling buffers passed 1 GB of memory.
    """
    reader = _open(path)
    rate = reader.info.sample_rate_hz
    if rate < MIN_SAMPLE_RATE_HZ:
        reader.close()
        raise AudioError(path, f"declares a sample rate of {rate} Hz, below the "
                               f"{MIN_SAMPLE_RATE_HZ} Hz of any audio (a damaged header?)")
    return reader


def probe(path: str | os.PathLike) -> AudioInfo:
    """Rate, channels and declared length, without decoding the samples."""
    reader = _open_audio(Path(path))
    reader.close()
    return reader.info


class MonoStream:
    """A file's mono float32 blocks at a model rate (an iterator), and how much it decoded.

    ``duration_s`` is the length of the audio decoded so far, at the file's own rate: once the
    blocks are exhausted, the track's real length, which a header may overstate and which the
    windows (whole windows only, or evenly spaced ones) do not give.
    """

    def __init__(self, path: Path, reader: _SoundfileReader | _PyAVReader, *,
                 sample_rate_hz: int, block_seconds: float):
        self.info = reader.info
        self.frames_decoded = 0
        self._blocks = self._decode(path, reader, sample_rate_hz, block_seconds)

    @property
    def duration_s(self) -> float:
        return self.frames_decoded / self.info.sample_rate_hz

    def __iter__(self) -> MonoStream:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._blocks)

    def _decode(self, path: Path, reader: _SoundfileReader | _PyAVReader, sample_rate_hz: int,
                block_seconds: float) -> Iterator[np.ndarray]:
        rate = self.info.sample_rate_hz
        resampler = None
        if rate != sample_rate_hz:
            resampler = soxr.ResampleStream(rate, sample_rate_hz, 1, dtype="float32",
                                            quality="HQ")
        peak = 0.0
        stopped = None  # the decoder's reason, when it failed partway
        blocks = reader.blocks(max(1, int(block_seconds * rate)))
        while True:
            try:
                block = next(blocks, None)
            except Exception as error:  # decoders raise their own types mid-stream
                stopped = _decoder_reason(error)
                if self.frames_decoded == 0:
                    raise AudioError(path, f"decoding failed ({stopped})") from None
                break
            if block is None:
                break
            self.frames_decoded += len(block)
            _check_samples(path, block)
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            peak = max(peak, float(np.abs(mono).max(initial=0.0)))
            yield resampler.resample_chunk(mono) if resampler else np.ascontiguousarray(mono)
        if resampler:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if self.frames_decoded == 0:
            raise AudioError(path, "holds no audio samples")
        self._warn(path, stopped, reader.notes)
        if peak < SILENCE_PEAK:
            raise AudioError(path, "is silent (peak below -100 dBFS): nothing to tag")

    def _warn(self, path: Path, stopped: str | None, notes: list[str]) -> None:
        """One warning line for a file cut short or damaged, saying what was tagged."""
        info, held_s = self.info, self.duration_s
        clauses = []
        if info.n_frames and self.frames_decoded < 0.99 * info.n_frames:
            why = f" (decoding stopped: {stopped})" if stopped else ""
            clauses.append(f"header declares {info.duration_s:.1f} s but the file holds "
                           f"{held_s:.1f} s{why}")
        elif stopped:
            clauses.append(f"decoding stopped after {held_s:.1f} s ({stopped}; cut short?)")
        elif info.cut_short:
            clauses.append(f"the Ogg stream stops without its end marker after {held_s:.1f} s "
                           f"(cut short?)")
        if notes:
            which = f"first of {len(notes)} notes: " if len(notes) > 1 else ""
            clauses.append(f"the decoder reported damaged data ({which}{notes[0]})")
        if clauses:
            log.warning("%s: %s; tagged what is there", path, "; ".join(clauses))


def _decoder_reason(error: Exception) -> str:
    """A decoder's error as a clause: libsndfile's text without its ``Error :`` prefix."""
    reason = (getattr(error, "error_string", None) or str(error)).strip().rstrip(".")
    return reason.removeprefix("Error : ") or type(error).__name__


def _check_samples(path: Path, block: np.ndarray) -> None:
    """:class:`AudioError` for NaN/Inf samples or a sample peak no recording has.

    Only float files can hold samples beyond full scale. A peak past :data:`MAX_PEAK` means
    samples at the wrong scale (integers stored as float, say), which the network cannot hear
    as music (at 1e6 every score fell to zero); refusing says so, where normalising would tag
    what is most likely garbage. Checked per channel: opposite channels cancel in the mean.
    """
    if not np.isfinite(block).all():
        raise AudioError(path, "contains NaN or infinite samples")
    peak = float(np.abs(block).max(initial=0.0))
    if peak > MAX_PEAK:
        raise AudioError(path, f"sample peak {peak:.3g} ({20 * np.log10(peak):+.0f} dBFS) is far "
                               f"beyond full scale (1.0): samples stored at the wrong scale?")


def stream_mono(path: str | os.PathLike, *, sample_rate_hz: int,
                block_seconds: float = BLOCK_SECONDS) -> tuple[AudioInfo, MonoStream]:
    """The file's declared info and its :class:`MonoStream` of blocks at ``sample_rate_hz``.

    The stream raises :class:`AudioError` for NaN/Inf samples, samples far beyond full scale,
    files that fail to decode from the start and files that turn out silent. A file shorter
    than its header claims, or whose decoder fails partway (a FLAC cut short), is tagged as far
    as it decodes, with a warning.
    """
    path = Path(path)
    reader = _open_audio(path)
    return reader.info, MonoStream(path, reader, sample_rate_hz=sample_rate_hz,
                                   block_seconds=block_seconds)


def load_mono(path: str | os.PathLike, *, sample_rate_hz: int) -> np.ndarray:
    """A whole file as one mono float32 array at ``sample_rate_hz`` (for short clips and caches)."""
    _, blocks = stream_mono(path, sample_rate_hz=sample_rate_hz)
    return np.concatenate(list(blocks))


def evenly_spaced_starts(total_samples: int, *, window_samples: int, n_windows: int) -> list[int]:
    """Start offsets of ``n_windows`` windows spread over the track (fewer if it is short)."""
    last_start = max(total_samples - window_samples, 0)
    return sorted({int(round(s)) for s in np.linspace(0, last_start, n_windows)})


def window_starts(total_samples: int, *, window_samples: int, rule: WindowRule) -> list[int]:
    """Start offsets of the windows :func:`cut_windows` cuts from a track of ``total_samples``.

    Consecutive windows tile the track from its start; a remainder of at least half a window
    gets one more window, ending at the track's end (it overlaps the one before), and a
    shorter remainder is dropped, so no window is mostly another's samples. A track shorter
    than one window gives one window at 0, zero-padded around the track.
    """
    if total_samples < window_samples:
        return [0]
    if rule.kind != "consecutive":
        return evenly_spaced_starts(total_samples, window_samples=window_samples,
                                    n_windows=rule.n_windows)
    starts = list(range(0, total_samples - window_samples + 1, window_samples))
    if total_samples - (starts[-1] + window_samples) >= window_samples // 2:
        starts.append(total_samples - window_samples)
    return starts


def _padded(samples: np.ndarray, window_samples: int) -> np.ndarray:
    window = np.zeros(window_samples, np.float32)
    offset = (window_samples - len(samples)) // 2
    window[offset:offset + len(samples)] = samples
    return window


def cut_windows(blocks: Iterable[np.ndarray], *, window_samples: int, rule: WindowRule,
                total_samples: int | None, sample_rate_hz: int,
                path: str | os.PathLike = "<audio>") -> Iterator[np.ndarray]:
    """Windows of ``window_samples`` from a stream of blocks, following ``rule`` (module docstring).

    ``total_samples`` (the expected length at the model rate) places evenly spaced windows while
    streaming; without it they are placed once the stream ends, holding the track in memory.
    """
    if rule.kind == "consecutive":
        yield from _consecutive(blocks, window_samples, sample_rate_hz, path)
    elif total_samples:
        starts = evenly_spaced_starts(total_samples, window_samples=window_samples,
                                      n_windows=rule.n_windows)
        yield from _at_starts(blocks, starts, window_samples, sample_rate_hz, path)
    else:
        track = np.concatenate(list(blocks))
        starts = evenly_spaced_starts(len(track), window_samples=window_samples,
                                      n_windows=rule.n_windows)
        yield from _at_starts([track], starts, window_samples, sample_rate_hz, path)


def _too_short(length: int, sample_rate_hz: int, path: str | os.PathLike) -> AudioError:
    return AudioError(path, f"too short to tag ({length / sample_rate_hz:.2f} s; "
                            f"at least {MIN_DURATION_S:.1f} s needed)")


def _consecutive(blocks: Iterable[np.ndarray], window: int, rate: int,
                 path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The windows at :func:`window_starts`' consecutive starts, cut while streaming (the
    track's length is known only at its end, so the rule is applied to the remainder then)."""
    buffer = np.zeros(0, np.float32)
    previous: np.ndarray | None = None
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if len(buffer) else block
        n_full = len(buffer) // window
        for i in range(n_full):
            previous = buffer[i * window:(i + 1) * window].copy()
            yield previous
        buffer = buffer[n_full * window:].copy()
    remainder = len(buffer)
    if previous is None:
        if remainder < MIN_DURATION_S * rate:
            raise _too_short(remainder, rate, path)
        yield _padded(buffer, window)
    elif remainder >= window // 2:
        yield np.concatenate([previous[remainder:], buffer])


def _at_starts(blocks: Iterable[np.ndarray], starts: list[int], window: int, rate: int,
               path: str | os.PathLike) -> Iterator[np.ndarray]:
    buffer = np.zeros(0, np.float32)
    offset = 0  # absolute index of buffer[0]
    pending = list(starts)
    emitted = False
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if len(buffer) else block
        while pending and pending[0] + window <= offset + len(buffer):
            begin = pending.pop(0) - offset
            emitted = True
            yield buffer[begin:begin + window].copy()
        keep_from = min(pending[0] - offset if pending else len(buffer), len(buffer) - window)
        if keep_from > 0:
            buffer, offset = buffer[keep_from:].copy(), offset + keep_from
    if not pending:
        return
    total = offset + len(buffer)
    if total < window:
        if total < MIN_DURATION_S * rate:
            raise _too_short(total, rate, path)
        yield _padded(buffer, window)
    elif not emitted or pending[0] < total:
        yield buffer[len(buffer) - window:].copy()


def find_audio_files(paths: Iterable[str | os.PathLike], *,
                     on_error: Callable[[OSError], None] | None = None) -> Iterator[Path]:
    """Files as given, and audio files under folders (recursive, sorted, audio extensions only).

    Symlinked folders are followed, as a library spread over disks by links expects; each real
    folder is walked once (over all of ``paths``), so a link back up the tree cannot loop and a
    folder reached twice yields its files once, under the first path found in sorted order. A
    folder that cannot be listed is skipped and its ``OSError`` (``filename`` names it) passed to
    ``on_error``, or raised without one: a silently missing folder looks like a complete run.
    """
    seen: set[tuple[int, int]] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(_audio_under(path, seen, on_error))
        else:
            yield path


def _audio_under(folder: Path, seen: set[tuple[int, int]],
                 on_error: Callable[[OSError], None] | None) -> Iterator[Path]:
    def report(error: OSError) -> None:
        if on_error is None:
            raise error
        on_error(error)

    for root, folders, files in os.walk(folder, onerror=report, followlinks=True):
        try:
            status = os.stat(root)
        except OSError as error:
            report(error)
            folders.clear()
            continue
        if (status.st_dev, status.st_ino) in seen:
            folders.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        folders.sort()
        for name in files:
            candidate = Path(root, name)
            if candidate.suffix.lower() in AUDIO_EXTENSIONS and candidate.is_file():
                yield candidate
