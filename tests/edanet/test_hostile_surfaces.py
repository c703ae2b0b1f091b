"""Hostile input on the newer surfaces: corpora (folders, globs, torchrun shards), ``edanet
stream``, ``EDAStream``, ``generate_many``, training folders and resume.

Every case runs the public command line or API in a child process capped at 4 GiB of address
space (a runaway allocation fails loudly instead of swapping the machine) with a timeout that
only a hang reaches. A refusal is exit status 2 and one line naming what was wrong (or a
ValueError/TypeError/OSError from the API); and no user file is lost or overwritten.
"""
from __future__ import annotations

import csv
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edanet import EDANetConfig
from edanet.synth import SynthConfig, write_dataset

CAP_BYTES = 4 * 2**30
CFG = EDANetConfig.from_preset("tiny")
RATE = CFG.audio_sample_rate
HANG = 300                  # seconds: only a hang gets near it


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))


def cli(*args, cwd=None, stdin=None, env=None, timeout=HANG) -> subprocess.CompletedProcess:
    """``edanet -q ARGS`` in a capped child process."""
    return subprocess.run([sys.executable, "-m", "edanet.cli", "-q", *map(os.fsdecode, args)], preexec_fn=_cap,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=stdin, env=env,
                          errors="replace")


def api(code: str, cwd=None) -> subprocess.CompletedProcess:
    """``code`` (Python, with numpy as np, torch and edanet imported) in a capped child process."""
    prelude = "import numpy as np, torch, edanet\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], preexec_fn=_cap,
                          capture_output=True, text=True, timeout=HANG, cwd=cwd)


