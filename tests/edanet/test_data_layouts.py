"""Data folders with several EDA recordings per audio: subject tables (PMEmo), per-subject files,
EmbracePlus .avro; the split by audio; errors naming file, column and row."""
import sys

import numpy as np
import pytest
import soundfile as sf

from edanet import EDANetConfig
from edanet.training.data import PairedData, _is_validation, find_pairs, load_recording
from edanet.signals import resample_eda
from edanet.signals import read_eda_avro, read_eda_file, read_subject_column, subject_columns
from edanet.io import write_eda_csv

CFG = EDANetConfig.from_preset("tiny")      # 8 kHz audio, EDA at 4 Hz


def _wav(path, seconds, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(str(path), (0.1 * rng.standard_normal(int(seconds * CFG.audio_sample_rate))).astype(np.float32),
             CFG.audio_sample_rate)
    return path


def _eda(seconds, rate, seed):
    """A slow, positive µS trace, rounded as the CSV writers write it."""
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    return np.round(3 + seed * 0.5 + 0.4 * np.sin(2 * np.pi * t / (7 + seed)) + 0.01 * rng.standard_normal(t.size), 6)


def _table(path, columns: dict, rate=50.0, time_header="time(s)", cells=None):
    """A subject table: ``time_header`` then one column per subject (PMEmo's EDA CSV form), at
    ``rate`` samples per unit of the time column; ``cells`` ({(row, column): text}, rows 1-based
    as in the file) overrides single cells."""
    n = len(next(iter(columns.values())))
    lines = [",".join([time_header, *columns])]
    for i in range(n):
        lines.append(",".join([f"{i / rate:.2f}", *(f"{v[i]:.6f}" for v in columns.values())]))
    for (row, col), text in (cells or {}).items():
        parts = lines[row - 1].split(",")
        parts[1 + list(columns).index(col)] = text
        lines[row - 1] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    return path


def _expected(values, rate, rec):
    """What a recording should hold: the written values resampled to the model's rate."""
    return resample_eda(values, rate, CFG.eda_sample_rate)[: rec.steps]


def _by_name(data):
    return {r.name: r for r in data.recordings}


# -- a subject table beside its audio, and PMEmo's folders ----------------------------------------

def test_subject_table_beside_audio_gives_one_recording_per_column(tmp_path, monkeypatch):
    import edanet.training.frame_store as data_mod
    calls, features = [], data_mod.features
    monkeypatch.setattr(data_mod, "features", lambda *a: calls.append(a[0]) or features(*a))
    _wav(tmp_path / "song.wav", 10)
    cols = {"100083": _eda(10, 50, 1), "100081": _eda(10, 50, 2), "100090": _eda(10, 50, 3)}
    _table(tmp_path / "song.csv", cols)
    assert [(n, a.name, c.name) for n, a, c in find_pairs(tmp_path)] == [
        ("song/100081", "song.wav", "song.csv"), ("song/100083", "song.wav", "song.csv"),
        ("song/100090", "song.wav", "song.csv")]
    recs = _by_name(PairedData(tmp_path, CFG, "all"))
    assert sorted(recs) == ["song/100081", "song/100083", "song/100090"]
    assert len(calls) == 1          # the audio's features are computed once for its three recordings
    for subject, v in cols.items():
        r = recs[f"song/{subject}"]
        assert r.steps == 40 and r.csv_path == tmp_path / "song.csv"
        np.testing.assert_allclose(r.eda_us, _expected(v, 50, r), rtol=0, atol=1e-9)
    assert not np.allclose(recs["song/100081"].eda_us, recs["song/100090"].eda_us)
    # the plain (name, audio, eda) triples load on their own too
    n, a, c = find_pairs(tmp_path)[1]
    np.testing.assert_array_equal(load_recording(n, a, c, CFG).eda_us, recs["song/100083"].eda_us)


def test_pmemo_folders(tmp_path):
    (tmp_path / "chorus").mkdir()
    (tmp_path / "EDA").mkdir()
    (tmp_path / "metadata.csv").write_text("musicId,fileName\n7,7.mp3\n")     # PMEmo's own files: not EDA
    _wav(tmp_path / "chorus" / "7.wav", 12)
    _wav(tmp_path / "chorus" / "8.wav", 12)                                   # no EDA: warned about
    cols = {"1001": _eda(12, 50, 1), "1002": _eda(12, 50, 2)}
    _table(tmp_path / "EDA" / "7_EDA.csv", cols)
    with pytest.warns(RuntimeWarning, match=r"1 audio file\(s\) without a \.csv \(8\.wav\)") as record:
        pairs = find_pairs(tmp_path)
    assert "metadata.csv" not in str(record[0].message)
    assert [(n, a.parent.name, c.parent.name, c.name) for n, a, c in pairs] == [
        ("7/1001", "chorus", "EDA", "7_EDA.csv"), ("7/1002", "chorus", "EDA", "7_EDA.csv")]
    with pytest.warns(RuntimeWarning):
        recs = _by_name(PairedData(tmp_path, CFG, "all"))
    assert sorted(recs) == ["7/1001", "7/1002"]
    for subject, v in cols.items():
        np.testing.assert_allclose(recs[f"7/{subject}"].eda_us, _expected(v, 50, recs[f"7/{subject}"]), atol=1e-9)


def test_subject_table_reader_details(tmp_path):
    v = _eda(4, 50, 1)
    p = _table(tmp_path / "t.csv", {"a": v, "b": v + 1}, time_header="Time (ms)", rate=0.05)   # ms: 20 ms steps
    assert subject_columns(p) == ["a", "b"]
    rec = read_subject_column(p, "b")
    assert rec.sample_rate == 50 and rec.start_time == 0
    np.testing.assert_allclose(rec.values, v + 1, atol=1e-9)
    # a subject recorded for less time: its last cells are empty
    q = _table(tmp_path / "short.csv", {"a": v, "b": v}, cells={(row, "b"): "" for row in range(150, 202)})
    assert len(read_subject_column(q, "b")) == 148 and len(read_subject_column(q, "a")) == 200
    # the single-recording forms are not subject tables
    assert subject_columns(write_eda_csv(tmp_path / "e4.csv", v, 50, fmt="e4")) is None
    assert subject_columns(write_eda_csv(tmp_path / "te.csv", v, 50, fmt="time")) is None
    with pytest.raises(ValueError, match=r"t\.csv: holds 2 subject column\(s\) \('a', 'b'\)"):
        read_eda_file(p)


# -- NAME.<subject>.csv beside one audio ------------------------------------------------------------

def test_per_subject_files(tmp_path):
    _wav(tmp_path / "talk.wav", 10)
    own, alice, bob = _eda(10, 4, 1), _eda(10, 32, 2), _eda(10, 4, 3)
    write_eda_csv(tmp_path / "talk.csv", own, 4, fmt="e4")
    write_eda_csv(tmp_path / "talk.alice.csv", alice, 32, fmt="time")
    write_eda_csv(tmp_path / "talk.bob.csv", bob, 4, fmt="e4")
    _wav(tmp_path / "take.2.wav", 10, seed=1)                 # a NAME with a dot of its own
    write_eda_csv(tmp_path / "take.2.carol.csv", own, 4, fmt="e4")
    assert [(n, c.name) for n, _, c in find_pairs(tmp_path)] == [
        ("take.2/carol", "take.2.carol.csv"),
        ("talk", "talk.csv"), ("talk/alice", "talk.alice.csv"), ("talk/bob", "talk.bob.csv")]
    recs = _by_name(PairedData(tmp_path, CFG, "all"))
    for name, v, rate in [("talk", own, 4), ("talk/alice", alice, 32), ("talk/bob", bob, 4), ("take.2/carol", own, 4)]:
        assert recs[name].steps == 40
        np.testing.assert_allclose(recs[name].eda_us, _expected(v, rate, recs[name]), atol=1e-9)
    assert recs["take.2/carol"].audio_path == tmp_path / "take.2.wav"


def test_two_files_for_one_recording_are_refused(tmp_path):
    _wav(tmp_path / "x.wav", 4)
    write_eda_csv(tmp_path / "x.csv", _eda(4, 4, 1), 4)
    _table(tmp_path / "y.csv", {"s": _eda(4, 50, 1)})
    _wav(tmp_path / "y.wav", 4)
    write_eda_csv(tmp_path / "y.s.csv", _eda(4, 4, 1), 4)
    with pytest.raises(ValueError, match=r"both y\.csv and y\.s\.csv give the recording 'y/s'"):
        find_pairs(tmp_path)


# -- Empatica EmbracePlus .avro -----------------------------------------------------------------------

def _sensor(name):
    return {"name": name, "type": "record", "fields": [
        {"name": "timestampStart", "type": "long"},
        {"name": "samplingFrequency", "type": "float"},
        {"name": "values", "type": {"type": "array", "items": "float"}}]}


def _session_schema(with_eda=True):
    """The part of EmbracePlus' session schema that is read here (field names and types as
    Empatica's files have them; the real schema has more sensors and metadata)."""
    raw = [{"name": "eda", "type": _sensor("Eda")}] * with_eda
    raw.append({"name": "temperature", "type": _sensor("Temperature")})
    return {"name": "Session", "namespace": "empatica.format.avro", "type": "record", "fields": [
        {"name": "schemaVersion", "type": {"name": "Version", "type": "record", "fields": [
            {"name": n, "type": "int"} for n in ("major", "minor", "patch")]}},
        {"name": "rawData", "type": {"name": "RawData", "type": "record", "fields": raw}}]}


def _avro(path, eda_values, rate=4.0, start_us=1_700_000_000_123_456, with_eda=True, records=1):
    fastavro = pytest.importorskip("fastavro")
    sensor = {"timestampStart": start_us, "samplingFrequency": rate, "values": [float(x) for x in eda_values]}
    raw = {"temperature": {"timestampStart": start_us, "samplingFrequency": 1.0, "values": [33.0]}}
    if with_eda:
        raw["eda"] = sensor
    rec = {"schemaVersion": {"major": 6, "minor": 7, "patch": 0}, "rawData": raw}
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(_session_schema(with_eda)), [rec] * records)
    return path


