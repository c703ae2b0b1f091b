"""Generated EDA in NeuroKit2 and pandas, and the files researchers keep (BIDS physio, with
provenance beside every output)."""
import gzip
import json
import warnings

import numpy as np
import pytest

import edanet
from edanet.evaluation import metrics

EXAMPLE = edanet.generation.DEFAULT_MODEL_DIR.parent / "example.wav"


@pytest.fixture(scope="module")
def generated():
    return edanet.generate(EXAMPLE, seed=3, num_samples=3)


def test_to_dataframe(generated):
    df = generated.to_dataframe()
    assert list(df.columns) == ["sample_0_uS", "sample_1_uS", "sample_2_uS"] and df.index.name == "time_s"
    np.testing.assert_array_equal(df.to_numpy().T, generated.values)
    np.testing.assert_array_equal(df.index.to_numpy(), generated.times)
    assert df.attrs["provenance"]["seed"] == 3 and df.attrs["sample_rate_hz"] == 4.0
    one = edanet.generate(EXAMPLE, seed=3).to_dataframe()
    assert list(one.columns) == ["eda_uS"]


@pytest.mark.parametrize("sample", [0, 1, 2])
def test_neurokit_agrees_with_the_project_s_scrs(generated, sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals, info = edanet.neurokit(generated, sample=sample)
    v = generated.values[sample]
    np.testing.assert_array_equal(signals["EDA_Raw"].to_numpy(), v)
    np.testing.assert_allclose(signals["EDA_Phasic"].to_numpy(), edanet.phasic(v, 4.0)[0], atol=1e-12)
    ours = edanet.find_scrs(v, 4.0)
    nk_on = np.asarray(info["SCR_Onsets"], float) / info["sampling_rate"]
    nk_amp = np.asarray(info["SCR_Amplitude"], float)
    big = nk_amp >= metrics.MIN_SCR_US
    assert big.any()
    for on, amp in zip(nk_on[big], nk_amp[big]):        # each of NeuroKit's is one of ours, the same
        j = int(np.argmin(np.abs(ours["onset"] - on)))
        assert ours["onset"][j] == pytest.approx(on) and ours["amplitude"][j] == pytest.approx(amp, rel=1e-9)
    with pytest.raises(ValueError, match="sample"):
        edanet.neurokit(generated, sample=3)


def test_bids_output_with_its_sidecar_and_provenance(tmp_path):
    from edanet.cli import main
    from edanet.signals import read_eda_file
    out = tmp_path / "sub-01_task-music_physio.tsv.gz"
    assert main(["-q", "generate", str(EXAMPLE), "-o", str(out), "--format", "bids", "--num-samples", "2",
                 "--seed", "4", "--start-time", "2026-12-07T09:30:00Z"]) == 0
    side = json.loads((tmp_path / "sub-01_task-music_physio.json").read_text())
    # the fields BIDS requires of a physio sidecar, and units per column
    assert side["SamplingFrequency"] == 4.0 and side["StartTime"] == 0.0
    assert side["Columns"] == ["sample_0", "sample_1"] and side["sample_0"]["Units"] == "uS"
    rows = [line.split("\t") for line in gzip.decompress(out.read_bytes()).decode().splitlines()]
    assert len(rows) == 240 and all(len(r) == 2 for r in rows)                # no header: the sidecar names them
    want = edanet.generate(EXAMPLE, seed=4, num_samples=2)
    np.testing.assert_allclose(np.array(rows, float).T, want.values, atol=1e-6)
    np.testing.assert_allclose(read_eda_file(out, "sample_1").values, want.values[1], atol=1e-6)
    assert read_eda_file(out, "sample_1").start_time == 1796635800.0         # 2026-12-07T09:30:00Z
    # provenance: the model's hash, the version, the seed, the temperature, the start level, the rate
    from edanet.generation.provenance import file_sha256
    assert side["model"]["sha256"] == file_sha256(edanet.generation.DEFAULT_MODEL_DIR / "model.safetensors")
    assert side["edanet_version"] == edanet.__version__ and side["seed"] == 4 and side["temperature"] == 1.0
    assert side["start_eda_us"] == pytest.approx(list(want.provenance["start_eda_us"]))
    assert side["sample_rate_hz"] == 4.0 and side["start_time_iso"] == "2026-12-07T09:30:00+00:00"


def test_csv_output_gets_a_sidecar_and_never_overwrites_a_foreign_json(tmp_path):
    from edanet.cli import main
    out = tmp_path / "clip.csv"
    assert main(["-q", "generate", str(EXAMPLE), "-o", str(out), "--seed", "1", "--start-time", "1733600000"]) == 0
    assert out.read_text().splitlines()[0] == "1733600000.000000"             # E4's start time row
    side = json.loads((tmp_path / "clip.json").read_text())
    assert side["generated_by"].startswith("edanet ") and side["Columns"] == ["eda"]
    assert main(["-q", "generate", str(EXAMPLE), "-o", str(out), "--seed", "2"]) == 0   # ours: replaced
    (tmp_path / "other.json").write_text('{"events": []}')                    # e.g. a recording's ground truth
    assert main(["-q", "generate", str(EXAMPLE), "-o", str(tmp_path / "other.csv")]) == 2
    assert (tmp_path / "other.json").read_text() == '{"events": []}' and not (tmp_path / "other.csv").exists()


def test_several_samples_are_columns_of_recordings_and_a_median_only_when_asked(tmp_path):
    from edanet.cli import main
    assert main(["-q", "generate", str(EXAMPLE), "-o", str(tmp_path / "a.csv"), "--format", "time",
                 "--num-samples", "3", "--seed", "5"]) == 0
    header = (tmp_path / "a.csv").read_text().splitlines()[0]
    assert header == "time,sample_0,sample_1,sample_2"
    assert main(["-q", "generate", str(EXAMPLE), "-o", str(tmp_path / "b.csv"), "--format", "time",
                 "--num-samples", "3", "--seed", "5", "--with-median"]) == 0
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[0] == "time,sample_0,sample_1,sample_2,median_of_samples"
    row = np.array(lines[9].split(","), float)
    assert row[4] == pytest.approx(np.median(row[1:4]), abs=1e-6)