def refused(r: subprocess.CompletedProcess, command: str, *words: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, f"status {r.returncode}:\n{r.stderr[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith(f"edanet {command}: error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (symlinks not followed) and its bytes."""
    return {os.fsdecode(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def noise(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = 0.01 * rng.standard_normal(int(seconds * rate))
    a[rate // 2: rate] += 0.3 * rng.standard_normal(rate // 2)
    return a.astype(np.float32)


def write_clips(folder: Path, names, seconds: float = 2.0) -> Path:
    """``folder`` with a clip of noise under each of ``names``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        sf.write(folder / n, noise(seconds, i), RATE)
    return folder


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pairs")
    write_dataset(d, 2, SynthConfig(seconds=6.0, audio_sample_rate=RATE), seed=1, progress=False)
    return d


# -- data loss ------------------------------------------------------------------------------------

def test_train_refuses_an_out_folder_holding_a_saved_model(model, pairs, tmp_path):
    out = tmp_path / "saved"
    out.mkdir()
    for f in ("config.json", "model.safetensors"):
        (out / f).write_bytes((model / f).read_bytes())
    (out / "log.csv").write_text("my notes\n")
    before = snapshot(out)
    r = cli("train", "--data", pairs, "--out", out, "--preset", "tiny", "--steps", "1")
    refused(r, "train", "no train.json", "new or empty folder")
    assert snapshot(out) == before


def test_train_refuses_an_out_folder_of_other_files_and_leaves_their_temporary_files(pairs, tmp_path):
    out = tmp_path / "work"
    (out / "sub").mkdir(parents=True)
    inflight = [out / ".data.csv.abcdefgh.tmp.csv", out / "sub" / ".model.safetensors.zz9zz9zz.tmp.safetensors",
                out / ".config.json.abcdefgh.tmp.json"]        # another program's writes, one under a run file's name
    for p in inflight:
        p.write_text("in flight")
    (out / "data.csv").write_text("mine")
    before = snapshot(out)
    r = cli("train", "--data", pairs, "--out", out, "--preset", "tiny", "--steps", "1")
    refused(r, "train", "not a training run's", "data.csv")
    empty = tmp_path / "empty_data"          # a folder a run may take, refused for its data: nothing removed
    empty.mkdir()
    r = cli("train", "--data", empty, "--out", out / "sub", "--preset", "tiny", "--steps", "1")
    refused(r, "train", "no pairs")
    assert snapshot(out) == before


def test_resume_refuses_a_state_json_with_a_bad_step_or_missing_keys(pairs, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--data", pairs, "--out", run, "--preset", "tiny", "--steps", "4", "--ckpt-every", "2",
            "--val-every", "2", "--batch-size", "2", "--crop-steps", "8")
    assert r.returncode == 0, r.stderr
    state = run / "checkpoints" / "step_00000004" / "state.json"
    good = json.loads(state.read_text())
    for edit, words in (({"step": -3}, ("says step -3",)), ({"step": 2}, ("says step 2",)),
                        ({"step": "4"}, ("says step '4'",)),
                        ({"param_groups": [{"lr": 1e-3}]}, ("does not fit",))):
        state.write_text(json.dumps({**good, **edit}))
        before = snapshot(run)
        r = cli("train", "--data", pairs, "--out", run, "--preset", "tiny", "--steps", "8", "--ckpt-every", "2",
                "--val-every", "2", "--batch-size", "2", "--crop-steps", "8", "--resume")
        refused(r, "train", "state.json", *words)
        assert snapshot(run) == before, edit
    state.write_text(json.dumps({k: v for k, v in good.items() if k != "scheduler"}))
    r = cli("train", "--data", pairs, "--out", run, "--preset", "tiny", "--steps", "8", "--resume")
    refused(r, "train", "state.json", "scheduler")


def test_corpus_refuses_two_clips_on_one_output_before_writing(model, tmp_path):
    clips = write_clips(tmp_path / "clips", ["a.wav", "a.flac", "b.wav"])
    out = tmp_path / "out"
    refused(cli("generate", clips, "-o", out, "--model", model), "generate", "a.flac", "a.wav", "would both write")
    assert not out.exists()


def test_corpus_refuses_a_clip_named_like_the_manifest(model, tmp_path):
    clips = write_clips(tmp_path / "clips", ["manifest.wav", "other.wav"])
    out = tmp_path / "out"
    refused(cli("generate", clips, "-o", out, "--model", model), "generate", "manifest.wav", "manifest's name")
    assert not out.exists()
    sub = clips / "deeper"                                       # below the top it is just a name
    sub.mkdir()
    (clips / "manifest.wav").rename(sub / "manifest.wav")
    r = cli("generate", clips, "-o", out, "--model", model)
    assert r.returncode == 0, r.stderr
    assert (out / "deeper" / "manifest.csv").is_file() and len(manifest(out)) == 2


def test_generate_into_a_training_folder_never_touches_its_recordings(model, pairs):
    before = snapshot(pairs)
    for extra in ([], ["--overwrite"]):
        r = cli("generate", pairs, "-o", pairs, "--model", model, *extra)
        refused(r, "generate", "did not write", "synth_0000")
        assert snapshot(pairs) == before


def test_only_recorded_outputs_are_skipped_or_overwritten(model, tmp_path):
    clips = write_clips(tmp_path / "clips", [f"c{i}.wav" for i in range(3)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "c1.csv").write_text("a user's file, not ours")
    refused(cli("generate", clips, "-o", out, "--model", model), "generate", "c1.csv")
    assert (out / "c1.csv").read_text() == "a user's file, not ours" and sorted(os.listdir(out)) == ["c1.csv"]
    (out / "c1.csv").unlink()
    (out / "manifest.csv").write_text("my own manifest\n")
    refused(cli("generate", clips, "-o", out, "--model", model), "generate", "manifest.csv")
    assert (out / "manifest.csv").read_text() == "my own manifest\n"
    (out / "manifest.csv").unlink()
    r = cli("generate", clips, "-o", out, "--model", model, "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in manifest(out)] == ["ok"] * 3
    rec = json.loads((out / "c0.json").read_text())
    assert rec["status"] == "done" and rec["input"] == "c0.wav" and rec["output"] == "c0.csv"
    r = cli("generate", clips, "-o", out, "--model", model, "--seed", "3")
    assert [row["status"] for row in manifest(out)] == ["skipped"] * 3


# -- kills ----------------------------------------------------------------------------------------

def test_a_killed_plot_run_is_finished_by_the_next(model, tmp_path):
    clips = write_clips(tmp_path / "clips", [f"c{i:02d}.wav" for i in range(12)], 3.0)
    out = tmp_path / "out"
    # the state kill -9 leaves mid-clip: a claim, a CSV, no plot, a half-written plot
    out.mkdir()
    r = cli("generate", clips / "c00.wav", clips / "c01.wav", "-o", out, "--model", model)   # no plots yet
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "c00.json").read_text())
    (out / "c00.json").write_text(json.dumps({**rec, "status": "writing", "plot": "c00.png"}))
    (out / ".c00.png.k1ll3dxx.tmp.png").write_bytes(b"\x89PNG half")
    # a real kill -9, once the first clip is done
    proc = subprocess.Popen([sys.executable, "-m", "edanet.cli", "-q", "generate", str(clips), "-o", str(out),
                             "--model", str(model), "--plot"], preexec_fn=_cap)
    deadline = time.monotonic() + HANG
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "c02.png").exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    r = cli("generate", clips, "-o", out, "--model", model, "--plot")
    assert r.returncode == 0, r.stderr
    rows = manifest(out)
    assert len(rows) == 12 and {row["status"] for row in rows} <= {"ok", "skipped"}
    for i in range(12):
        assert (out / f"c{i:02d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads((out / f"c{i:02d}.json").read_text())["status"] == "done"
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


# -- names, links, special files ------------------------------------------------------------------

def test_file_names_with_line_breaks_and_commas_round_trip_in_the_manifest(model, tmp_path):
    names = ["a\rb.wav", "c\nd.wav", 'e,"f".wav', "plain.wav"]
    clips = write_clips(tmp_path / "clips", names, 1.5)
    out = tmp_path / "out"
    r = cli("generate", clips, "-o", out, "--model", model)
    assert r.returncode == 0, r.stderr
    rows = manifest(out)
    assert [Path(row["input"]).name for row in rows] == sorted(names)
    assert all(row["status"] == "ok" and Path(row["output"]).is_file() for row in rows)


@pytest.mark.slow
def test_torchrun_merges_manifests_of_names_with_line_breaks(model, tmp_path):
    import socket
    names = [f"c{i}\r{i}.wav" for i in range(4)] + ["plain.wav"]
    clips = write_clips(tmp_path / "clips", names, 1.5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-addr",
                        "127.0.0.1", "--master-port", str(port), "-m", "edanet.cli", "-q", "generate", str(clips),
                        "-o", str(tmp_path / "out"), "--model", str(model)], capture_output=True, text=True,
                       timeout=HANG, preexec_fn=_cap, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = manifest(tmp_path / "out")
    assert [Path(row["input"]).name for row in rows] == sorted(names)       # merged, in input order
    assert {row["status"] for row in rows} == {"ok"}
    assert not list((tmp_path / "out").glob("manifest.rank-*"))


def test_a_file_name_that_is_not_utf8_is_recorded_and_the_rest_go_on(model, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "x.wav", noise(1.5), RATE)
    os.rename(bytes(clips / "x.wav"), bytes(clips) + b"/caf\xe9.wav")       # Latin-1 bytes: not UTF-8
    sf.write(clips / "good.wav", noise(1.5, 1), RATE)
    out = tmp_path / "out"
    r = cli("generate", clips, "-o", out, "--model", model)
    assert r.returncode == 1, r.stderr
    rows = {Path(row["input"]).name: row for row in manifest(out)}     # the manifest reads as UTF-8
    assert rows["good.wav"]["status"] == "ok"
    assert rows["caf\\xe9.wav"]["status"] == "error" and "not valid UTF-8" in rows["caf\\xe9.wav"]["error"]


def test_a_glob_over_symlink_loops_visits_each_file_once(model, tmp_path):
    root = tmp_path / "IN"
    (root / "a" / "b").mkdir(parents=True)
    for i, rel in enumerate(("x.wav", "a/y.wav", "a/b/z.wav")):
        sf.write(root / rel, noise(1.5, i), RATE)
    os.symlink("..", root / "a" / "b" / "loop")              # a/b/loop -> a: a loop
    os.symlink(root, root / "a" / "root")                      # back to the top
    os.symlink(root / "x.wav", root / "a" / "x_again.wav")     # the same file under another name
    out = tmp_path / "out"
    r = cli("generate", f"{root}/**/*.wav", "-o", out, "--model", model)
    assert r.returncode == 0, r.stderr
    assert sorted(Path(row["output"]).relative_to(out).as_posix() for row in manifest(out)) == \
        ["a/b/z.csv", "a/y.csv", "x.csv"]


def test_a_fifo_is_never_opened(model, tmp_path):
    fifo_model = tmp_path / "fifo_model"
    fifo_model.mkdir()
    (fifo_model / "config.json").write_bytes((model / "config.json").read_bytes())
    os.mkfifo(fifo_model / "model.safetensors")
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(1.5), RATE)
    refused(cli("generate", wav, "-o", tmp_path / "a.csv", "--model", fifo_model), "generate", "FIFO")
    os.mkfifo(tmp_path / "pipe.wav")
    refused(cli("generate", tmp_path / "pipe.wav", "-o", tmp_path / "b.csv", "--model", model), "generate", "FIFO")
    clips = tmp_path / "clips"
    clips.mkdir()
    os.mkfifo(clips / "pipe.wav")
    sf.write(clips / "real.wav", noise(1.5), RATE)
    r = cli("generate", clips, "-o", tmp_path / "out", "--model", model)       # a folder's FIFO is passed by
    assert r.returncode == 0, r.stderr
    assert [Path(row["input"]).name for row in manifest(tmp_path / "out")] == ["real.wav"]


