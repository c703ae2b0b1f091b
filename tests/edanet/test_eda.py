"""EDA CSV reading, validation, resampling and normalization."""
import numpy as np
import pytest
import torch

from edanet.signals import (EDARecording, Normalization, load_eda, read_eda_csv, resample_eda,
                        validate_eda)
from edanet.io import write_eda_csv


def _eda(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return np.round(3 + np.cumsum(rng.normal(0, 0.02, n)) + 0.5, 6)


# -- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [4, 32, 7.5])
def test_e4_round_trip(tmp_path, rate):
    v = _eda()
    p = write_eda_csv(tmp_path / "EDA.csv", v, rate, fmt="e4", start_time=1_600_000_000.25)
    rec = read_eda_csv(p)
    assert isinstance(rec, EDARecording)
    np.testing.assert_allclose(rec.values, v, atol=1e-6)
    assert rec.values.dtype == np.float64
    assert rec.sample_rate == rate and rec.start_time == 1_600_000_000.25
    assert rec.duration == pytest.approx(len(v) / rate)


@pytest.mark.parametrize("rate", [4, 32, 3, 7])
def test_time_eda_round_trip(tmp_path, rate):
    v = _eda(50)
    p = write_eda_csv(tmp_path / "eda.csv", v, rate, fmt="time", start_time=12.5)
    rec = read_eda_csv(p)
    np.testing.assert_allclose(rec.values, v, atol=1e-6)
    assert rec.sample_rate == rate  # snapped back to the integer rate despite 6-decimal times
    assert rec.start_time == pytest.approx(12.5)


def test_time_eda_any_column_order_extra_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("EDA,temp,Time\n1.5,30,0.0\n1.6,30,0.25\n1.7,31,0.5\n")
    rec = read_eda_csv(p)
    assert rec.values.tolist() == [1.5, 1.6, 1.7] and rec.sample_rate == 4 and rec.start_time == 0


def test_e4_multi_column_first_column_used(tmp_path):
    p = tmp_path / "EDA.csv"
    p.write_text("1600000000.0, 1600000000.0\n4.0, 4.0\n1.0, 9.0\n2.0, 9.0\n")
    rec = read_eda_csv(p)
    assert rec.values.tolist() == [1.0, 2.0] and rec.sample_rate == 4.0


def test_e4_trailing_blank_lines_and_bom(tmp_path):
    p = tmp_path / "EDA.csv"
    p.write_bytes("\ufeff0.0\n4.0\n0.5\n0.6\n\n\n".encode("utf-8"))
    assert read_eda_csv(p).values.tolist() == [0.5, 0.6]


def test_given_sample_rate_checked(tmp_path):
    p = write_eda_csv(tmp_path / "e4.csv", _eda(), 4, fmt="e4")
    assert read_eda_csv(p, sample_rate=4).sample_rate == 4
    with pytest.raises(ValueError, match=r"e4\.csv.*4 Hz.*8 Hz"):
        read_eda_csv(p, sample_rate=8)
    q = write_eda_csv(tmp_path / "t.csv", _eda(), 4, fmt="time")
    with pytest.raises(ValueError, match=r"t\.csv: the time column gives 4 Hz but a sample rate of 32 Hz"):
        read_eda_csv(q, sample_rate=32)


# -- bad files ----------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_eda_csv(tmp_path / "nope.csv")


BAD_FILES = {
    "empty": ("", "empty"),
    "blank": ("\n\n  \n", "empty"),
    "e4_one_row": ("1600000000\n", "at least 3 rows"),
    "e4_two_rows": ("1600000000\n4.0\n", "at least 3 rows"),
    "e4_text_value": ("0\n4\n1.0\nabc\n", r"row 4: EDA value 'abc' is not a number"),
    "e4_nan": ("0\n4\n1.0\nnan\n", "row 4: EDA value is NaN"),
    "e4_inf": ("0\n4\ninf\n", "row 3: EDA value is infinite"),
    "e4_negative": ("0\n4\n1.0\n-0.5\n", r"row 4: EDA value -0.5 is negative"),
    "e4_rate_zero": ("0\n0\n1.0\n", r"row 2: sample rate 0 Hz must be > 0"),
    "e4_rate_negative": ("0\n-4\n1.0\n", r"row 2: sample rate -4 Hz must be > 0"),
    "e4_rate_text": ("0\nfour\n1.0\n", r"row 2: sample rate 'four' is not a number"),
    "e4_blank_inside": ("0\n4\n1.0\n\n2.0\n", "row 4 is empty"),
    "unknown_header": ("timestamp,conductance\n0,1\n", "neither an Empatica E4"),
    "time_no_rows": ("time,eda\n", "no data rows"),
    "time_one_row": ("time,eda\n0,1\n", "at least 2"),
    "time_text": ("time,eda\n0,1\n0.25,x\n", r"row 3: EDA value 'x' is not a number"),
    "time_nan": ("time,eda\n0,1\n0.25,NaN\n", "row 3: EDA value is NaN"),
    "time_nan_time": ("time,eda\n0,1\nnan,1\n", "row 3: time is NaN"),
    "time_negative": ("time,eda\n0,1\n0.25,-1\n", "row 3: EDA value -1 is negative"),
    "time_short_row": ("time,eda\n0,1\n0.25\n", "row 3 has 1 column"),
    "time_not_increasing": ("time,eda\n0,1\n0.25,1\n0.25,1\n", r"row 4: time 0.25 s does not increase"),
    "time_irregular": ("time,eda\n0,1\n0.25,1\n0.5,1\n0.8,1\n1.0,1\n", "irregular timestamps.*resample"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_csv(tmp_path, case):
    text, pattern = BAD_FILES[case]
    p = tmp_path / f"bad_{case}.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=pattern) as e:
        read_eda_csv(p)
    assert f"bad_{case}.csv" in str(e.value)


def test_binary_file(tmp_path):
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\x00\x01\x02RIFF")
    with pytest.raises(ValueError, match=r"bin\.csv.*not a text CSV"):
        read_eda_csv(p)


def test_small_jitter_accepted(tmp_path):
    t = np.arange(20) * 0.25 + np.tile([0, 0.001], 10)  # 0.4% jitter
    p = tmp_path / "j.csv"
    p.write_text("time,eda\n" + "".join(f"{a},{1.0}\n" for a in t))
    assert read_eda_csv(p).sample_rate == pytest.approx(4.0, rel=1e-3)


# -- validation -----------------------------------------------------------------------------------

def test_validate_eda():
    v = validate_eda([1, 2, 3])
    assert v.dtype == np.float64
    with pytest.raises(ValueError, match="empty"):
        validate_eda([])
    with pytest.raises(ValueError, match=r"mine contains 1 NaN value\(s\) \(first at index 1\)"):
        validate_eda([1, np.nan], name="mine")
    with pytest.raises(ValueError, match="infinite"):
        validate_eda([1, np.inf])
    with pytest.raises(ValueError, match=r"negative.*-0.1 µS at index 2"):
        validate_eda([1, 2, -0.1])


# -- resampling -----------------------------------------------------------------------------------

def test_resample_32_to_4_preserves_slow_sine():
    t = np.arange(32 * 60) / 32
    x = 5 + np.sin(2 * np.pi * 0.05 * t)
    y = resample_eda(x, 32, 4)
    assert y.shape == (240,) and y.dtype == np.float64
    ref = 5 + np.sin(2 * np.pi * 0.05 * np.arange(240) / 4)
    assert np.abs(y - ref)[4:-4].max() < 2e-3
    assert np.abs(y - ref).max() < 2e-2  # edges: no droop towards 0 µS


def test_resample_up_and_irrational():
    t = np.arange(4 * 30) / 4
    x = 2 + 0.5 * np.sin(2 * np.pi * 0.1 * t)
    y = resample_eda(x, 4, 32)
    assert y.shape == (960,)
    ref = 2 + 0.5 * np.sin(2 * np.pi * 0.1 * np.arange(960) / 32)
    assert np.abs(y - ref)[32:-32].max() < 5e-3
    z = resample_eda(x, 4, np.pi)  # not a small rational ratio: linear interpolation
    assert z.shape == (int(np.ceil(120 * np.pi / 4)),)
    refz = 2 + 0.5 * np.sin(2 * np.pi * 0.1 * np.arange(z.size) / np.pi)
    inside = np.arange(z.size) / np.pi <= (x.size - 1) / 4  # past the last input sample it is held
    assert np.abs(z - refz)[inside].max() < 1e-2 and not inside[-1]
    assert z[-1] == pytest.approx(x[-1])
    np.testing.assert_array_equal(resample_eda(x, 4, 4), x)


def test_resample_clips_at_zero_and_checks():
    x = np.zeros(64)
    x[32] = 5.0  # a spike next to 0 µS rings below 0 without the clip
    assert resample_eda(x, 32, 4).min() >= 0
    with pytest.raises(ValueError, match="from_rate"):
        resample_eda(x, 0, 4)
    with pytest.raises(ValueError, match="to_rate"):
        resample_eda(x, 4, np.nan)
    with pytest.raises(ValueError, match="negative"):
        resample_eda([-1.0, 1.0], 4, 2)


def test_load_eda_resamples(tmp_path):
    t = np.arange(32 * 20) / 32
    x = 5 + np.sin(2 * np.pi * 0.05 * t)
    p = write_eda_csv(tmp_path / "EDA.csv", x, 32, fmt="e4", start_time=100.0)
    rec = load_eda(p, 4)
    assert rec.sample_rate == 4 and rec.values.shape == (80,) and rec.start_time == 100.0
    assert rec.duration == pytest.approx(20.0)
    assert load_eda(p, 32).values.shape == (640,)


# -- normalization --------------------------------------------------------------------------------

def test_normalization_round_trip_and_range():
    v = _eda(200, seed=3)
    n = Normalization.fit(v)
    span = v.max() - v.min()
    assert n.lo == pytest.approx(v.min() - 0.05 * span) and n.hi == pytest.approx(v.max() + 0.05 * span)
    y = n.apply(v)
    assert y.min() >= -1 and y.max() <= 1
    assert y.min() == pytest.approx(-1 + 2 * 0.05 / 1.1) and y.max() == pytest.approx(1 - 2 * 0.05 / 1.1)
    np.testing.assert_allclose(n.invert(y), v, rtol=0, atol=1e-12)
    assert n.apply([n.lo, n.hi]).tolist() == [-1.0, 1.0]
    assert n.apply([v.max() + 100, 0.0]).tolist() == [1.0, -1.0]  # clipped
    assert n.invert([-5.0, 5.0]).tolist() == pytest.approx([n.lo, n.hi])
    # torch in, torch out
    yt = n.apply(torch.tensor(v))
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_allclose(yt.numpy(), y)
    np.testing.assert_allclose(n.invert(yt).numpy(), v, atol=1e-12)
    assert Normalization.from_dict(n.to_dict()) == n


def test_normalization_constant_and_near_zero():
    n = Normalization.fit([3.0] * 10)
    assert n.hi - n.lo == pytest.approx(0.1) and n.apply([3.0]).tolist() == [0.0]
    z = Normalization.fit([0.0, 0.0])
    assert z.lo == 0.0 and z.hi == pytest.approx(0.1)
    w = Normalization.fit([0.0, 1.0])
    assert w.lo == 0.0 and w.hi == pytest.approx(1.05)
    with pytest.raises(ValueError, match="NaN"):
        Normalization.fit([1.0, np.nan])
    with pytest.raises(ValueError, match="margin"):
        Normalization.fit([1.0, 2.0], margin=-0.1)
    assert Normalization.fit([1.0, 2.0], margin=np.float32(0.0)) == Normalization(1.0, 2.0)
    with pytest.raises(ValueError, match="lo < hi"):
        Normalization(2.0, 2.0)
