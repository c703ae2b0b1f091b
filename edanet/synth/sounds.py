"""The audio side of the synthetic data: procedural acoustic events (noise bursts, tones,
sweeps, babble, chords) rendered over a coloured-noise background."""
from __future__ import annotations

import functools
import math

import numpy as np

from .config import SHARP_ATTACK_S, SOFT_ATTACK_S, SynthConfig


# =============================================================================================
# Audio
# =============================================================================================

_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410), (660, 1720, 2410), (640, 1190, 2390), (440, 1020, 2240))
_DURATION_S = {"noise_burst": (0.1, 1.5), "tone": (0.2, 2.0), "sweep": (0.3, 2.0), "babble": (1.0, 4.0),
               "chord": (0.8, 3.0), "silence": (1.0, 4.0)}
_ATTACK_S = {"noise_burst": (0.002, 0.05), "tone": (0.002, 0.5), "sweep": (0.004, 0.5),
             "babble": (0.02, 0.3), "chord": (0.003, 0.5)}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _db(x: float) -> float:
    return max(-120.0, 20.0 * math.log10(x)) if x > 0 else -120.0


def _colored_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f^beta."""
    white = rng.standard_normal(n)
    if beta == 0 or n < 4:
        return white
    from scipy import fft as sfft
    spec = sfft.rfft(white)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec *= f ** (-beta / 2.0)
    x = sfft.irfft(spec, n)
    return x / (_rms(x) or 1.0)


@functools.lru_cache(maxsize=32)
def _sos(kind: str, freq, sr: int, order: int = 2):
    from scipy.signal import butter
    return butter(order, freq, btype=kind, fs=sr, output="sos")


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _noise_burst(rng, n, sr):
    from scipy.signal import sosfilt
    style = rng.integers(4)
    if style == 0:
        return rng.standard_normal(n)
    if style == 1:
        return _colored_noise(rng, n, 1.0)
    if style == 2:
        return _colored_noise(rng, n, 2.0)
    lo = _loguniform(rng, 200.0, 0.3 * sr)
    hi = min(0.45 * sr, lo * _loguniform(rng, 1.5, 4.0))
    return sosfilt(_sos("bandpass", (round(lo), round(hi)), sr), rng.standard_normal(n))


def _harmonic(phase, n_harm, rolloff, rng):
    x = np.zeros_like(phase)
    for k in range(1, n_harm + 1):
        x += k ** (-rolloff) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return x


def _tone(rng, n, sr):
    t = np.arange(n) / sr
    f0 = _loguniform(rng, 150.0, 3000.0)
    f = np.full(n, f0)
    if rng.random() < 0.3:
        f *= 1 + rng.uniform(0.003, 0.01) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * np.cumsum(f) / sr
    n_harm = max(1, min(int(rng.integers(1, 6)), int(0.45 * sr / f0)))
    return _harmonic(phase, n_harm, rng.uniform(1.0, 2.0), rng)


def _sweep(rng, n, sr):
    T = n / sr
    while True:
        f1, f2 = _loguniform(rng, 150.0, 6000.0), _loguniform(rng, 150.0, 6000.0)
        if abs(math.log2(f2 / f1)) >= 1.0:
            break
    t = np.arange(n) / sr
    ratio = f2 / f1
    phase = 2 * np.pi * f1 * T / math.log(ratio) * (ratio ** (t / T) - 1.0)
    n_harm = 1 if max(f1, f2) * 2 > 0.45 * sr else int(rng.integers(1, 3))
    return _harmonic(phase, n_harm, 1.5, rng)


def _resonate(x, freq, bw, sr):
    from scipy.signal import lfilter
    r = math.exp(-math.pi * bw / sr)
    th = 2 * math.pi * freq / sr
    return lfilter([1.0 - r], [1.0, -2 * r * math.cos(th), r * r], x)


def _babble(rng, n, sr):
    """Speech-like babble: 1-3 voices, each a harmonic glottal source with a wandering F0 shaped by
    vowel formants that change syllable by syllable (3-6 Hz), with fricative noise at some onsets."""
    from scipy.signal import sosfilt
    out = np.zeros(n)
    t = np.arange(n) / sr
    T = n / sr
    hp = _sos("highpass", 2500, sr)
    for v in range(int(rng.integers(1, 4))):
        f0 = rng.uniform(90.0, 250.0)
        contour = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6.3)))
        contour *= 1 - 0.12 * t / T
        phase = 2 * np.pi * np.cumsum(contour) / sr
        n_harm = max(1, min(40, int(0.4 * sr / f0)))
        src = np.zeros(n)
        for k in range(1, n_harm + 1):
            src += np.sin(k * phase) / k
        voice = np.zeros(n)
        rate = rng.uniform(3.0, 6.0)
        pos = int(rng.uniform(0, 0.3) * sr) if v else 0
        while pos < n:
            length = int(rng.uniform(0.6, 1.4) / rate * sr)
            end = min(n, pos + length)
            seg_len = end - pos
            if seg_len < 16:
                break
            voiced = int(seg_len * rng.uniform(0.6, 0.9))
            seg = src[pos:pos + voiced]
            for F, B in zip(_VOWELS[rng.integers(len(_VOWELS))], (80, 100, 150)):
                seg = _resonate(seg, min(F * rng.uniform(0.9, 1.1), 0.45 * sr), B, sr)
            env = np.sin(np.pi * np.arange(voiced) / voiced) ** 0.7
            voice[pos:pos + voiced] += seg * env / (_rms(seg) or 1.0)
            if rng.random() < 0.5:
                m = min(seg_len, int(rng.uniform(0.02, 0.07) * sr))
                fric = sosfilt(hp, rng.standard_normal(m)) * np.hanning(m) * rng.uniform(0.2, 0.6)
                voice[pos:pos + m] += fric
            pos = end
        out += voice * rng.uniform(0.5, 1.0)
    return out


def _chord(rng, n, sr):
    """Music-like: 1-3 successive chords (triads/sevenths) of harmonic notes, piano-like decay or pad."""
    qualities = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 4, 7, 10), (0, 5, 7), (0, 3, 7, 10))
    n_chords = int(rng.integers(1, 4))
    piano = rng.random() < 0.6
    out = np.zeros(n)
    bounds = np.linspace(0, n, n_chords + 1).astype(int)
    root = int(rng.integers(45, 70))
    for c in range(n_chords):
        a, b = bounds[c], bounds[c + 1]
        tt = np.arange(b - a) / sr
        notes = qualities[rng.integers(len(qualities))]
        seg = np.zeros(b - a)
        for semi in notes:
            f = 440.0 * 2 ** ((root + semi - 69) / 12) * (1 + rng.normal(0, 0.001))
            n_harm = max(1, min(6, int(0.45 * sr / f)))
            seg += _harmonic(2 * np.pi * f * tt, n_harm, 1.5, rng)
        if piano:
            seg *= np.exp(-tt / rng.uniform(0.3, 1.2))
            ramp = min(len(seg), int(0.003 * sr))
            seg[:ramp] *= np.linspace(0, 1, ramp, endpoint=False)
        out[a:b] = seg
        root += int(rng.choice((-5, -3, 0, 2, 5, 7)))
    return out


_RENDER = {"noise_burst": _noise_burst, "tone": _tone, "sweep": _sweep, "babble": _babble, "chord": _chord}


def _sharpness(attack: float) -> float:
    return float(min(1.0, max(0.0, math.log(SOFT_ATTACK_S / attack) / math.log(SOFT_ATTACK_S / SHARP_ATTACK_S))))


def _raised_cosine(m: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / max(m, 1))


def render_audio(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, list[dict]]:
    """One synthetic clip of ``cfg``: its audio (float32) and its acoustic events (time, kind,
    level, response probability), drawn from ``rng``."""
    from scipy.signal import sosfilt
    sr = cfg.audio_sample_rate
    n = cfg.audio_samples
    T = n / sr
    # background: coloured noise (high-passed at 30 Hz), sometimes mains hum
    bg = sosfilt(_sos("highpass", 30, sr), _colored_noise(rng, n, rng.uniform(0.5, 2.0)))
    bg_db = rng.uniform(*cfg.background_level_db)
    bg *= 10 ** (bg_db / 20) / (_rms(bg) or 1.0)
    if rng.random() < 0.3:
        mains = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(n) / sr
        hum = sum(k ** -1.0 * np.sin(2 * np.pi * k * mains * tt + rng.uniform(0, 6.3)) for k in range(1, 5))
        bg += hum * 10 ** ((bg_db - rng.uniform(3, 12)) / 20) / (_rms(hum) or 1.0)
    audio = bg.copy()

    # event times
    weights = np.asarray(cfg.kind_weights) / sum(cfg.kind_weights)
    events: list[dict] = []
    t0 = rng.uniform(*cfg.first_event_s)
    peak_limit = 10 ** (-1 / 20)
    while t0 < T - cfg.event_tail_s:
        kind = cfg.kinds[int(rng.choice(len(cfg.kinds), p=weights))]
        dur = min(rng.uniform(*_DURATION_S[kind]), T - t0 - 0.05)
        a = int(round(t0 * sr))
        m = min(n - a, int(round(dur * sr)))
        if m < 16:
            break
        if kind == "silence":
            depth = 10 ** (-cfg.silence_depth_db / 20)
            ramp = min(m // 4, int(0.03 * sr))
            env = np.full(m, depth)
            env[:ramp] = 1 - (1 - depth) * _raised_cosine(ramp)
            env[m - ramp:] = depth + (1 - depth) * _raised_cosine(ramp)
            audio[a:a + m] *= env
            events.append({"time": a / sr, "duration": m / sr, "kind": kind,
                           "level_db": _db(_rms(audio[a:a + m])), "sharpness": 0.0, "attack": 0.0})
        else:
            x = _RENDER[kind](rng, m, sr)
            attack = min(_loguniform(rng, *_ATTACK_S[kind]), 0.4 * m / sr)
            attack = max(attack, 1.0 / sr)
            na = max(1, int(round(attack * sr)))
            nr = max(1, min(m // 4, int(rng.uniform(0.02, 0.2) * sr)))
            env = np.ones(m)
            env[:na] = _raised_cosine(na)
            env[m - nr:] *= _raised_cosine(nr)[::-1]
            x = x * env
            target = 10 ** (rng.uniform(*cfg.event_level_db) / 20)
            x *= target / (_rms(x) or 1.0)
            peak = float(np.max(np.abs(x)))
            if peak > peak_limit:
                x *= peak_limit / peak
            audio[a:a + m] += x
            events.append({"time": a / sr, "duration": m / sr, "kind": kind, "level_db": _db(_rms(x)),
                           "sharpness": _sharpness(na / sr), "attack": na / sr})
        t0 += rng.uniform(*cfg.event_gap_s)
        t0 = max(t0, events[-1]["time"] + events[-1]["duration"] + 1.0)

    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak >= 0.99:   # cannot happen with the defaults (events <= -1 dBFS, background ~ -50 dBFS)
        g = 0.98 / peak
        audio *= g
        for ev in events:
            ev["level_db"] = _db(10 ** (ev["level_db"] / 20) * g)
    return audio.astype(np.float32), events