# -- absurd audio, memory -------------------------------------------------------------------------

def test_an_absurd_amplitude_fails_its_clip_not_the_corpus(model, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    a = noise(2.0)
    a[::7], a[1::7] = 3e38, -3e38
    sf.write(clips / "huge.wav", a, RATE, subtype="FLOAT")
    sf.write(clips / "ok.wav", noise(2.0, 1), RATE)
    out = tmp_path / "out"
    r = cli("generate", clips, "-o", out, "--model", model)
    assert r.returncode == 1, r.stderr
    rows = {Path(row["input"]).name: row for row in manifest(out)}
    assert rows["ok.wav"]["status"] == "ok"
    assert rows["huge.wav"]["status"] == "error" and "magnitude up to 3e+38" in rows["huge.wav"]["error"]
    refused(cli("generate", clips / "huge.wav", "-o", tmp_path / "h.csv", "--model", model), "generate",
            "huge.wav", "magnitude")


def test_num_samples_beyond_memory_is_a_value_error_before_any_work(model):
    r = api(f"""
        m = edanet.load_model({str(model)!r})
        audio = np.zeros(8000 * 2, np.float32)
        for n in (10**9, 10**7):
            try:
                edanet.generate(audio, 8000, model=m, num_samples=n)
            except ValueError as e:
                print("ValueError", n, e)
        try:
            edanet.EDAStream(m, 8000, num_samples=10**9)
        except ValueError as e:
            print("ValueError stream", e)
        """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("ValueError") and "GiB" in line for line in lines), r.stdout
    refused(cli("stream", "--sample-rate", "8000", "--num-samples", "10000000000", "--model", str(model),
                stdin=subprocess.DEVNULL), "stream", "GiB")


@pytest.mark.slow
def test_a_corpus_of_long_clips_needs_no_more_memory_than_one_file(model, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):          # 8 minutes of 48 kHz stereo each: 184 MB of float32 read whole
        x = (0.05 * rng.standard_normal((48000 * 480, 2))).astype(np.float32)
        sf.write(clips / f"long{i}.wav", x, 48000, subtype="PCM_16")
        del x

    def peak_rss(*args) -> int:
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        r = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "edanet.cli", "-q", *map(str, args)],
                           capture_output=True, text=True, timeout=HANG, preexec_fn=_cap)
        assert r.returncode == 0, r.stderr[-2000:]
        return int(r.stdout.strip().splitlines()[-1]) * 1024

    one = peak_rss("generate", clips / "long0.wav", "-o", tmp_path / "one.csv", "--model", model)
    corpus = peak_rss("generate", clips, "-o", tmp_path / "out", "--model", model)
    print(f"peak RSS: one file {one / 2**20:.0f} MiB, corpus of 3 {corpus / 2**20:.0f} MiB")
    assert corpus <= 1.15 * one, (one, corpus)          # measured 1.04x (the old whole-clip reads: 2.9x)


