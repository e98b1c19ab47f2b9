"""Decoding every format, downmix, resampling and the windowing rules of docs/windowing.md, on
files written by the tests themselves."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
import soundfile
from conftest import tone, write_audio

from musictag import audio
from musictag.audio import AudioError, WindowRule, cut_windows, load_mono, probe, stream_mono


def peak_frequency_hz(samples: np.ndarray, rate: int) -> float:
    """The strongest FFT bin, refined by parabolic interpolation (resolution well under 1 Hz)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(samples)


# (suffix, decoder chosen automatically): libsndfile where it can, FFmpeg through PyAV otherwise
FORMATS = [(".wav", "soundfile"), (".flac", "soundfile"), (".ogg", "soundfile"),
           (".opus", "soundfile"), (".mp3", "soundfile"), (".m4a", "pyav"), (".webm", "pyav")]


@pytest.mark.parametrize(("suffix", "decoder"), FORMATS, ids=[s for s, _ in FORMATS])
def test_each_format_decodes_to_its_tone(tmp_path, suffix, decoder):
    path = write_audio(tmp_path / f"tone{suffix}", tone(2.0, 16000, 440.0), 16000)
    info = probe(path)
    assert info.decoder == decoder
    samples = load_mono(path, sample_rate_hz=16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / 16000 - 2.0) < 0.15  # AAC adds ~0.11 s of priming and padding
    assert abs(peak_frequency_hz(samples, 16000) - 440.0) < 2.0
    middle = samples[4000:-4000]
    assert 0.2 < np.sqrt(2 * np.mean(middle**2)) < 0.4  # amplitude 0.3 survives the codec


def test_stereo_is_downmixed_to_the_mean_of_its_channels(tmp_path):
    rate = 8000
    left, right = tone(2.0, rate, 440.0), tone(2.0, rate, 1000.0) * 0.5
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), rate, subtype="FLOAT")
    assert probe(path).channels == 2
    np.testing.assert_allclose(load_mono(path, sample_rate_hz=rate), (left + right) / 2,
                               atol=1e-6)


def test_stereo_through_pyav_is_downmixed(tmp_path):
    path = tmp_path / "stereo.m4a"
    write_audio(path, tone(2.0, 16000, 440.0, channels=2), 16000)
    samples = load_mono(path, sample_rate_hz=16000)
    assert abs(peak_frequency_hz(samples, 16000) - 440.0) < 2.0


def test_without_the_ffmpeg_extra_an_m4a_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "song.m4a"
    write_audio(path, tone(1.0, 16000, 440.0), 16000)
    monkeypatch.setitem(sys.modules, "av", None)  # what an install without PyAV meets
    with pytest.raises(AudioError) as raised:
        load_mono(path, sample_rate_hz=16000)
    message = str(raised.value)
    assert "song.m4a" in message and "musictag[ffmpeg]" in message and "\n" not in message


@pytest.mark.parametrize(("source_hz", "target_hz"), [(44100, 22050), (48000, 16000),
                                                      (8000, 22050)])
def test_resampled_1khz_sine_keeps_its_frequency(tmp_path, source_hz, target_hz):
    path = tmp_path / f"sine{source_hz}.flac"
    soundfile.write(path, tone(3.0, source_hz, 1000.0), source_hz)
    samples = load_mono(path, sample_rate_hz=target_hz)
    assert abs(len(samples) - 3 * target_hz) <= 2
    assert abs(peak_frequency_hz(samples, target_hz) - 1000.0) < 2.0


def test_stream_mono_yields_bounded_blocks_equal_to_the_whole(tmp_path):
    path = tmp_path / "ten.flac"
    soundfile.write(path, tone(10.0, 44100, 1000.0, channels=2), 44100)
    info, blocks = stream_mono(path, sample_rate_hz=22050, block_seconds=1.0)
    assert (info.sample_rate_hz, info.channels, info.n_frames) == (44100, 2, 441000)
    sizes = [len(block) for block in blocks]
    assert len(sizes) >= 10
    assert max(sizes) <= 22050 + 512  # one block of 1 s at the model rate, plus resampler slack
    whole = load_mono(path, sample_rate_hz=22050)
    assert sum(sizes) == len(whole)
    _, blocks = stream_mono(path, sample_rate_hz=22050, block_seconds=1.0)
    np.testing.assert_allclose(np.concatenate(list(blocks)), whole, atol=1e-5)


