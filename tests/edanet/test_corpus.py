"""Corpus generation: batched across clips == one clip at a time, resume, bad clips, torchrun shards."""
import shutil
import csv
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import edanet
import edanet.generation.corpus
from edanet.generation.corpus import clip_seed, find_clips, shard_of

CLI = [sys.executable, "-m", "edanet.cli", "-q"]
RATE = 8000                                   # the tiny preset's audio rate: no resampling
SECONDS = [3.1, 0.6, 7.4, 2.0, 5.25, 0.3, 4.9]   # mixed lengths, odd ones among them


def _tone_bursts(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = 0.01 * rng.standard_normal(int(seconds * RATE))
    for at in rng.uniform(0, seconds, 3):                  # a few loud noise bursts
        i = int(at * RATE)
        a[i:i + 1600] += 0.5 * rng.standard_normal(a[i:i + 1600].size)
    return a.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir, tiny_model):
    root = tmp_path_factory.mktemp("corpus")
    clips = root / "clips"
    for i, s in enumerate(SECONDS):
        sub = clips / ("b" if i % 3 == 2 else "a") / (f"deep{i}" if i == 4 else "")
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(sub / f"clip{i}.wav", _tone_bursts(s, i), RATE)
    (clips / "notes.txt").write_text("not audio: a folder search passes it by")
    shutil.copytree(tiny_model_dir, root / "model")
    return root, tiny_model


def _cli(*args, env=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=600, env=env)