def test_avro_beside_audio(tmp_path):
    _wav(tmp_path / "band.wav", 10)
    v = _eda(10, 4, 2)
    _avro(tmp_path / "band.avro", v)
    assert [(n, c.name) for n, _, c in find_pairs(tmp_path)] == [("band", "band.avro")]
    raw = read_eda_avro(tmp_path / "band.avro")
    written = v.astype(np.float32).astype(np.float64)           # the schema stores float32
    assert raw.sample_rate == 4 and raw.start_time == pytest.approx(1_700_000_000.123456)
    np.testing.assert_array_equal(raw.values, written)
    r = PairedData(tmp_path, CFG, "all").recordings[0]
    assert r.name == "band" and r.csv_path == tmp_path / "band.avro" and r.steps == 40
    np.testing.assert_allclose(r.eda_us, _expected(written, 4, r), atol=1e-12)


def test_avro_at_another_rate_is_resampled(tmp_path):
    _wav(tmp_path / "band.wav", 10)
    v = _eda(10, 64, 1)
    _avro(tmp_path / "band.avro", v, rate=64.0)
    r = PairedData(tmp_path, CFG, "all").recordings[0]
    np.testing.assert_allclose(r.eda_us, _expected(v.astype(np.float32).astype(np.float64), 64, r), atol=1e-9)
    assert r.steps == 40


