"""Generate freely licensed audio with the sounds the distillation corpus lacks (issue 20, part 1).

Run by make-sounds.sh inside its own venv (music21, mido, numpy, soundfile; never the project's).
Groups, one first-level folder each under DEST, so each can be held out on its own:
  render-timgm6mb / render-opl3: music21 corpus scores rendered with fluidsynth
      through one Debian GM soundfont each, GM programs varied per part (every family, and the
      voice presets Choir Aahs 52, Voice Oohs 53, Synth Voice 54, often for sung repertoire);
  arrangements: generated drums (GM channel 10), bass, chords and lead in nine styles, rendered
      through the same two soundfonts;
  voices: espeak-ng and festival speech (male and female, several languages), espeak-ng
      sung-like sustained vowels on folk melodies, festival singing mode (diphone voices);
  voice-mixes: new voice takes mixed over new instrumental renders at voice -12..+6 dB.
Usage: python make_sounds.py generate DEST [--hours H] [--jobs N] [--seed S] [--max-minutes M]
       (a second call with the same seed resumes after the files the manifest lists)
       python make_sounds.py check DEST     (fail if any manifest row matches the keep-out list)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import version as _pkg_version
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

# ---------------------------------------------------------------- keep-out list (data) --------
# The acceptance set uses these; nothing generated here may come from them. Each pattern is
# searched (case-insensitive) in a source id "music21:<corpus path>#<title>" and in every
# manifest row's source column; `check` fails the run if any row matches.
EXCLUDED_SOURCES = [
    r"(?<![0-9.])bwv66\.6(?![0-9])",  # Bach BWV 66.6
    r"(?<![0-9.])bwv4\.8(?![0-9])",  # Bach BWV 4.8
    r"(?<![0-9.])bwv269(?![0-9])",  # Bach BWV 269
    r"mozart/k545|k\.? ?545",  # Mozart K. 545
    r"joplin|maple[ _-]?leaf",  # Joplin, Maple Leaf Rag
    r"corelli/opus3no1|corelli.*op(us)?\.? ?3",  # Corelli op. 3 no. 1 (all of it)
    r"beethoven/opus18no1(?![0-9])",  # Beethoven op. 18 no. 1, all movements
    r"acacia",  # Ryan's Mammoth reel "Acacia"
    r"fluid[-_ ]?r3|fluid-soundfont|fluidr3mono",  # the Fluid R3 soundfont, any packaging
    # MuseScore General is built largely from Fluid R3 Mono's samples (its Debian copyright
    # file says so): renders through it would carry the acceptance set's timbres.
    r"musescore[-_ ]?general",
    r"gcompris|csmash|0ad-data|asc-music|audio-lena|\bpyo\b|pygame|librosa",
]
FORBIDDEN_SOUNDFONT_PACKAGES = {
    "fluid-soundfont-gm",
    "fluid-soundfont-gs",
    "fluidr3mono-gm-soundfont",
    "musescore-general-soundfont",
    "musescore-general-soundfont-small",
    "musescore-general-soundfont-lossless",
}

SOUNDFONTS = {  # name -> (path, Debian package); always passed to fluidsynth explicitly
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "opl3": ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
}
RATE_HZ = 22050
MIDO_VERSION = _pkg_version("mido")
# Share of the requested hours per group.
GROUP_SHARE = {
    "render-timgm6mb": 0.22,
    "render-opl3": 0.16,
    "arrangements": 0.17,
    "voices": 0.15,
    "voice-mixes": 0.30,
}
MAX_RENDER_S = 210.0


def excluded(source: str) -> bool:
    return any(re.search(p, source, re.IGNORECASE) for p in EXCLUDED_SOURCES)


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def deb_version(pkg: str) -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True
    )
    return out.stdout.strip() or "?"


# ---------------------------------------------------------------- GM palettes ------------------
FAMILIES = {
    "piano": [0, 1, 2, 3, 4, 5],
    "harpsichord": [6],
    "clavinet": [7],
    "chromatic": [8, 9, 10, 11, 12, 13],
    "organ": [16, 17, 19, 20, 21, 22, 23],
    "guitar": [24, 25, 26, 27],
    "eguitar": [28, 29, 30],
    "bass": [32, 33, 34, 35],
    "strings": [40, 41, 42, 43, 48, 49, 44],
    "pizz": [45],
    "harp": [46],
    "brass": [56, 57, 58, 60, 61, 62],
    "reed": [64, 65, 66, 67, 68, 69, 70, 71],
    "flute": [72, 73, 74, 75, 77, 78, 79],
    "lead": [80, 81, 82, 85, 87],
    "pad": [88, 89, 90, 91, 92, 94, 95],
    "world": [104, 105, 106, 107, 108, 109, 110, 111],
    "voice": [52, 53, 54],
}
SOLO_FAMILIES = [
    "piano",
    "piano",
    "piano",
    "harpsichord",
    "harpsichord",
    "organ",
    "harp",
    "harp",
    "guitar",
    "guitar",
    "strings",
    "chromatic",
    "world",
    "brass",
    "reed",
    "flute",
    "pad",
    "eguitar",
    "clavinet",
    "lead",
]
FOLK_PROGRAMS = [
    110,
    40,
    73,
    74,
    78,
    72,
    109,
    21,
    22,
    105,
    24,
    25,
    46,
    104,
    106,
    107,
    111,
    0,
    6,
    71,
    68,
    41,
    12,
    108,
    75,
    79,
    65,
]


def pick(rng: random.Random, family: str) -> int:
    return rng.choice(FAMILIES[family])


def programs_for(kind: str, n_parts: int, rng: random.Random) -> tuple[list[int], str]:
    """GM programs for the parts of a score of this kind, and a word for the manifest."""
    r = rng.random()
    if kind == "sung" and r < 0.6 or kind != "sung" and r < 0.1:
        pre = rng.choice([[52], [53], [54], [52, 53], [52, 52, 53]])
        progs = [rng.choice(pre) for _ in range(n_parts)]
        if n_parts > 1 and rng.random() < 0.3:  # choir with one instrument on the bass line
            progs[-1] = pick(rng, rng.choice(["organ", "strings", "reed"]))
        return progs, "choir"
    if kind == "folk":
        return [rng.choice(FOLK_PROGRAMS) for _ in range(n_parts)], "folk"
    if r < 0.55 or kind == "keyboard" and r < 0.8:
        fam = rng.choice(
            ["piano", "harpsichord", "organ", "harp", "guitar", "chromatic"]
            if kind == "keyboard"
            else SOLO_FAMILIES
        )
        prog = pick(rng, fam)
        return [prog] * n_parts, f"solo-{fam}"
    if kind == "quartet" and r < 0.8:
        base = [rng.choice([40, 41, 110]), 40, 41, 42]
        return [base[min(i, 3)] for i in range(n_parts)], "strings"
    fams = rng.sample(
        [
            "strings",
            "brass",
            "reed",
            "flute",
            "piano",
            "organ",
            "guitar",
            "harp",
            "world",
            "chromatic",
            "pad",
            "lead",
            "voice",
            "harpsichord",
        ],
        k=min(n_parts, 14),
    )
    return [pick(rng, fams[i % len(fams)]) for i in range(n_parts)], "ensemble"


# ---------------------------------------------------------------- MIDI post-processing ---------
def restyle_midi(
    src: Path,
    dst: Path,
    programs: list[int],
    rng: random.Random,
    tempo_factor: float,
    width: float,
    max_s: float = MAX_RENDER_S + 5,
) -> None:
    """Re-channel each note track, set its program, pan, reverb and chorus, scale tempo and
    velocity."""
    mid = mido.MidiFile(src)
    note_tracks = [t for t in mid.tracks if any(m.type == "note_on" for m in t)]
    channels = [c for c in range(16) if c != 9]
    vel_scale = rng.uniform(0.6, 1.15)
    reverb, chorus = rng.randint(0, 110), rng.choice([0, 0, rng.randint(0, 90)])
    for i, track in enumerate(note_tracks):
        ch = channels[i % len(channels)]
        prog = programs[i % len(programs)]
        pan = 64 + int(width * 50 * (((i + 0.5) / max(1, len(note_tracks))) * 2 - 1))
        pan = max(0, min(127, pan))
        new = [
            mido.Message("program_change", channel=ch, program=prog, time=0),
            mido.Message("control_change", channel=ch, control=10, value=pan, time=0),
            mido.Message("control_change", channel=ch, control=91, value=reverb, time=0),
            mido.Message("control_change", channel=ch, control=93, value=chorus, time=0),
            mido.Message(
                "control_change", channel=ch, control=7, value=rng.randint(85, 120), time=0
            ),
        ]
        carry = 0
        for m in track:
            if m.type == "program_change" or (
                m.type == "control_change" and m.control in (7, 10, 91, 93)
            ):
                carry += m.time
                continue
            if not m.is_meta and hasattr(m, "channel"):
                m = m.copy(channel=ch)
            if m.type == "note_on" and m.velocity > 0:
                v = int(m.velocity * vel_scale + rng.gauss(0, 6))
                m = m.copy(velocity=max(15, min(127, v)))
            new.append(m.copy(time=m.time + carry))
            carry = 0
        track[:] = new
    for track in mid.tracks:
        for j, m in enumerate(track):
            if m.type == "set_tempo":
                track[j] = m.copy(tempo=max(1, int(m.tempo / tempo_factor)))
    if not any(m.type == "set_tempo" for t in mid.tracks for m in t):
        mid.tracks[0].insert(
            0, mido.MetaMessage("set_tempo", tempo=int(500000 / tempo_factor), time=0)
        )
    cut_midi(mid, max_s)
    mid.save(dst)


def cut_midi(mid: mido.MidiFile, max_s: float) -> None:
    """End every track at max_s (first tempo) with all-notes-off: fluidsynth renders whole files,
    and a few corpus files run 20 minutes or make it render without end."""
    tempo = next((m.tempo for t in mid.tracks for m in t if m.type == "set_tempo"), 500000)
    cap = int(max_s * 1e6 / tempo * mid.ticks_per_beat)
    for track in mid.tracks:
        tick, keep, chans = 0, [], set()
        for m in track:
            tick += m.time
            if tick > cap:
                break
            if m.type == "end_of_track":
                continue
            keep.append(m)
            if hasattr(m, "channel"):
                chans.add(m.channel)
        end = min(tick, cap)
        gap = end - sum(m.time for m in keep)
        for c in sorted(chans):
            keep.append(mido.Message("control_change", channel=c, control=123, value=0, time=gap))
            gap = 0
        keep.append(mido.MetaMessage("end_of_track", time=gap))
        track[:] = keep


def fluidsynth(midi: Path, wav: Path, soundfont: str) -> None:
    path, pkg = SOUNDFONTS[soundfont]
    assert not excluded(os.path.realpath(path)) and pkg not in FORBIDDEN_SOUNDFONT_PACKAGES
    run(
        [
            "fluidsynth",
            "-ni",
            "-q",
            "-o",
            "synth.dynamic-sample-loading=1",
            "-o",
            "audio.file.format=float",
            "-o",
            "synth.polyphony=512",
            "-g",
            "0.5",
            "-r",
            str(RATE_HZ),
            "-F",
            str(wav),
            path,
            str(midi),
        ],
        timeout=600,
    )  # one rendered without end before the files were cut (cut_midi)


def finish(
    audio: np.ndarray, rng: random.Random, *, max_s: float = MAX_RENDER_S, width: float = 1.0
) -> np.ndarray | None:
    """Trim, fade, set stereo width (mid/side) and level; None if silent."""
    if audio.ndim == 1:
        audio = audio[:, None]
    nz = np.flatnonzero(np.abs(audio).max(axis=1) > 1e-4)
    if len(nz) < 4 * RATE_HZ:
        return None
    audio = audio[nz[0] : nz[-1] + RATE_HZ // 2][: int(max_s * RATE_HZ)]
    if audio.shape[1] == 2 and width != 1.0:
        mid_, side = (audio[:, 0] + audio[:, 1]) / 2, (audio[:, 0] - audio[:, 1]) / 2 * width
        audio = np.stack([mid_ + side, mid_ - side], axis=1)
    fade = min(len(audio) // 4, 2 * RATE_HZ)
    audio[-fade:] *= np.linspace(1, 0, fade)[:, None]
    rms = float(np.sqrt(np.mean(audio**2)))
    if rms < 1e-4:
        return None
    audio = audio * (10 ** (rng.uniform(-24, -16) / 20) / rms)
    peak = float(np.abs(audio).max())
    if peak > 0.95:
        audio *= 0.95 / peak
    return audio.astype(np.float32)


def write(path: Path, audio: np.ndarray) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, RATE_HZ, format="FLAC", subtype="PCM_16")
    return len(audio) / RATE_HZ


# ---------------------------------------------------------------- score renders ---------------
def corpus_items(rng: random.Random) -> tuple[list, list]:
    """Scores to render and scores for voice-mix beds, each a list of (corpus path, opus member
    index or -1, kind), keep-out list removed; every score is in one list once, so no two groups
    share one."""
    from music21 import corpus

    root = Path(corpus.__file__).parent
    shelves: dict[str, list] = {}
    for p in corpus.getPaths():
        rel = str(Path(p).relative_to(root)).lower()
        if excluded("music21:" + rel):
            continue
        top = rel.split("/")[0]
        if top in (
            "demos",
            "theoryexercises",
            "leadsheet",
            "webern",
            "schoenberg",
            "nottingham-dataset",
        ):
            continue
        if top in (
            "palestrina",
            "monteverdi",
            "josquin",
            "trecento",
            "ciconia",
            "luca",
            "lusitano",
            "bach",
        ):
            kind = "sung"
        elif top in ("ryansmammoth", "essenfolksong", "oneills1850", "airdsairs", "miscfolk"):
            kind = "folk"
        elif top in ("beethoven", "haydn", "mozart"):
            kind = "quartet"
        else:
            kind = "keyboard"
        shelf = "bach" if top == "bach" else top if top in ("palestrina", "ryansmammoth") else kind
        members = (
            rng.sample(range(1, 400), 6)
            if top in ("essenfolksong", "oneills1850", "airdsairs", "miscfolk")
            else [-1]
        )  # tunes of a collection
        shelves.setdefault(shelf, []).extend((str(p), m, kind) for m in members)
    # 15 % of every shelf is kept for voice-mix beds. The rest interleaves the shelves (Bach,
    # Palestrina, Ryan's Mammoth, other sung, folk, quartet, keyboard), so that 1,300 Palestrina
    # movements do not crowd out the rest; shuffled within each shelf, no score twice.
    order = sorted(shelves)
    for s in order:
        rng.shuffle(shelves[s])
    cut = {s: len(shelves[s]) - len(shelves[s]) * 3 // 20 for s in order}
    mix = [x for s in order for x in shelves[s][cut[s] :]]
    rng.shuffle(mix)
    longest = max(cut.values())
    render = [shelves[s][i] for i in range(longest) for s in order if i < cut[s]]
    return render, mix


def load_score(path: str, member: int):
    from music21 import corpus, stream

    s = corpus.parse(path)
    if isinstance(s, stream.Opus):
        scores = list(s.scores)
        s = scores[member % len(scores)]
    title = (s.metadata.title if s.metadata and s.metadata.title else "") or ""
    source = f"music21:{path.split('/corpus/')[-1]}#{title}"
    if excluded(source):
        return None, source
    return s, source


def render_score(task: dict) -> list[list[str]]:
    rng = random.Random(task["seed"])
    score, source = load_score(task["path"], task["member"])
    if score is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        repeats = 1
        if (
            task["kind"] == "folk" and score.highestTime < 120
        ):  # short tunes: played two or three times
            repeats = rng.choice([2, 3])
        score.write("midi", fp=t / "a.mid")
        parts = len(score.parts) or 1
        programs, how = programs_for(task["kind"], parts, rng)
        tempo = rng.uniform(0.8, 1.2)
        width = rng.uniform(0.2, 1.4)
        restyle_midi(t / "a.mid", t / "b.mid", programs, rng, tempo, width)
        fluidsynth(t / "b.mid", t / "a.wav", task["sf"])
        audio, _ = sf.read(t / "a.wav", dtype="float32")
        if repeats > 1:
            audio = np.concatenate([audio] * repeats)
        audio = finish(audio, rng, width=rng.uniform(0.5, 1.3))
    if audio is None:
        return []
    name = re.sub(r"[^A-Za-z0-9.]+", "_", source.split(":", 1)[1])[:80]
    out = Path(task["dest"]) / task["group"] / f"{task['n']:05d}_{name}.flac"
    write(out, audio)
    return [
        [
            str(out.relative_to(task["dest"])),
            f"{source} programs={'/'.join(map(str, programs))} ({how}) tempo={tempo:.2f} "
            f"| {task['m21']} | {sf_source(task['sf'])} | fluidsynth {task['fluid']}",
            f"{task['group']}/COPYRIGHT",
        ]
    ]


def sf_source(name: str) -> str:
    return f"{SOUNDFONTS[name][1]} {deb_version(SOUNDFONTS[name][1])}"


# ---------------------------------------------------------------- arrangements ----------------
STYLES = {  # bpm range, swing, drum pattern builder, bass, chord programs, lead programs
    "rock": ((96, 144), 0.0, [33, 34, 35], [29, 30, 27, 0, 18], [29, 30, 81, 56]),
    "pop": ((88, 124), 0.0, [33, 38, 34], [0, 4, 48, 89, 25, 5], [80, 73, 0, 11, 65, 53]),
    "dance": ((118, 128), 0.0, [38, 39, 87], [0, 81, 89, 50, 90], [80, 81, 84, 54]),
    "techno": ((124, 142), 0.0, [38, 39, 87], [81, 90, 95, 50], [80, 81, 86, 99]),
    "metal": ((140, 200), 0.0, [33, 34], [30, 30, 31, 29], [30, 29, 80]),
    "country": ((90, 132), 0.0, [32, 33], [25, 24, 105, 0], [110, 105, 22, 26, 25]),
    "jazz": ((100, 210), 0.62, [32, 32, 33], [0, 26, 4, 11], [65, 66, 56, 64, 73, 0, 26]),
    "ambient": ((56, 84), 0.0, [38, 89, 32], [88, 89, 91, 49, 52, 94, 95], [8, 11, 46, 73, 98, 53]),
    "latin": ((90, 128), 0.0, [32, 33], [24, 0, 21], [56, 73, 65, 11]),
}
PROGRESSIONS = [
    [0, 5, 3, 4],
    [0, 3, 4, 4],
    [0, 5, 1, 4],
    [0, 4, 5, 3],
    [5, 3, 0, 4],
    [0, 0, 3, 4],
    [1, 4, 0, 0],
    [0, 6, 5, 4],
]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]


def drum_steps(style: str, rng: random.Random) -> dict[int, list[int]]:
    """GM drum note -> steps (of 16 per bar) where it hits."""
    e, q, s16 = list(range(0, 16, 2)), list(range(0, 16, 4)), list(range(16))
    hat = rng.choice([42, 42, 44])
    if style == "rock":
        return {36: [0, 8] + rng.choice([[], [10], [6]]), 38: [4, 12], hat: e}
    if style == "pop":
        return {
            36: [0, 7, 8] if rng.random() < 0.5 else [0, 8],
            38: [4, 12],
            42: e,
            39: rng.choice([[], [12]]),
        }
    if style == "dance":
        return {36: q, 39: [4, 12], 46: [2, 6, 10, 14], 42: s16 if rng.random() < 0.5 else e}
    if style == "techno":
        return {36: q, 42: s16, 46: [2, 6, 10, 14], 51: e, 39: rng.choice([[], [4, 12]])}
    if style == "metal":
        return {36: s16 if rng.random() < 0.7 else e, 38: [4, 12], rng.choice([49, 57, 51]): q}
    if style == "country":
        return {36: [0, 8], 38: [4, 12], 42: e, 37: rng.choice([[], [2, 6, 10, 14]])}
    if style == "jazz":
        return {
            51: [0, 4, 6, 8, 12, 14],
            44: [4, 12],
            36: rng.choice([[], [0]]),
            38: rng.choice([[], [10]]),
        }
    if style == "latin":
        return {
            36: [0, 3, 8, 11],
            37: [3, 6, 10, 12],
            42: e,
            75: [0, 3, 6, 10, 12],
            64: [8, 14],
            62: [4, 12],
        }
    return {}  # ambient: no kit


def arrangement_midi(style: str, rng: random.Random, seconds: float, path: Path) -> str:
    (lo, hi), swing, basses, chords, leads = STYLES[style]
    bpm = rng.uniform(lo, hi)
    tpb = 480
    step = tpb // 4
    mid = mido.MidiFile(ticks_per_beat=tpb)
    bars = max(4, int(seconds * bpm / 240))
    key = rng.randrange(12)
    scale = MINOR if style in ("metal", "techno") or rng.random() < 0.35 else MAJOR
    prog_deg = (
        [[1, 4, 0, 0], [1, 4, 0, 5]][rng.randrange(2)]
        if style == "jazz"
        else rng.choice(PROGRESSIONS)
    )
    events: list[tuple[int, mido.Message]] = []

    def at(bar: int, st: float) -> int:
        t = bar * 16 * step + int(st * step)
        if swing and int(st) % 4 == 2:  # swung eighth: second eighth late
            t += int((swing - 0.5) * 2 * step)
        return t

    def note(ch: int, pitch: int, t: int, dur: int, vel: int) -> None:
        events.append(
            (t, mido.Message("note_on", channel=ch, note=pitch, velocity=max(1, min(127, vel))))
        )
        events.append(
            (t + max(10, dur), mido.Message("note_off", channel=ch, note=pitch, velocity=0))
        )

    def chord_tones(deg: int, seventh: bool) -> list[int]:
        idx = [deg, deg + 2, deg + 4] + ([deg + 6] if seventh else [])
        return [scale[i % 7] + 12 * (i // 7) for i in idx]

    bass_p, chord_p, lead_p = rng.choice(basses), rng.choice(chords), rng.choice(leads)
    for ch, prog in ((0, bass_p), (1, chord_p), (2, lead_p)):
        events.append((0, mido.Message("program_change", channel=ch, program=prog)))
        events.append(
            (
                0,
                mido.Message(
                    "control_change",
                    channel=ch,
                    control=91,
                    value=rng.randint(20, 120) if style == "ambient" else rng.randint(0, 70),
                ),
            )
        )
        events.append(
            (
                0,
                mido.Message(
                    "control_change",
                    channel=ch,
                    control=10,
                    value=[64, rng.randint(30, 50), rng.randint(78, 98)][ch],
                ),
            )
        )
    kit = drum_steps(style, rng)
    drum_vel = rng.randint(80, 120)
    lead_on = rng.random() < 0.75
    for bar in range(bars):
        deg = prog_deg[bar % len(prog_deg)]
        tones = chord_tones(deg, style in ("jazz",) or rng.random() < 0.2)
        root = 36 + key + tones[0] if key + tones[0] < 8 else 24 + key + tones[0]
        fill = bar % 8 == 7
        for drum, steps in kit.items():
            for st in steps:
                note(
                    9,
                    drum,
                    at(bar, st),
                    step,
                    drum_vel - (15 if st % 4 else 0) + rng.randint(-8, 8),
                )
        if kit and fill:
            for st in range(8, 16, rng.choice([1, 2])):
                note(9, rng.choice([38, 45, 47, 48, 50]), at(bar, st), step, drum_vel)
        if kit and bar % 8 == 0:
            note(9, 49, at(bar, 0), 4 * step, drum_vel)
        # bass
        if style == "jazz":
            walk = [tones[0], tones[1] if rng.random() < 0.5 else tones[2], tones[2], tones[0] + 11]
            for b, iv in enumerate(walk):
                note(
                    0,
                    root + iv - tones[0],
                    at(bar, 4 * b),
                    4 * step - 20,
                    95 + rng.randint(-10, 10),
                )
        elif style in ("metal", "techno"):
            for st in range(0, 16, 1 if style == "techno" and rng.random() < 0.5 else 2):
                note(0, root, at(bar, st), step, 100 + rng.randint(-10, 10))
        elif style == "dance":
            for st in (2, 6, 10, 14):
                note(0, root, at(bar, st), 2 * step, 105)
        elif style == "country":
            for b in range(4):
                note(0, root + (7 if b % 2 else 0), at(bar, 4 * b), 3 * step, 100)
        elif style == "ambient":
            note(0, root, at(bar, 0), 16 * step, 70)
        else:
            for st in range(0, 16, 2):
                note(0, root, at(bar, st), 2 * step - 10, 100 - (10 if st % 4 else 0))
        # chords
        cbase = 48 + key
        if style in ("metal", "rock") and chord_p in (29, 30, 31):  # power chords
            rhythm = range(0, 16, 1 if style == "metal" else 2)
            for st in rhythm:
                for iv in (0, 7, 12):
                    note(1, cbase - 12 + tones[0] + iv, at(bar, st), step - 10, 100)
        elif style == "jazz":
            for st in rng.sample([2, 6, 7, 10, 14], 2):
                for iv in tones:
                    note(1, cbase + iv, at(bar, st), 2 * step, 75)
        elif style in ("ambient",):
            for iv in tones:
                note(1, cbase + iv, at(bar, 0), 16 * step, 60)
        elif style == "dance" or style == "techno":
            for st in rng.choice([(2, 6, 10, 14), (3, 6, 11), (0,)]):
                for iv in tones:
                    note(1, cbase + iv, at(bar, st), step * (16 if st == 0 else 1), 90)
        else:
            for st in rng.choice([(0, 4, 8, 12), (0, 6, 8, 12), tuple(range(0, 16, 2))]):
                for iv in tones:
                    note(1, cbase + iv, at(bar, st), 2 * step, 85 + rng.randint(-10, 5))
        # lead: scale walk of chord tones and passing notes
        if lead_on and bar % 16 >= 4:
            st = 0
            pos = rng.randrange(7)
            while st < 16:
                dur = rng.choice([2, 2, 4, 4, 1, 6, 8] if style != "ambient" else [8, 16])
                pos = max(0, min(13, pos + rng.choice([-2, -1, -1, 0, 1, 1, 2])))
                if rng.random() > 0.2:
                    note(
                        2,
                        60 + key + scale[pos % 7] + 12 * (pos // 7),
                        at(bar, st),
                        dur * step - 10,
                        95,
                    )
                st += dur
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    last = 0
    for t, m in events:
        track.append(m.copy(time=t - last))
        last = t
    mid.tracks.append(track)
    mid.save(path)
    return f"generated:{style} bpm={bpm:.0f} programs={bass_p}/{chord_p}/{lead_p}"


def render_arrangement(task: dict) -> list[list[str]]:
    rng = random.Random(task["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        desc = arrangement_midi(task["style"], rng, rng.uniform(50, 130), t / "a.mid")
        fluidsynth(t / "a.mid", t / "a.wav", task["sf"])
        audio, _ = sf.read(t / "a.wav", dtype="float32")
        audio = finish(audio, rng, width=rng.uniform(0.5, 1.3))
    if audio is None:
        return []
    out = Path(task["dest"]) / task["group"] / f"{task['n']:05d}_{task['style']}_{task['sf']}.flac"
    write(out, audio)
    return [
        [
            str(out.relative_to(task["dest"])),
            f"{desc} | mido {MIDO_VERSION} | {sf_source(task['sf'])} | fluidsynth {task['fluid']}",
            f"{task['group']}/COPYRIGHT",
        ]
    ]


# ---------------------------------------------------------------- voices ----------------------
# Public-domain texts (authors dead well over 100 years) and a sentence generator.
TEXTS = {
    "en": [
        "Shall I compare thee to a summer's day? Thou art more lovely and more temperate. Rough "
        "winds "
        "do shake the darling buds of May, and summer's lease hath all too short a date.",
        "I wandered lonely as a cloud that floats on high o'er vales and hills, when all at once "
        "I saw "
        "a crowd, a host, of golden daffodils; beside the lake, beneath the trees, fluttering and "
        "dancing in the breeze.",
        "Tyger Tyger, burning bright, in the forests of the night; what immortal hand or eye could "
        "frame thy fearful symmetry?",
        "Because I could not stop for Death, he kindly stopped for me; the carriage held but just "
        "ourselves and Immortality.",
        "Once upon a midnight dreary, while I pondered, weak and weary, over many a quaint and "
        "curious "
        "volume of forgotten lore.",
        "Half a league, half a league, half a league onward, all in the valley of Death rode the "
        "six "
        "hundred.",
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
        "the age "
        "of foolishness.",
    ],
    "de": [
        "Wer reitet so spät durch Nacht und Wind? Es ist der Vater mit seinem Kind.",
        "Im wunderschönen Monat Mai, als alle Knospen sprangen, da ist in meinem Herzen die Liebe "
        "aufgegangen.",
    ],
    "fr": [
        "Les sanglots longs des violons de l'automne blessent mon coeur d'une langueur monotone.",
        "Demain, dès l'aube, à l'heure où blanchit la campagne, je partirai.",
    ],
    "es": [
        "Volverán las oscuras golondrinas en tu balcón sus nidos a colgar.",
        "En un lugar de la Mancha, de cuyo nombre no quiero acordarme.",
    ],
    "it": [
        "Nel mezzo del cammin di nostra vita mi ritrovai per una selva oscura.",
        "Sempre caro mi fu quest'ermo colle, e questa siepe.",
    ],
    "la": ["Gaudeamus igitur, iuvenes dum sumus.", "Vivamus, mea Lesbia, atque amemus."],
    "pt": ["As armas e os barões assinalados, que da ocidental praia lusitana."],
    "nl": ["Het was in de tijd dat de dagen lang waren en de nachten kort."],
    "sv": ["Det var en gång en gammal kung som bodde i ett slott vid havet."],
    "pl": ["Litwo, ojczyzno moja, ty jesteś jak zdrowie."],
}
WORDS = {
    "subj": [
        "the old man",
        "a young girl",
        "the singer",
        "my brother",
        "the farmer",
        "our teacher",
        "the little bird",
        "a traveller",
        "the captain",
        "her mother",
    ],
    "verb": [
        "walks to",
        "sings about",
        "remembers",
        "looks at",
        "runs along",
        "dreams of",
        "paints",
        "waits by",
        "calls across",
        "follows",
    ],
    "obj": [
        "the river",
        "the green hills",
        "the morning light",
        "a quiet town",
        "the winter sea",
        "the garden gate",
        "a distant bell",
        "the summer rain",
        "the open road",
        "the evening star",
    ],
}
SING_SYLLABLES = ["la", "laa", "ah", "oh", "ooh", "na", "da", "lo", "mi", "ay"]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS[k]) for k in ("subj", "verb", "obj")).capitalize() + "."


def read_mono(path: Path) -> np.ndarray:
    """Any wav -> mono float at RATE_HZ (sox resamples)."""
    out = path.with_suffix(".r.wav")
    run(["sox", str(path), "-r", str(RATE_HZ), "-c", "1", "-b", "16", str(out)])
    audio, _ = sf.read(out, dtype="float32")
    return audio


def espeak_speech(rng: random.Random, t: Path, seconds: float) -> tuple[np.ndarray, str]:
    lang = rng.choice(
        ["en"] * 6 + ["en-us", "en-gb-x-rp", "de", "fr", "es", "it", "la", "pt", "nl", "sv", "pl"]
    )
    variant = rng.choice(["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"])
    pitch, speed = rng.randint(20, 85), rng.randint(120, 190)
    texts = TEXTS[lang.split("-")[0]]
    chunks, total, i = [], 0.0, 0
    while total < seconds:
        text = (
            rng.choice(texts)
            if rng.random() < 0.7 or lang[:2] != "en"
            else " ".join(sentence(rng) for _ in range(3))
        )
        run(
            [
                "espeak-ng",
                "-v",
                f"{lang}+{variant}",
                "-p",
                str(pitch),
                "-s",
                str(speed),
                "-g",
                str(rng.randint(2, 10)),
                "-w",
                str(t / f"e{i}.wav"),
                text,
            ]
        )
        a = read_mono(t / f"e{i}.wav")
        chunks += [a, np.zeros(int(rng.uniform(0.3, 1.5) * RATE_HZ), np.float32)]
        total += len(a) / RATE_HZ
        i += 1
    return np.concatenate(chunks), f"espeak-ng {lang}+{variant} p={pitch} s={speed} speech"


def melody(rng: random.Random) -> tuple[list[tuple[int, float]], str]:
    """(midi pitch or -1 for rest, seconds) of a folk tune from music21's corpus (keep-out list
    held)."""
    from music21 import corpus

    root = Path(corpus.__file__).parent
    paths = [
        p for p in corpus.getPaths() if "/ryansMammoth/" in str(p) or "/essenFolksong/" in str(p)
    ]
    for _ in range(20):
        p = str(rng.choice(paths))
        if excluded("music21:" + str(Path(p).relative_to(root))):
            continue
        s, source = load_score(p, rng.randrange(400))
        if s is None:
            continue
        bpm = rng.uniform(60, 110)
        notes = []
        for n in s.flatten().notesAndRests:
            dur = float(n.quarterLength) * 60 / bpm
            if dur <= 0:
                continue
            pitch = -1 if n.isRest else (n.pitches[-1].midi if n.pitches else -1)
            notes.append((pitch, dur))
        if sum(d for _, d in notes) > 8:
            return notes[:160], source
    raise RuntimeError("no melody found")


def espeak_sung(rng: random.Random, t: Path, seconds: float) -> tuple[np.ndarray, str]:
    """Sung-like: one sustained syllable per note, espeak pitch per note, stretched to the note."""
    variant = rng.choice(["f1", "f2", "f3", "f4", "f5", "m1", "m3", "m6"])
    lang = rng.choice(["en", "it", "es", "la", "de"])
    notes, source = melody(rng)
    pitches = [p for p, _ in notes if p >= 0]
    lo, hi = min(pitches), max(pitches)
    chunks, total = [], 0.0
    words = [w for w in re.findall(r"[a-zà-ÿ']+", " ".join(TEXTS.get(lang, TEXTS["en"])).lower())]
    k = 0
    while total < seconds:
        for i, (p, dur) in enumerate(notes):
            if p < 0 or dur < 0.12:
                chunks.append(np.zeros(int(dur * RATE_HZ), np.float32))
                total += dur
                continue
            syl = rng.choice(SING_SYLLABLES) if rng.random() < 0.5 else words[k % len(words)]
            k += 1
            ep = int(15 + 75 * (p - lo) / max(1, hi - lo))
            f = t / f"s{i}.wav"
            ssml = f'<speak><prosody rate="x-slow">{syl}</prosody></speak>'
            run(
                [
                    "espeak-ng",
                    "-m",
                    "-v",
                    f"{lang}+{variant}",
                    "-p",
                    str(ep),
                    "-s",
                    "80",
                    "-w",
                    str(f),
                    ssml,
                ]
            )
            a = read_mono(f)
            nz = np.flatnonzero(np.abs(a) > 1e-3)
            a = a[nz[0] : nz[-1]] if len(nz) else a
            have = len(a) / RATE_HZ
            if have > 0.05:
                factor = max(0.25, min(2.5, have / dur))  # sox tempo keeps the pitch
                run(
                    [
                        "sox",
                        str(f.with_suffix(".r.wav")),
                        str(t / "st.wav"),
                        "tempo",
                        "-s",
                        f"{factor:.3f}",
                    ]
                )
                a, _ = sf.read(t / "st.wav", dtype="float32")
            a = a[: int(dur * RATE_HZ)]
            a = np.concatenate([a, np.zeros(int(dur * RATE_HZ) - len(a), np.float32)])
            chunks.append(a)
            total += dur
        if total < 4:
            break
    return np.concatenate(chunks), f"espeak-ng {lang}+{variant} sung-vowels on {source}"


def festival_speech(rng: random.Random, t: Path, seconds: float) -> tuple[np.ndarray, str]:
    voice = rng.choice(
        ["cmu_us_slt_arctic_hts", "cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"]
    )
    stretch = rng.uniform(0.85, 1.3)
    chunks, total, i = [], 0.0, 0
    while total < seconds:
        text = (
            rng.choice(TEXTS["en"])
            if rng.random() < 0.6
            else " ".join(sentence(rng) for _ in range(3))
        )
        (t / "f.txt").write_text(text)
        run(
            [
                "text2wave",
                "-eval",
                f"(voice_{voice})",
                "-eval",
                f"(Parameter.set 'Duration_Stretch {stretch:.2f})",
                str(t / "f.txt"),
                "-o",
                str(t / f"f{i}.wav"),
            ]
        )
        a = read_mono(t / f"f{i}.wav")
        chunks += [a, np.zeros(int(rng.uniform(0.3, 1.2) * RATE_HZ), np.float32)]
        total += len(a) / RATE_HZ
        i += 1
    return np.concatenate(chunks), f"festival {voice} stretch={stretch:.2f} speech"


def singing_xml(rng: random.Random, path: Path, low: int, high: int) -> str:
    """A festival SINGING document of a folk melody with public-domain words, moved into a voice
    range."""
    from music21 import pitch as m21pitch

    notes, source = melody(rng)
    ps = [p for p, _ in notes if p >= 0]
    shift = (low + high) // 2 - (min(ps) + max(ps)) // 2
    words = re.findall(r"[A-Za-z']+", " ".join(TEXTS["en"]))
    start = rng.randrange(len(words))
    bpm = 60.0
    body, k = [], 0
    for p, dur in notes:
        beats = max(0.1, dur)  # at BPM 60 a beat is a second
        if p < 0:
            body.append(f'<REST BEATS="{beats:.2f}"></REST>')
            continue
        name = m21pitch.Pitch(midi=max(low - 5, min(high + 5, p + shift))).nameWithOctave.replace(
            "-", "b"
        )
        body.append(
            f'<DURATION BEATS="{beats:.2f}"><PITCH NOTE="{name}">{words[(start + k) % len(words)]}'
            f"</PITCH></DURATION>"
        )
        k += 1
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" '
        f'"Singing.v0_1.dtd" []>\n<SINGING BPM="{bpm:.0f}">\n' + "\n".join(body) + "\n</SINGING>\n"
    )
    return source


def festival_sung(rng: random.Random, t: Path, seconds: float) -> tuple[np.ndarray, str]:
    voice = rng.choice(["kal_diphone", "ked_diphone"])
    examples = sorted(Path("/usr/share/doc/festival/examples/songs").glob("*.xml"))
    chunks, total, srcs, i = [], 0.0, [], 0
    while total < seconds and i < 12:
        if examples and rng.random() < 0.3:
            song = rng.choice(examples)
            srcs.append(f"festival example {song.name}")
        else:
            song = t / f"song{i}.xml"
            srcs.append(singing_xml(rng, song, 45, 62))
        if song.parent != t:
            shutil.copy(song, t / song.name)
            song = t / song.name
        try:
            run(
                [
                    "text2wave",
                    "-mode",
                    "singing",
                    "-eval",
                    f"(voice_{voice})",
                    str(song),
                    "-o",
                    str(t / f"g{i}.wav"),
                ],
                cwd=t,
                timeout=120,
            )
            a = read_mono(t / f"g{i}.wav")
            chunks += [a, np.zeros(int(0.8 * RATE_HZ), np.float32)]
            total += len(a) / RATE_HZ
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            srcs.pop()
        i += 1
    if not chunks:
        raise RuntimeError("festival singing produced nothing")
    shift = rng.choice([0, 0, 0, 300, 500, 700])  # cents; a higher (not female) register sometimes
    audio = np.concatenate(chunks)
    if shift:
        sf.write(t / "p.wav", audio, RATE_HZ)
        run(["sox", str(t / "p.wav"), str(t / "q.wav"), "pitch", str(shift)])
        audio, _ = sf.read(t / "q.wav", dtype="float32")
    return audio, f"festival singing {voice} pitch+{shift}c on {'; '.join(srcs)}"


VOICE_MAKERS = [(espeak_speech, 3), (espeak_sung, 3), (festival_speech, 3), (festival_sung, 2)]


def make_voice(rng: random.Random, t: Path, seconds: float) -> tuple[np.ndarray, str]:
    makers = [m for m, w in VOICE_MAKERS for _ in range(w)]
    return rng.choice(makers)(rng, t, seconds)


def voice_sources(desc: str, versions: dict) -> str:
    parts = []
    if "espeak-ng" in desc:
        parts.append(f"espeak-ng {versions['espeak-ng']}")
    if "festival" in desc:
        parts.append(f"festival {versions['festival']}")
        for pkg, key in (
            ("festvox-us-slt-hts", "slt"),
            ("festvox-kallpc16k", "kal"),
            ("festvox-kdlpc16k", "ked"),
        ):
            if key in desc:
                parts.append(f"{pkg} {versions[pkg]}")
    if "music21" in desc:
        parts.append(versions["m21"])
    return " | ".join(parts)


def render_voice(task: dict) -> list[list[str]]:
    rng = random.Random(task["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        audio, desc = make_voice(rng, Path(tmp), rng.uniform(20, 60))
    audio = finish(audio, rng, max_s=90)
    if audio is None:
        return []
    out = Path(task["dest"]) / task["group"] / f"{task['n']:05d}_{desc.split()[0]}.flac"
    write(out, audio)
    return [
        [
            str(out.relative_to(task["dest"])),
            f"{desc} | {voice_sources(desc, task['versions'])}",
            f"{task['group']}/COPYRIGHT",
        ]
    ]


def render_voice_mix(task: dict) -> list[list[str]]:
    """A new instrumental bed (arrangement or score) with a new voice take over it."""
    rng = random.Random(task["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        sfname = rng.choice(list(SOUNDFONTS))
        if rng.random() < 0.55:
            style = rng.choice(list(STYLES))
            bed_desc = arrangement_midi(style, rng, rng.uniform(40, 90), t / "b.mid")
            midi = t / "b.mid"
        else:
            path, member, kind = rng.choice(task["items"])
            score, bed_desc = load_score(path, member)
            if score is None:
                return []
            score.write("midi", fp=t / "a.mid")
            programs, how = programs_for("instrumental", len(score.parts) or 1, rng)
            restyle_midi(
                t / "a.mid", t / "b.mid", programs, rng, rng.uniform(0.8, 1.2), 1.0, max_s=125
            )
            bed_desc += f" programs={'/'.join(map(str, programs))} ({how})"
            midi = t / "b.mid"
        fluidsynth(midi, t / "b.wav", sfname)
        bed, _ = sf.read(t / "b.wav", dtype="float32")
        bed = bed[: int(120 * RATE_HZ)]
        if bed.ndim == 2:
            bed = bed.mean(axis=1)
        bed_s = len(bed) / RATE_HZ
        if bed_s < 8 or np.sqrt(np.mean(bed**2)) < 1e-4:
            return []
        voice, vdesc = make_voice(rng, t, max(8.0, bed_s * rng.uniform(0.5, 0.95)))
        voice = voice[: len(bed)]
        offset = rng.randrange(0, max(1, len(bed) - len(voice)))
        level_db = rng.uniform(-12, 6)
        rb = np.sqrt(np.mean(bed**2))
        vz = voice[np.abs(voice) > 1e-3]
        rv = np.sqrt(np.mean(vz**2)) if len(vz) else 0
        if rv < 1e-5:
            return []
        mix = bed.copy()
        mix[offset : offset + len(voice)] += voice * (rb / rv) * 10 ** (level_db / 20)
        audio = finish(mix, rng, max_s=120)
    if audio is None:
        return []
    out = Path(task["dest"]) / task["group"] / f"{task['n']:05d}_{vdesc.split()[0]}_{sfname}.flac"
    write(out, audio)
    return [
        [
            str(out.relative_to(task["dest"])),
            f"voice {level_db:+.1f} dB: {vdesc} over {bed_desc} | "
            f"{voice_sources(vdesc, task['versions'])} "
            f"| {task['m21']} | mido {MIDO_VERSION} | {sf_source(sfname)} | fluidsynth "
            f"{task['fluid']}",
            f"{task['group']}/COPYRIGHT",
        ]
    ]


# ---------------------------------------------------------------- driver ----------------------
TASK_TIMEOUT_S = 300  # music21 took over 9 minutes on one score, holding back the whole run


def guarded(fn, task: dict) -> list[list[str]]:
    """Run one task in a worker, raising TimeoutError (and killing its subprocess) past
    TASK_TIMEOUT_S."""

    def alarm(*_):
        raise TimeoutError(f"task over {TASK_TIMEOUT_S} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TASK_TIMEOUT_S)
    try:
        return fn(task)
    finally:
        signal.alarm(0)


def task_stream(group: str, base: dict, rng: random.Random, items: list, skip: int = 0):
    """The group's n-th task is the same in every run of a seed; the first `skip` are passed
    over."""
    n = 0
    while True:
        n += 1
        task = dict(base, group=group, n=n, seed=rng.randrange(1 << 30))
        if n <= skip:
            continue
        if group.startswith("render-"):
            # each render group takes its own third of the scores, so groups share no piece
            k = list(SOUNDFONTS).index(group.split("-", 1)[1])
            mine = items[0][k :: len(SOUNDFONTS)]
            path, member, kind = mine[(n - 1) % len(mine)]
            yield (
                render_score,
                dict(task, sf=group.split("-", 1)[1], path=path, member=member, kind=kind),
            )
        elif group == "arrangements":
            yield (
                render_arrangement,
                dict(
                    task,
                    style=list(STYLES)[(n - 1) % len(STYLES)],
                    sf=list(SOUNDFONTS)[(n // len(STYLES)) % len(SOUNDFONTS)],
                ),
            )
        elif group == "voices":
            yield render_voice, task
        else:
            yield render_voice_mix, dict(task, items=items[1])


def generate(dest: Path, hours: float, jobs: int, seed: int, max_minutes: float) -> None:
    import time

    import music21

    stop_at = time.monotonic() + 60 * max_minutes
    rng = random.Random(seed)
    versions = {
        p: deb_version(p)
        for p in (
            "espeak-ng",
            "festival",
            "festvox-us-slt-hts",
            "festvox-kallpc16k",
            "festvox-kdlpc16k",
        )
    }
    versions["m21"] = f"music21 {music21.__version__} (PyPI) corpus"
    base = {
        "dest": str(dest),
        "m21": versions["m21"],
        "fluid": deb_version("fluidsynth"),
        "versions": versions,
    }
    items = corpus_items(rng)
    target = {g: hours * 3600 * s for g, s in GROUP_SHARE.items()}
    done = {g: 0.0 for g in GROUP_SHARE}
    # Resume: rows of an earlier run (same seed) whose files exist are kept, and each group goes on
    # after the last task number it reached.
    manifest = dest / "manifest-sounds.tsv"
    kept, skip = [], {g: 0 for g in GROUP_SHARE}
    if manifest.exists():
        with open(manifest) as fh:
            kept = [r for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
        kept = [r for r in kept if (dest / r[0]).exists()]
        for r in kept:
            g = r[0].split("/")[0]
            skip[g] = max(skip[g], int(Path(r[0]).name.split("_")[0]))
            done[g] += sf.info(dest / r[0]).duration
        print(
            f"make_sounds: resuming with {len(kept)} files, {sum(done.values()) / 3600:.2f} h",
            file=sys.stderr,
        )
    listed = {r[0] for r in kept}
    for (
        g
    ) in GROUP_SHARE:  # audio a stopped run left unlisted would enter the corpus unaccounted for
        for f in (dest / g).glob("*.flac") if (dest / g).is_dir() else []:
            if str(f.relative_to(dest)) not in listed:
                f.unlink()
    seeds = {g: rng.randrange(1 << 30) for g in GROUP_SHARE}
    streams = {
        g: task_stream(g, base, random.Random(seeds[g]), items, skip[g]) for g in GROUP_SHARE
    }
    with open(manifest, "w", newline="") as fh, cf.ProcessPoolExecutor(jobs) as pool:

        def writerow(
            row: list[str],
        ) -> None:  # plain TSV: no quoting, whitespace (a title's newline) folded
            fh.write("\t".join(" ".join(x.split()) for x in row) + "\n")

        writerow(["path", "source", "licence"])
        for row in kept:
            writerow(row)
        inflight: dict = {}
        failures = finished = 0

        def submit() -> bool:
            open_groups = [g for g in GROUP_SHARE if done[g] + pending(g) < target[g]]
            if not open_groups or time.monotonic() > stop_at:
                return False
            g = min(open_groups, key=lambda g: done[g] / target[g])
            fn, task = next(streams[g])
            inflight[pool.submit(guarded, fn, task)] = g
            return True

        def pending(g: str) -> float:
            return 60.0 * sum(1 for x in inflight.values() if x == g)

        while len(inflight) < 2 * jobs and submit():
            pass
        while inflight:
            fut = next(cf.as_completed(list(inflight)))
            g = inflight.pop(fut)
            try:
                rows = fut.result()
            except Exception as exc:  # one bad score or voice must not stop the corpus
                failures += 1
                print(f"make_sounds: {g}: {type(exc).__name__}: {exc}", file=sys.stderr)
                rows = []
            for row in rows:
                if excluded(row[1]):
                    raise SystemExit(f"make_sounds: keep-out source produced {row[0]}: {row[1]}")
                done[g] += sf.info(dest / row[0]).duration
                writerow(row)
            fh.flush()
            while len(inflight) < 2 * jobs and submit():
                pass
            finished += 1
            if finished % 20 == 0:
                total = sum(done.values()) / 3600
                print(
                    f"make_sounds: {total:.2f} h of {hours:.2f} h: "
                    + " ".join(f"{k}={v / 3600:.2f}" for k, v in done.items()),
                    file=sys.stderr,
                    flush=True,
                )
    print(f"make_sounds: {failures} failed tasks", file=sys.stderr)


def check(dest: Path) -> None:
    """Fail if any manifest source matches the keep-out list or a file is missing/short."""
    bad, short = [], []
    with open(dest / "manifest-sounds.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    for r in rows:
        if excluded(r["source"]) or excluded(r["path"]):
            bad.append(r["path"])
        elif sf.info(dest / r["path"]).duration < 4.0:
            short.append(r["path"])
    for name, (path, pkg) in SOUNDFONTS.items():
        if excluded(os.path.realpath(path)) or pkg in FORBIDDEN_SOUNDFONT_PACKAGES:
            bad.append(f"soundfont {name} -> {os.path.realpath(path)}")
    if bad or short:
        raise SystemExit(
            f"make_sounds check: {len(bad)} keep-out matches {bad[:5]}, {len(short)} short "
            f"{short[:5]}"
        )
    print(f"make_sounds check: {len(rows)} files, none from the keep-out list, none under 4 s")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["generate", "check"])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--hours", type=float, default=10.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=1e9,
        help="stop starting new files after this many minutes (a smaller corpus, on time)",
    )
    a = ap.parse_args()
    if a.command == "generate":
        generate(a.dest, a.hours, a.jobs, a.seed, a.max_minutes)
    check(a.dest)


if __name__ == "__main__":
    main()