def _manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_find_clips_folders_globs_and_relative_paths(corpus, tmp_path):
    root, _ = corpus
    clips = find_clips(root / "clips")
    assert [c.rel for c in clips] == sorted(c.rel for c in clips) and len(clips) == len(SECONDS)
    assert "a/deep4/clip4.wav" in [c.rel for c in clips] and all(c.rel.endswith(".wav") for c in clips)
    by_glob = find_clips(str(root / "clips" / "**" / "clip[0-4].wav"))
    assert sorted(c.rel for c in by_glob) == sorted(c.rel for c in clips if c.rel[-5] in "01234")
    one = find_clips(root / "clips" / "b" / "clip2.wav")
    assert [c.rel for c in one] == ["clip2.wav"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_clips(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError, match="no files match"):
        find_clips(str(tmp_path / "*.wav"))
    # two files that would write the same output
    with pytest.raises(ValueError, match="would both write"):
        find_clips([root / "clips" / "a" / "clip0.wav", _copy(root / "clips" / "b" / "clip2.wav", tmp_path / "clip0.wav")])


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_seeds_and_shards_depend_on_the_relative_path_only():
    assert clip_seed(0, "a/x.wav") == clip_seed(0, "a/x.wav") != clip_seed(0, "b/x.wav")
    assert clip_seed(0, "a/x.wav") != clip_seed(1, "a/x.wav") and 0 <= clip_seed(7, "z") < 2 ** 63
    counts = np.bincount([shard_of(f"d/{i}.wav", 3) for i in range(300)], minlength=3)
    assert counts.min() > 60                                  # a spread, not one shard taking all


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("batch_size,num_samples,chunk", [(4, 1, 240), (3, 2, 240), (1, 1, 240), (3, 2, 5)])
def test_batched_equals_one_clip_at_a_time(corpus, backend, batch_size, num_samples, chunk, monkeypatch):
    root, model = corpus
    monkeypatch.setattr(edanet.generation.corpus, "CHUNK_STEPS", chunk)    # 5: every clip in several engine calls
    got = list(edanet.generate_many(root / "clips", model=model, backend=backend, batch_size=batch_size, seed=11,
                                    num_samples=num_samples))
    assert [c.rel for c, _ in got] == [c.rel for c in find_clips(root / "clips")]      # input order
    lengths = set()
    for clip, res in got:
        one = edanet.generate(clip.path, model=model, backend=backend, seed=clip_seed(11, clip.rel),
                              num_samples=num_samples)
        assert res.seed == one.seed
        np.testing.assert_array_equal(res.classes, one.classes, err_msg=clip.rel)
        np.testing.assert_array_equal(res.values, one.values, err_msg=clip.rel)
        lengths.add(res.values.shape[1])
    assert len(lengths) == len(SECONDS)                         # the clips really had mixed lengths


def test_cli_resume_skips_finished_clips(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    r = _cli("generate", root / "clips", "-o", out, "--model", root / "model", "--seed", 2, "--batch-size", 3)
    assert r.returncode == 0, r.stderr
    rows = _manifest(out)
    assert [row["status"] for row in rows] == ["ok"] * len(SECONDS)
    csvs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv") if p.name != "manifest.csv")
    assert csvs == sorted(c.rel[:-4] + ".csv" for c in find_clips(root / "clips"))
    first = {p: p.read_bytes() for p in out.rglob("*.csv") if p.name != "manifest.csv"}
    # interrupted run: one output missing, another replaced by a marker a rerun must not touch
    missing = out / "b" / "clip2.csv"
    missing.unlink()
    marker = out / "a" / "clip0.csv"
    marker.write_text("kept")
    r = _cli("generate", root / "clips", "-o", out, "--model", root / "model", "--seed", 2)
    assert r.returncode == 0, r.stderr
    status = {os.path.relpath(row["output"], out): row["status"] for row in _manifest(out)}
    assert status.pop("b/clip2.csv") == "ok" and set(status.values()) == {"skipped"}
    assert marker.read_text() == "kept" and missing.read_bytes() == first[missing]
    r = _cli("generate", root / "clips", "-o", out, "--model", root / "model", "--seed", 2, "--overwrite")
    assert r.returncode == 0 and marker.read_bytes() == first[marker]


def test_cli_records_a_bad_clip_and_goes_on(corpus, tmp_path):
    root, _ = corpus
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.wav", "c.wav"):
        _copy(root / "clips" / "a" / "clip0.wav", clips / name)
    (clips / "b.wav").write_bytes(b"RIFF garbage, not a wave file" * 10)
    out = tmp_path / "out"
    r = _cli("generate", clips, "-o", out, "--model", root / "model")
    assert r.returncode == 1 and "1 of 3 clips failed" in r.stderr
    rows = {os.path.basename(row["input"]): row for row in _manifest(out)}
    assert rows["a.wav"]["status"] == rows["c.wav"]["status"] == "ok"
    assert rows["b.wav"]["status"] == "error" and "b.wav" in rows["b.wav"]["error"]
    assert (out / "a.csv").is_file() and (out / "c.csv").is_file() and not (out / "b.csv").exists()
    # --fail-fast stops there: one line, the clip after it never run
    out2 = tmp_path / "out2"
    r = _cli("generate", clips, "-o", out2, "--model", root / "model", "--fail-fast")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "b.wav" in r.stderr
    assert [row["status"] for row in _manifest(out2)] == ["ok", "error", "pending"]
    assert not (out2 / "c.csv").exists()


def test_cli_one_file_into_an_existing_folder(corpus, tmp_path):
    root, _ = corpus
    wav = root / "clips" / "b" / "clip2.wav"
    r = _cli("generate", wav, "-o", tmp_path, "--model", root / "model", "--seed", 9)
    assert r.returncode == 0, r.stderr
    r = _cli("generate", wav, "-o", tmp_path / "direct.csv", "--model", root / "model", "--seed",
             clip_seed(9, "clip2.wav"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "clip2.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()
    assert [row["status"] for row in _manifest(tmp_path)] == ["ok"]


def test_cli_corpus_arguments_are_checked(corpus, tmp_path):
    root, _ = corpus
    r = _cli("generate", root / "clips", "-o", tmp_path / "o", "--model", root / "model", "--plot", "x/p.png")
    assert r.returncode == 2 and "beside each CSV" in r.stderr
    (tmp_path / "file").write_text("")
    r = _cli("generate", root / "clips", "-o", tmp_path / "file", "--model", root / "model")
    assert r.returncode == 2 and "output folder" in r.stderr
    r = _cli("generate", root / "clips", "-o", tmp_path / "o", "--model", root / "model", "--batch-size", 0)
    assert r.returncode == 2 and "batch_size" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one(corpus, tmp_path):
    root, _ = corpus
    one, two = tmp_path / "one", tmp_path / "two"
    r = _cli("generate", root / "clips", "-o", one, "--model", root / "model", "--seed", 5, "--plot")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "edanet.cli",
                        "-q", "generate", root / "clips", "-o", two, "--model", root / "model", "--seed", "5",
                        "--plot"], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[rank 0/2]" in r.stdout and "[rank 1/2]" in r.stdout          # both ranks took clips
    files = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(one) == files(two)                  # rank manifests merged away, plots beside the CSVs
    for rel in files(one):
        if rel.endswith(".csv") and rel != "manifest.csv":
            assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    m1, m2 = _manifest(one), _manifest(two)
    assert [r["input"] for r in m1] == [r["input"] for r in m2]        # merged in input order
    assert [(r["seed"], r["status"]) for r in m1] == [(r["seed"], r["status"]) for r in m2]


def test_api_bad_clip_raises_or_is_yielded(corpus, tmp_path):
    root, model = corpus
    good = _copy(root / "clips" / "a" / "clip0.wav", tmp_path / "good.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="bad.wav"):
        list(edanet.generate_many([bad, good], model=model))
    got = list(edanet.generate_many([good, bad], model=model, on_error="yield", seed=4))
    assert [c.path.name for c, _ in got] == ["good.wav", "bad.wav"]
    assert isinstance(got[1][1], ValueError) and "bad.wav" in str(got[1][1])
    one = edanet.generate(good, model=model, seed=clip_seed(4, "good.wav"))
    np.testing.assert_array_equal(got[0][1].values, one.values)
    with pytest.raises(ValueError, match="on_error"):
        next(edanet.generate_many([good], model=model, on_error="skip"))