@pytest.mark.parametrize("case, kwargs, message", [
    ("no_eda", {"with_eda": False}, r"no rawData\.eda"),
    ("no_records", {"records": 0}, "holds no records"),
    ("no_values", {"eda_values": []}, r"rawData\.eda\.values is empty"),
    ("bad_rate", {"rate": 0.0}, r"samplingFrequency 0\.0 must be a positive number"),
    ("negative", {"eda_values": [1.0, -0.5, 1.0]}, r"rawData\.eda\.values contains 1 negative value"),
])
def test_avro_errors_name_the_file(tmp_path, case, kwargs, message):
    kwargs = {"eda_values": _eda(6, 4, 1), **kwargs}
    p = _avro(tmp_path / f"{case}.avro", **kwargs)
    with pytest.raises(ValueError, match=message) as e:
        read_eda_avro(p)
    assert f"{case}.avro" in str(e.value)


def test_avro_that_is_not_avro(tmp_path):
    pytest.importorskip("fastavro")
    p = tmp_path / "junk.avro"
    p.write_text("time,eda\n0,1\n")
    with pytest.raises(ValueError, match=r"junk\.avro: not a readable \.avro file"):
        read_eda_avro(p)


def test_avro_without_fastavro_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastavro", None)        # import fastavro now raises ImportError
    with pytest.raises(ImportError, match=r"x\.avro.*pip install fastavro.*edanet\[avro\]"):
        read_eda_avro(tmp_path / "x.avro")


