"""Fuzzing the readers of user files and values: whatever the bytes, text, arrays or rates, the
EDA readers, the audio loader and load_model either return something valid or raise one of
the library's own error types, never another exception (a crash, an OverflowError, a
RecursionError, a soundfile or safetensors error leaking through).

Deterministic (``derandomize``) and small: a few seconds per test on a CPU."""
import json
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edanet import EDANet, EDANetConfig, load_model
from edanet.features import load_audio
from edanet.config import AUDIO_RATES, EDA_RATES, MAX_EDA_US
from edanet.signals import read_eda_csv
from edanet.signals import read_eda_file

#: What the library raises for bad input: anything else coming out is a bug.
LIBRARY_ERRORS = (ValueError, FileNotFoundError, TypeError)

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(fn):
    """``fn()``'s result, or the library error it raised (with a message: asserted); any other
    exception propagates and fails the test."""
    try:
        return fn()
    except LIBRARY_ERRORS as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        return e


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# -- EDA files --------------------------------------------------------------------------------

NUMBERS = st.one_of(st.floats(), st.integers(-10**6, 10**6), st.sampled_from(
    [5e-324, 1e-300, 1.7e308, -1.7e308, 1e-6, 0.5, 4, 10**400]))
CELLS = st.one_of(NUMBERS.map(lambda x: repr(x) if not isinstance(x, int) else str(x)),
                  st.sampled_from(["", "nan", "inf", "-inf", "abc", "1e999", " 4 ", '"3"', "1_0", "0x10"]),
                  st.text(max_size=6))
HEADERS = st.sampled_from(["", "time,eda", "eda,time", "time(s),a,b", "t,eda", "time (ms),s1", "time,x", "x,y"])


@st.composite
def eda_texts(draw):
    """A CSV close to one edanet reads: an optional header, then rows of one to three cells."""
    rows = draw(st.lists(st.lists(CELLS, min_size=1, max_size=3).map(",".join), max_size=12))
    header = draw(HEADERS)
    return "\n".join(([header] if header else []) + rows) + draw(st.sampled_from(["", "\n", "\r\n\n"]))


def check_recording(rec):
    assert rec.values.ndim == 1 and rec.values.size >= 1
    assert np.isfinite(rec.values).all() and (rec.values >= 0).all() and (rec.values <= MAX_EDA_US).all()
    assert EDA_RATES[0] <= rec.sample_rate <= EDA_RATES[1]


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), eda_texts().map(str.encode)))
@example(data=b"0\n5e-324\n1\n2\n").via("an E4 rate that overflowed a duration")
@example(data=b"0\n4\n1\n1.7e308\n").via("an absurd level")
@example(data=b"time,eda\n-1e308,1\n1e308,1\n").via("a time step that overflows")
def test_eda_csv_reader(work, data):
    p = work / "eda.csv"
    p.write_bytes(data)
    for read in (read_eda_csv, read_eda_file):
        got = outcome(lambda: read(p))
        if not isinstance(got, Exception):
            check_recording(got)


# -- audio ------------------------------------------------------------------------------------

RATES = st.one_of(st.floats(), st.integers(-10**6, 10**9),
                  st.sampled_from([1e-300, 1, 999.9, AUDIO_RATES[0], 8000, 44100, AUDIO_RATES[1], 384001, 10**400]))
ARRAYS = hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.complex64, np.bool_]),
                    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=600))


@FUZZ
@given(audio=ARRAYS, rate=RATES)
def test_audio_arrays(audio, rate):
    got = outcome(lambda: load_audio(audio, rate, target_rate=16000))
    if not isinstance(got, Exception):
        assert got.dtype == np.float32 and got.ndim == 2 and got.shape[0] == 1 and got.shape[1] >= 1
        assert np.isfinite(got).all()


def _wav(rate: int = 16000) -> bytes:
    """A short valid WAV: what the mutations below start from."""
    import io
    buf = io.BytesIO()
    sf.write(buf, np.linspace(-0.5, 0.5, 400, dtype=np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@st.composite
def wav_bytes(draw):
    """Random bytes, or a valid WAV with bytes changed (header fields included) or cut short."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    b = bytearray(_wav())
    for pos, byte in draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4)):
        b[pos] = byte
    return bytes(b[:draw(st.integers(0, len(b)))])


@FUZZ
@given(data=wav_bytes())
@example(data=_wav()[:24] + struct.pack("<II", 1, 2) + _wav()[32:]).via("a header saying 1 Hz")
@example(data=_wav()[:len(_wav()) // 2]).via("truncated at half")
def test_audio_files(work, data):
    p = work / "a.wav"
    p.write_bytes(data)
    got = outcome(lambda: load_audio(p, target_rate=16000))
    if not isinstance(got, Exception):
        assert got.dtype == np.float32 and got.shape[0] == 1 and got.shape[1] >= 1
        assert np.isfinite(got).all()


# -- model files ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


JSON = st.recursive(st.none() | st.booleans() | NUMBERS | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
FIELDS = sorted(EDANetConfig().to_dict()) + ["bogus"]


@st.composite
def config_texts(draw, base: dict):
    """A saved config with one field changed, dropped or added, or random text."""
    how = draw(st.sampled_from(["change", "drop", "text"]))
    if how == "text":
        return draw(st.text(max_size=80))
    d = dict(base)
    name = draw(st.sampled_from(FIELDS))
    if how == "drop":
        d.pop(name, None)
    else:
        d[name] = draw(JSON)
    return json.dumps(d)


def check_model(got):
    assert isinstance(got, EDANet)
    assert all(torch.isfinite(p).all() for p in got.parameters())


@FUZZ
@given(data=st.data())
@example(data=None).via("deeply nested JSON")
def test_load_model_configs(work, model_dir, data):
    base = json.loads((model_dir / "config.json").read_text())
    text = "[" * 100_000 + "]" * 100_000 if data is None else data.draw(config_texts(base))
    d = work / "cfg"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(text)
    (d / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    got = outcome(lambda: load_model(d))
    if not isinstance(got, Exception):
        check_model(got)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)), in_header=st.booleans())
def test_load_model_weights(work, model_dir, edits, cut, in_header):
    b = bytearray((model_dir / "model.safetensors").read_bytes())
    header_end = 8 + struct.unpack("<Q", bytes(b[:8]))[0]
    for pos, byte in edits:      # mostly in the JSON header: that is what the parser reads first
        b[pos % (header_end if in_header else len(b))] = byte
    if cut is not None:
        b = b[:cut % (len(b) + 1)]
    d = work / "w"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text((model_dir / "config.json").read_text())
    (d / "model.safetensors").write_bytes(bytes(b))
    got = outcome(lambda: load_model(d))
    if not isinstance(got, Exception):
        check_model(got)