# -- standard streams, tensors --------------------------------------------------------------------

@pytest.mark.parametrize("redirect, name", [("<&-", "stdin"), (">&-", "stdout")])
def test_stream_with_a_closed_standard_stream_is_refused(model, redirect, name):
    r = subprocess.run(["bash", "-c", f'exec "$0" -m edanet.cli stream --sample-rate 8000 --model "$1" {redirect}',
                        sys.executable, str(model)], capture_output=True, text=True, timeout=HANG,
                       preexec_fn=_cap, stdin=subprocess.DEVNULL if name == "stdout" else None)
    refused(r, "stream", f"{name} is closed")


def test_generate_and_synth_run_with_closed_standard_streams(model, tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(2.0), RATE)
    for cmd in ('generate "$1" -o "$2/a.csv" --model "$3"', 'synth --out "$2/syn" --pairs 1 --seconds 2',
                "--help"):
        r = subprocess.run(["bash", "-c", f'exec "$0" -m edanet.cli {cmd} <&- >&- 2>&-', sys.executable, str(wav),
                            str(tmp_path), str(model)], capture_output=True, text=True, timeout=HANG,
                           preexec_fn=_cap)
        assert r.returncode == 0, cmd
    assert (tmp_path / "a.csv").is_file() and len(list((tmp_path / "syn").glob("*.wav"))) == 1


def test_a_meta_tensor_is_a_value_error(model):
    r = api(f"""
        m = edanet.load_model({str(model)!r})
        meta = torch.empty(16000, device="meta")
        for call in (lambda: edanet.generate(meta, 8000, model=m),
                     lambda: edanet.EDAStream(m, 8000).push(meta)):
            try:
                call()
            except ValueError as e:
                print("ValueError", e)
        """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all("meta" in line and line.startswith("ValueError") for line in lines), r.stdout