# -- the split ------------------------------------------------------------------------------------

def test_split_keeps_the_recordings_of_one_audio_together(tmp_path):
    names = [f"song{i}" for i in range(6)]
    for i, name in enumerate(names):
        _wav(tmp_path / f"{name}.wav", 4, seed=i)
        _table(tmp_path / f"{name}.csv", {s: _eda(4, 50, k) for k, s in enumerate(("s1", "s2", "s3"))})
    tr = {r.name for r in PairedData(tmp_path, CFG, "train", val_fraction=0.5).recordings}
    va = {r.name for r in PairedData(tmp_path, CFG, "val", val_fraction=0.5).recordings}
    assert tr and va and not tr & va and len(tr | va) == 18
    for name in names:
        subjects = {f"{name}/{s}" for s in ("s1", "s2", "s3")}
        assert subjects <= tr or subjects <= va, name
    # hashing each recording's own name would have split some audio
    assert any(_is_validation(r, 0.5) != _is_validation(r.split("/")[0], 0.5) for r in tr | va)


def test_tiny_folder_validates_on_every_recording_of_one_audio(tmp_path):
    assert not _is_validation("solo", 0.1)
    _wav(tmp_path / "solo.wav", 4)
    _table(tmp_path / "solo.csv", {"a": _eda(4, 50, 1), "b": _eda(4, 50, 2)})
    assert sorted(r.name for r in PairedData(tmp_path, CFG, "val", val_fraction=0.1).recordings) == ["solo/a", "solo/b"]


# -- errors a user can act on -------------------------------------------------------------------

def test_table_without_time_column(tmp_path):
    _wav(tmp_path / "song.wav", 4)
    (tmp_path / "song.csv").write_text("subj1,subj2\n1.0,2.0\n1.1,2.1\n")
    with pytest.raises(ValueError, match=r"bad pair 'song'.*song\.csv: row 1 is a header \('subj1', 'subj2'\) "
                                         r"without a time column.*time\(s\)"):
        PairedData(tmp_path, CFG, "all")


@pytest.mark.parametrize("bad, cell, message", [
    ("nan", "NaN", r"song\.csv: row 5: column 's2' EDA value is NaN"),
    ("negative", "-0.2", r"song\.csv: row 5: column 's2' EDA value -0.2 is negative"),
    ("text", "x", r"song\.csv: row 5: column 's2' EDA value 'x' is not a number"),
    ("gap", "", r"song\.csv: row 5: column 's2' is empty \(a missing value\) but row 6 has a value"),
])
def test_bad_subject_column_is_named_and_skipped_alone(tmp_path, bad, cell, message):
    _wav(tmp_path / "song.wav", 6)
    _table(tmp_path / "song.csv", {s: _eda(6, 50, k) for k, s in enumerate(("s1", "s2", "s3"))},
           cells={(5, "s2"): cell})
    with pytest.raises(ValueError, match=r"bad pair 'song/s2'.*" + message):
        PairedData(tmp_path, CFG, "all")
    with pytest.warns(RuntimeWarning, match="skipped 1 bad pair"):
        d = PairedData(tmp_path, CFG, "all", skip_bad=True)
    assert [r.name for r in d.recordings] == ["song/s1", "song/s3"] and d.skipped[0][0] == "song/s2"


def test_length_mismatch_names_the_recording_and_file(tmp_path):
    _wav(tmp_path / "song.wav", 10)
    _table(tmp_path / "song.csv", {"s1": _eda(30, 50, 1)})
    _wav(tmp_path / "band.wav", 10)
    _avro(tmp_path / "band.avro", _eda(30, 4, 1))
    with pytest.warns(RuntimeWarning, match="skipped 2 bad pair"):
        with pytest.raises(ValueError, match=r"all 2 of its recording\(s\) were skipped") as e:
            PairedData(tmp_path, CFG, "all", skip_bad=True)
    msg = str(e.value)
    assert "band: band: length mismatch: audio band.wav gives 40 EDA steps" in msg and "band.avro has 120" in msg
    assert "song/s1: song/s1: length mismatch: audio song.wav gives 40" in msg and "song.csv has 120" in msg