# --- windowing (docs/windowing.md); rate 1000 Hz, windows of 3000 samples ---
RATE, WINDOW = 1000, 3000
CONSECUTIVE = WindowRule("consecutive")


def windows_of(signal: np.ndarray, rule: WindowRule = CONSECUTIVE, *, block: int = 700,
               total: int | None = None) -> list[np.ndarray]:
    blocks = (signal[i:i + block] for i in range(0, len(signal), block))
    return list(cut_windows(blocks, window_samples=WINDOW, rule=rule, total_samples=total,
                            sample_rate_hz=RATE, path="clip.wav"))


def ramp(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.float32)


def test_consecutive_windows_are_back_to_back():
    signal = ramp(2 * WINDOW)
    windows = windows_of(signal)
    assert len(windows) == 2
    np.testing.assert_array_equal(np.concatenate(windows), signal)


def test_remainder_of_half_a_window_gets_an_end_aligned_window():
    signal = ramp(2 * WINDOW + WINDOW // 2)
    windows = windows_of(signal)
    assert len(windows) == 3
    np.testing.assert_array_equal(windows[0], signal[:WINDOW])
    np.testing.assert_array_equal(windows[1], signal[WINDOW:2 * WINDOW])
    np.testing.assert_array_equal(windows[2], signal[-WINDOW:])


def test_remainder_under_half_a_window_is_dropped():
    signal = ramp(2 * WINDOW + WINDOW // 2 - 1)
    windows = windows_of(signal)
    assert len(windows) == 2
    np.testing.assert_array_equal(np.concatenate(windows), signal[:2 * WINDOW])


@pytest.mark.parametrize("block", [1, 999, 3000, 10_000])
def test_windows_do_not_depend_on_block_size(block):
    signal = ramp(4 * WINDOW + 2000)
    expected = windows_of(signal, block=len(signal))
    got = windows_of(signal, block=block)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", [CONSECUTIVE, WindowRule("evenly_spaced", 16)])
def test_clip_shorter_than_a_window_is_zero_padded_on_both_sides(rule):
    signal = ramp(2000)  # 2 s: over the 1 s minimum, under one 3 s window
    for total in (None, len(signal)):
        [window] = windows_of(signal, rule, total=total)
        assert len(window) == WINDOW
        np.testing.assert_array_equal(window[500:2500], signal)
        assert not window[:500].any() and not window[2500:].any()


@pytest.mark.parametrize("rule", [CONSECUTIVE, WindowRule("evenly_spaced", 16)])
def test_clip_under_one_second_is_an_error(rule):
    assert len(windows_of(ramp(RATE), rule)) == 1  # exactly 1 s is enough
    with pytest.raises(AudioError, match=r"clip\.wav: too short to tag \(0\.99 s"):
        windows_of(ramp(RATE - 10), rule)


@pytest.mark.parametrize("total_known", [True, False])
def test_evenly_spaced_rule_gives_16_windows_from_start_to_end(total_known):
    signal = ramp(40 * WINDOW + 123)
    windows = windows_of(signal, WindowRule("evenly_spaced", 16),
                         total=len(signal) if total_known else None)
    assert len(windows) == 16
    np.testing.assert_array_equal(windows[0], signal[:WINDOW])
    np.testing.assert_array_equal(windows[-1], signal[-WINDOW:])
    starts = [int(w[0]) - 1 for w in windows]  # the ramp's value gives each window's start
    assert starts == [round(s) for s in np.linspace(0, len(signal) - WINDOW, 16)]
    for start, window in zip(starts, windows, strict=True):
        np.testing.assert_array_equal(window, signal[start:start + WINDOW])


def test_evenly_spaced_when_the_stream_is_shorter_than_declared():
    signal = ramp(10 * WINDOW)
    windows = windows_of(signal, WindowRule("evenly_spaced", 16), total=20 * WINDOW)
    planned = [round(s) for s in np.linspace(0, 20 * WINDOW - WINDOW, 16)]
    # tagged as far as it goes: the planned windows that fit in what the stream holds
    assert [int(w[0]) - 1 for w in windows] == [s for s in planned if s + WINDOW <= len(signal)]
    assert all(len(w) == WINDOW for w in windows)


def test_find_audio_files_recurses_and_keeps_audio_extensions(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/b/deep.FLAC", "a/song.mp3", "top.wav", "notes.txt", "a/cover.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found = list(audio.find_audio_files([tmp_path]))
    assert found == sorted([tmp_path / "a/b/deep.FLAC", tmp_path / "a/song.mp3",
                            tmp_path / "top.wav"])
    assert list(audio.find_audio_files([tmp_path / "notes.txt"])) == [tmp_path / "notes.txt"]


# --- bad input: AudioError with a one-line reason naming the file ---

def test_bad_files_raise_audio_errors(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("not audio at all\n" * 20)
    (tmp_path / "random.flac").write_bytes(rng.bytes(5000))
    soundfile.write(tmp_path / "silence.wav", np.zeros(8000 * 5, np.float32), 8000)
    bad = tone(2.0, 8000)
    bad[100], bad[200] = np.nan, np.inf
    soundfile.write(tmp_path / "nan.wav", bad, 8000, subtype="FLOAT")
    reasons = {"empty.wav": "empty", "text.mp3": "not a decodable audio file",
               "random.flac": "not a decodable audio file", "silence.wav": "silent",
               "nan.wav": "NaN"}
    for name, reason in reasons.items():
        with pytest.raises(AudioError) as caught:
            load_mono(tmp_path / name, sample_rate_hz=8000)
        message = str(caught.value)
        assert message.startswith(str(tmp_path / name)) and reason in message
        assert "\n" not in message


def test_wav_shorter_than_its_header_is_decoded_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cut.wav"
    soundfile.write(path, tone(4.0, 8000), 8000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:44 + 2 * 8000 * 2])  # header (claims 4 s) and 2 s of samples
    assert probe(path).n_frames == 4 * 8000  # the header's claim
    with caplog.at_level(logging.WARNING, logger="musictag.audio"):
        samples = load_mono(path, sample_rate_hz=8000)
    assert len(samples) == 2 * 8000
    assert "header declares 4.0 s but the file holds 2.0 s" in caplog.text


@pytest.mark.parametrize("subtype, rate", [("VORBIS", 8000), ("OPUS", 48000)])
def test_ogg_cut_short_is_decoded_with_a_warning_and_a_whole_one_without(tmp_path, caplog,
                                                                         subtype, rate):
    whole = tmp_path / "whole.ogg"
    soundfile.write(whole, tone(6.0, rate, 300.0) + 0.01 * np.random.default_rng(0).standard_normal(
        6 * rate).astype(np.float32), rate, format="OGG", subtype=subtype)
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    assert audio.ogg_stream_ended(whole) and not audio.ogg_stream_ended(cut)
    with caplog.at_level(logging.WARNING, logger="musictag.audio"):
        load_mono(whole, sample_rate_hz=8000)
        assert caplog.text == ""
        samples = load_mono(cut, sample_rate_hz=8000)
    assert 0 < len(samples) < 5 * 8000
    assert f"{cut}: the Ogg stream stops without its end marker" in caplog.text


def test_wav_declared_frames_reads_the_data_chunk(tmp_path):
    path = tmp_path / "stereo24.wav"
    soundfile.write(path, np.zeros((1234, 2), np.float32), 8000, subtype="PCM_24")
    assert audio.wav_declared_frames(path) == 1234
    soundfile.write(tmp_path / "x.flac", np.zeros(100, np.float32), 8000)
    assert audio.wav_declared_frames(tmp_path / "x.flac") is None


def noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Noise at -16 dBFS: it barely compresses, so cutting a FLAC's bytes cuts its audio alike."""
    shape = (int(seconds * rate), channels) if channels > 1 else (int(seconds * rate),)
    return (0.15 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("seconds", [6.0, 80.0])  # cut inside the first 30 s block, and after it
def test_flac_cut_short_is_tagged_as_far_as_it_decodes_with_a_warning(tmp_path, caplog, seconds):
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, noise(seconds, 8000), 8000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * 0.6)])  # head -c 60%
    with caplog.at_level(logging.WARNING, logger="musictag.audio"):
        info, stream = stream_mono(cut, sample_rate_hz=8000)
        samples = np.concatenate(list(stream))
    assert info.n_frames == seconds * 8000
    assert 0.55 * seconds < stream.duration_s == len(samples) / 8000 < 0.6 * seconds
    np.testing.assert_array_equal(samples, load_mono(whole, sample_rate_hz=8000)[:len(samples)])
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert (f"{cut}: header declares {seconds:.1f} s but the file holds "
            f"{stream.duration_s:.1f} s (decoding stopped: flac decoder lost sync)") in caplog.text


def test_same_pcm_downmixes_alike_in_every_decoder(tmp_path):
    """libsndfile and FFmpeg both take the mean of the channels; FFmpeg's own downmix matrix
    was 3 dB louder, so the same PCM in a .mka scored differently from the .wav."""
    av = pytest.importorskip("av")
    rate = 16000
    pcm = np.stack([tone(2.0, rate, 440.0), 0.5 * tone(2.0, rate, 1000.0)], axis=1)
    wav = tmp_path / "same.wav"
    soundfile.write(wav, pcm, rate, subtype="FLOAT")
    mka = tmp_path / "same.mka"
    try:
        with av.open(str(mka), "w", format="matroska") as container:
            stream = container.add_stream("pcm_f32le", rate=rate, layout="stereo")
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="stereo")
            frame.sample_rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
    except (av.FFmpegError, ValueError) as error:
        pytest.skip(f"this FFmpeg cannot write float PCM in Matroska ({error})")
    assert (probe(wav).decoder, probe(mka).decoder) == ("soundfile", "pyav")
    assert probe(mka).channels == 2
    from_wav, from_mka = (load_mono(p, sample_rate_hz=rate) for p in (wav, mka))
    np.testing.assert_allclose(from_wav, pcm.mean(axis=1), atol=1e-7)
    assert len(from_mka) == len(from_wav)
    np.testing.assert_allclose(from_mka, from_wav, atol=1e-7)


def damaged_mp3(path, seconds: float = 10.0):
    """A 22050 Hz MP3 (MPEG-2, whose bit reservoir spans frames) with three stretches of bytes
    overwritten, as a bad download or disk leaves one."""
    soundfile.write(path, tone(seconds, 22050, 440.0), 22050, format="MP3",
                    subtype="MPEG_LAYER_III")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for offset in (len(data) // 3, len(data) // 2, 3 * len(data) // 4):
        data[offset:offset + 300] = rng.bytes(300)
    path.write_bytes(bytes(data))
    return path


def test_decoder_notes_on_stderr_become_one_warning_of_ours(tmp_path, caplog, capfd):
    """libmpg123 prints "Note: Illegal Audio-MPEG-Header ..." to fd 2 itself; they are caught
    and become one warning naming the file. A sound MP3 read in many blocks prints nothing: the
    seek after each read that soundfile makes restarted libmpg123 mid-stream."""
    bad = damaged_mp3(tmp_path / "bad.mp3")
    good = tmp_path / "good.mp3"
    soundfile.write(good, tone(10.0, 22050, 440.0), 22050, format="MP3",
                    subtype="MPEG_LAYER_III")
    with caplog.at_level(logging.WARNING, logger="musictag.audio"):
        _, stream = stream_mono(good, sample_rate_hz=22050, block_seconds=1.0)
        blockwise = np.concatenate(list(stream))
        assert caplog.text == ""
        load_mono(bad, sample_rate_hz=22050)
    whole, _ = soundfile.read(good, dtype="float32")
    np.testing.assert_allclose(blockwise, whole, atol=1e-6)  # glitches were 0.36
    assert capfd.readouterr().err == ""
    notes = [r.getMessage() for r in caplog.records if "decoder reported damaged data" in
             r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith(f"{bad}: ") and "\n" not in notes[0]
    assert len(caplog.records) == 1  # the cut-short clause, if any, is on the same line


def test_captured_stderr_passes_other_writers_through(capfd):
    from musictag.native_stderr import capture_notes

    notes: list[str] = []
    with capture_notes(notes):
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x0 at offset 9.\nanother thread's line\n")
        os.write(2, b"[src/libmpg123/layer3.c:f():1] error: dequantization failed!\n")
    assert notes == ["Illegal Audio-MPEG-Header 0x0 at offset 9.", "dequantization failed!"]
    assert capfd.readouterr().err == "another thread's line\n"


def test_float_samples_far_beyond_full_scale_are_refused_with_their_peak(tmp_path):
    loud = tmp_path / "loud.wav"
    soundfile.write(loud, 1e6 * tone(3.0, 8000), 8000, subtype="FLOAT")
    with pytest.raises(AudioError) as raised:
        load_mono(loud, sample_rate_hz=8000)
    message = str(raised.value)
    assert message.startswith(f"{loud}: sample peak 3e+05 (+110 dBFS)") and "\n" not in message
    hot = tmp_path / "hot.wav"  # overs of a float master are audio, and tagged
    soundfile.write(hot, 6.0 * tone(3.0, 8000), 8000, subtype="FLOAT")
    assert np.abs(load_mono(hot, sample_rate_hz=8000)).max() == pytest.approx(1.8, rel=1e-3)


def test_a_header_declaring_1_hz_is_refused_before_decoding(tmp_path):
    path = tmp_path / "one_hz.wav"  # 4 KB: 2000 s at 1 Hz, 44 million samples at 22050 Hz
    soundfile.write(path, noise(2000, 1), 1, subtype="PCM_16")
    assert path.stat().st_size < 4100
    for call in (probe, lambda p: load_mono(p, sample_rate_hz=22050)):
        with pytest.raises(AudioError, match=r"one_hz.wav: declares a sample rate of 1 Hz"):
            call(path)


def test_stream_duration_is_the_audio_decoded(tmp_path):
    path = tmp_path / "odd.flac"
    soundfile.write(path, tone(7.3, 44100, channels=2), 44100)
    _, stream = stream_mono(path, sample_rate_hz=22050, block_seconds=2.0)
    assert stream.duration_s == 0.0
    next(stream)
    assert stream.duration_s == pytest.approx(2.0)
    list(stream)
    assert stream.duration_s == pytest.approx(7.3)


@pytest.mark.parametrize("rule", [CONSECUTIVE, WindowRule("evenly_spaced", 5)])
@pytest.mark.parametrize("length", [WINDOW + 1, 2 * WINDOW, 2 * WINDOW + WINDOW // 2 - 1,
                                    2 * WINDOW + WINDOW // 2, 7 * WINDOW + 17])
def test_window_starts_is_the_rule_cut_windows_follows(rule, length):
    """audio.window_starts (used by the taggram) places the windows cut_windows streams."""
    signal = ramp(length)
    starts = audio.window_starts(length, window_samples=WINDOW, rule=rule)
    windows = windows_of(signal, rule, total=length if rule is not CONSECUTIVE else None)
    assert len(windows) == len(starts)
    for start, window in zip(starts, windows, strict=True):
        np.testing.assert_array_equal(window, signal[start:start + WINDOW])
