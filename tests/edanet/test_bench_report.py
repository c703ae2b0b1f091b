"""The benchmark report (``edanet bench`` / ``benchmarks.engines.report``): variant parsing, the floor,
step calibration, a real tiny run on the CPU, the files it writes, and the speed targets check.
Nothing here bounds a time: the run's numbers are checked for consistency with each other."""
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.engines import common, memory, report, targets  # noqa: E402
from edanet.cli import main as cli_main  # noqa: E402

CPU = torch.device("cpu")


def test_variant_parse():
    v = common.Variant.parse("cuda:bf16")
    assert (v.backend, v.dtype, v.cuda_graph, v.label) == ("cuda", torch.bfloat16, False, "cuda")
    g = common.Variant.parse("torch+graph")
    assert (g.backend, g.dtype, g.cuda_graph, g.label) == ("torch", torch.float32, True, "torch+graph")
    assert common.Variant.parse("triton_persistent:fp16").dtype == torch.float16
    o = common.Variant.parse("cuda:bf16@f_splits=10,seqs_per_block=8,path=mma")
    assert o.options == (("f_splits", 10), ("seqs_per_block", 8), ("path", "mma"))
    assert o.label == "cuda@f_splits=10,seqs_per_block=8,path=mma"
    for v in (v, g, o, common.Variant.parse("torch+graph:bf16")):
        assert common.Variant.parse(v.text) == v


def test_variant_options_reach_the_engine():
    spec, weights = common.spec_and_weights("tiny")
    eng = common.Variant.parse("cpu@num_threads=1").create(spec, weights, CPU)
    assert eng.num_threads == 1
    with pytest.raises(TypeError, match="nope"):
        common.Variant.parse("cpu@nope=1").create(spec, weights, CPU)


@pytest.mark.parametrize("text, says", [("cuda:fp64", "unknown dtype 'fp64'"), ("nope", "unknown backend 'nope'"),
                                        ("cpu+graph", "only the torch backend takes +graph"),
                                        ("cpu@threads", "must be written name=value")])
def test_variant_parse_errors(text, says):
    with pytest.raises(ValueError) as e:
        common.Variant.parse(text)
    assert says in str(e.value)


def test_default_variants_on_cpu_are_the_cpu_list_and_available():
    vs = common.default_variants(CPU)
    assert vs and all(v.dtype == torch.float32 and not v.cuda_graph for v in vs)
    available = common.fastgen.available(CPU)
    names = [v.backend + ("+compile" if v.compiled else "") for v in vs]
    assert names == [b for b in common.CPU_VARIANTS if b.removesuffix("+compile") in available]
    assert "torch+compile" in names


def test_floor_is_the_larger_term_and_counts_usable_sms():
    spec, _ = common.spec_and_weights("small")
    flops = spec.flops_per_step() * 2
    traffic = common.bytes_per_step(spec, 2, 2, weights_resident=True)
    # compute-bound: bandwidth huge
    assert common.floor_seconds(spec, 2, torch.bfloat16, 1e12, 1e30) == pytest.approx(flops / 1e12)
    # memory-bound: FLOP peak huge
    assert common.floor_seconds(spec, 2, torch.bfloat16, 1e30, 1e9) == pytest.approx(traffic / 1e9)
    # a GPU with more SMs than batch x F: only batch x F of them count
    F = spec.num_features
    units = 4 * 2 * F
    assert common.floor_seconds(spec, 2, torch.bfloat16, 1e12, 1e30, units) == pytest.approx(4 * flops / 1e12)
    assert common.floor_seconds(spec, 2, torch.bfloat16, 1e12, 1e30, 2 * F) == pytest.approx(flops / 1e12)


def test_calibrated_steps_doubles_until_a_run_is_long_enough(monkeypatch):
    calls = []
    # a fake clock: a run of n steps "takes" n ms
    monkeypatch.setattr(common, "timed", lambda fn, device, repeats=1, warmup=0: (fn(), calls[-1] * 1e-3)[1])
    assert common.calibrated_steps(calls.append, CPU, target_s=0.25) == 256
    assert calls == [32, 32, 64, 128, 256]                                         # warm-up, then doubling
    assert common.calibrated_steps(calls.append, CPU, target_s=1e-6) == 32         # already long enough
    assert common.calibrated_steps(calls.append, CPU, target_s=1e-6, lo=4) == 4
    assert common.calibrated_steps(calls.append, CPU, target_s=1e6) == 4096        # capped
    assert common.calibrated_steps(calls.append, CPU, target_s=1e6, lo=4, hi=16) == 16


def test_peak_matmul_restores_tf32():
    for allowed in (True, False):
        torch.backends.cuda.matmul.allow_tf32 = allowed
        common.peak_matmul_flops(CPU)
        assert torch.backends.cuda.matmul.allow_tf32 is allowed
    torch.backends.cuda.matmul.allow_tf32 = False


def test_speedups_do_not_depend_on_the_order_of_variants():
    rows = [dict(backend="cuda", dtype="bf16", eda_steps_per_s=600.0),
            dict(backend="torch+graph", dtype="bf16", eda_steps_per_s=200.0),
            dict(backend="cuda", dtype="fp32", eda_steps_per_s=300.0),
            dict(backend="torch", dtype="fp32", eda_steps_per_s=50.0),
            dict(backend="triton", dtype="fp32", eda_steps_per_s=100.0)]
    report.add_speedups(rows)
    by = {(r["backend"], r["dtype"]): r for r in rows}
    assert by["cuda", "bf16"]["speedup_vs_torch"] == 12.0 and by["cuda", "bf16"]["speedup_vs_graph"] == 3.0
    assert by["cuda", "fp32"]["speedup_vs_torch"] == 6.0 and by["cuda", "fp32"]["speedup_vs_graph"] is None
    assert by["torch", "fp32"]["speedup_vs_torch"] == 1.0


def test_reference_runs_few_steps_even_when_steps_are_given():
    res = report.run(["tiny"], [2], [common.Variant.parse("reference"), common.Variant.parse("cpu")], steps=64,
                     repeats=1, device=CPU, progress=False)
    assert [(r["backend"], r["steps"]) for r in res["rows"]] == [("reference", report.REFERENCE_STEPS[1]), ("cpu", 64)]


def test_a_failing_variant_is_recorded_and_the_rest_go_on(monkeypatch, tmp_path):
    real = common.Variant.create

    def create(self, spec, weights, device):
        if self.backend == "torch":
            raise RuntimeError("no kernel image for this device")
        return real(self, spec, weights, device)
    monkeypatch.setattr(common.Variant, "create", create)
    saved = []
    res = report.run(["tiny"], [1, 2], [common.Variant.parse("torch"), common.Variant.parse("cpu")], steps=32,
                     repeats=1, device=CPU, progress=False, on_progress=lambda r: saved.append(len(r["rows"])))
    assert [r["backend"] for r in res["rows"]] == ["cpu", "cpu"] and saved == [0, 1, 1, 2]   # after each variant
    assert [(f["batch"], f["backend"]) for f in res["failures"]] == [(1, "torch"), (2, "torch")]
    assert "no kernel image" in res["failures"][0]["error"]
    assert all(r["speedup_vs_torch"] is None for r in res["rows"])
    res["environment"] = common.environment(CPU)
    assert "- tiny batch 1 torch fp32: RuntimeError: no kernel image" in report.markdown(res)


@pytest.fixture(scope="module")
def tiny_result():
    variants = [common.Variant.parse(t) for t in ("torch", "cpu")]
    res = report.run(["tiny"], [1, 3], variants, steps=None, repeats=1, device=CPU, target_s=0.01, progress=False)
    assert not res["failures"]
    res["environment"] = common.environment(CPU)
    return res


def test_run_rows_are_consistent(tiny_result):
    rows = tiny_result["rows"]
    assert [(r["batch"], r["backend"]) for r in rows] == [(1, "torch"), (1, "cpu"), (3, "torch"), (3, "cpu")]
    spec, _ = common.spec_and_weights("tiny")
    peak = tiny_result["peaks"]["matmul_flops"]["fp32"]
    for r in rows:
        assert r["steps"] >= 32 and r["steps"] & (r["steps"] - 1) == 0
        assert r["eda_steps_per_s"] * r["us_per_step"] == pytest.approx(r["batch"] * 1e6)
        assert r["flops_per_step"] == spec.flops_per_step() * r["batch"]
        assert r["fraction_of_peak"] == pytest.approx(r["flops_per_step"] / (r["us_per_step"] * 1e-6) / peak)
        assert r["x_floor"] == pytest.approx(r["us_per_step"] / r["floor_us_per_step"])
        assert r["bytes_per_step"] - r["bytes_per_step_weights_resident"] == common.weight_bytes(spec)
    by = {(r["batch"], r["backend"]): r for r in rows}
    for b in (1, 3):
        assert by[b, "torch"]["speedup_vs_torch"] == pytest.approx(1.0)
        assert by[b, "cpu"]["speedup_vs_torch"] == pytest.approx(
            by[b, "cpu"]["eda_steps_per_s"] / by[b, "torch"]["eda_steps_per_s"])
    assert "targets" not in tiny_result       # CPU runs check no GPU targets
    for r in rows:        # the process's peak RSS holds at least torch itself
        assert r["engine_memory_bytes"] is None or r["engine_memory_bytes"] >= 0
    assert set(tiny_result["largest_batch_that_fits"]["tiny"]) == {"torch:fp32", "cpu:fp32"}


def test_largest_batch_extrapolates_the_measured_growth():
    # 1 MB per sequence on top of 100 MB: 1000 MB hold 900 sequences
    pts = [(1, 101 * 10 ** 6), (3, 103 * 10 ** 6), (16, 116 * 10 ** 6)]
    assert memory.largest_batch(pts, 1000 * 10 ** 6) == 900
    assert memory.largest_batch(pts[:1], 10 ** 9) is None            # one batch: no slope
    assert memory.largest_batch([(1, 5), (4, 5)], 10 ** 9) is None   # no growth with batch
    assert memory.largest_batch([(1, 10), (2, 20)], 5) == 0           # already over


def test_engine_memory_grows_with_the_history_buffers():
    if not memory._reset_rss_peak():
        pytest.skip("this kernel cannot reset the peak resident set (/proc/self/clear_refs)")
    spec, _ = common.spec_and_weights("base")
    one, many = (memory.engine_bytes("cpu:fp32", "base", b, CPU) for b in (1, 16))
    grown = common.history_bytes(spec, 16) - common.history_bytes(spec, 1)     # 85 MiB
    assert many - one >= 0.9 * grown


def test_write_makes_json_md_png_atomically(tiny_result, tmp_path):
    stem = report.write(tiny_result, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(stem.name + s for s in (".json", ".md", ".png"))
    back = json.loads(stem.with_suffix(".json").read_text())
    assert back["rows"] == tiny_result["rows"]
    md = stem.with_suffix(".md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| tiny |")]
    assert len(table) == len(tiny_result["rows"])
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_redraws_a_saved_result(tiny_result, tmp_path):
    stem = report.write(tiny_result, tmp_path)
    stem.with_suffix(".md").unlink()
    stem.with_suffix(".png").unlink()
    assert report.main(["--render", str(stem.with_suffix(".json"))]) == 0
    assert stem.with_suffix(".md").read_text() == report.markdown(tiny_result)
    assert stem.with_suffix(".png").exists()


def _row(preset, batch, backend, dtype, rate, frac=0.0, x_floor=10.0):
    return dict(preset=preset, batch=batch, backend=backend, dtype=dtype, eda_steps_per_s=rate,
                fraction_of_peak=frac, x_floor=x_floor)


def _check(checks, target_start):
    [c] = [c for c in checks if c["target"].startswith(target_start)]
    return c


def test_targets_met_missed_and_not_measured():
    rows = [_row("small", 1, "torch+graph", "bf16", 100.0), _row("small", 1, "triton_persistent", "bf16", 310.0),
            _row("small", 1, "triton", "bf16", 350.0), _row("small", 1, "cuda", "bf16", 500.0, x_floor=2.5),
            _row("small", 1, "torch+graph", "fp32", 100.0), _row("small", 1, "triton_persistent", "fp32", 290.0),
            _row("small", 256, "triton", "bf16", 1.0, frac=0.41), _row("small", 256, "cuda", "bf16", 1.0, frac=0.49),
            _row("small", 256, "cuda", "fp32", 1.0, frac=0.90)]   # fp32 does not count for a tensor-core target
    checks = targets.evaluate({"rows": rows})
    assert _check(checks, "batch 1, bf16: triton_persistent")["met"] is True
    assert _check(checks, "batch 1, fp32: triton_persistent")["met"] is False      # 2.9x < 3x
    best = _check(checks, "batch 1, bf16: cuda >= 1.5x")
    assert best["met"] is False and best["measured"] == "1.43x triton"              # 500/350: the faster Triton
    assert _check(checks, "batch 1, fp32: cuda >= 1.5x")["met"] is None            # no fp32 cuda row
    assert _check(checks, "batch 1, bf16: cuda within 3x")["met"] is True
    assert _check(checks, "batch 256: Triton")["met"] is True
    assert _check(checks, "batch 256: cuda")["met"] is False
    md = targets.markdown(checks)
    assert md.count("not measured") == sum(c["met"] is None for c in checks) and "**no**" in md


def test_gpu_markdown_has_graph_column_and_targets(tiny_result):
    # the tiny CPU run relabelled as a GPU run: torch -> torch+graph bf16, cpu -> triton_persistent bf16
    res = json.loads(json.dumps(tiny_result))
    res["environment"]["device_type"] = "cuda"
    res["peaks"]["matmul_flops"]["bf16"] = res["peaks"]["matmul_flops"]["fp32"]
    for r in res["rows"]:
        r.update(backend={"torch": "torch+graph", "cpu": "triton_persistent"}[r["backend"]], dtype="bf16")
    for b in (1, 3):
        report.add_speedups([r for r in res["rows"] if r["batch"] == b])
    res["targets"] = targets.evaluate(res)
    md = report.markdown(res)
    assert "| vs graph |" in md and "| engine MiB |" in md and "Speed targets of the Triton and CUDA backends" in md
    graph, pers = (r for r in res["rows"] if r["batch"] == 1)
    ratio = pers["eda_steps_per_s"] / graph["eda_steps_per_s"]
    assert pers["speedup_vs_graph"] == pytest.approx(ratio) and f"| {ratio:.1f}x |" in md
    [line] = [ln for ln in md.splitlines() if "batch 1, bf16: triton_persistent" in ln]
    assert line.endswith("| yes |" if ratio >= 3 else "| **no** |") and f"{ratio:.2f}x torch+graph" in line


def test_cli_bench_help_is_the_report_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--help"])
    assert e.value.code == 0 and "--variants" in capsys.readouterr().out


def test_cli_bench_rejects_a_bad_variant(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--variants", "cuda:fp64"])
    assert "unknown dtype 'fp64'" in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_bench_says_when_there_is_no_gpu():
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--device", "cuda"])
    assert "no CUDA GPU" in str(e.value)


def test_cuda_plan_model_follows_the_kernel():
    import re

    from benchmarks import cuda_plans
    from fastgen.backends import cuda as cb
    src = "".join((ROOT / "csrc" / "cuda" / f).read_text() for f in ("kernel.cuh", "block_ops.cuh"))
    consts = {k: int(v) for k, v in re.findall(r"constexpr int (FG_\w+) = (\d+);", src)}
    assert (consts["FG_MTW"], consts["FG_TM"], consts["FG_SMAX"]) == (cuda_plans.MTW, cuda_plans.TM, cuda_plans.SMAX)
    spec, _ = common.spec_and_weights("small")
    # everything resident: nothing streams
    p = cb.plan_launch(spec, 1, 227 * 1024, 132, dtype=torch.bfloat16)
    assert p.core_resident == p.core_bytes and p.down_resident and cuda_plans.weight_reads_per_step(spec, p) == (0, 0)
    # nothing resident: every GEMM weight once per 4 m-tiles (64 rows), down_w once per 4 sequences
    full = cb.plan_launch(spec, 5, 10 ** 6, 8, dtype=torch.bfloat16, f_splits=1, seqs_per_block=5)
    p = cb.plan_launch(spec, 5, full.activation_bytes, 8, dtype=torch.bfloat16, f_splits=1, seqs_per_block=5)
    assert p.core_resident == 0 and not p.down_resident
    Cr, Ch, Cs, Co, Q = (spec.residual_channels, spec.hidden_channels, spec.skip_channels, spec.out_channels,
                         spec.num_classes)
    gemm = 2 * (Co * Cs + Co * Co + spec.num_layers * (4 * Ch * Cr + (Cs + Cr) * Ch))
    rows = 5 * spec.frames_per_step * spec.num_features                                 # 160: 3 warp blocks
    down = 2 * spec.num_features * spec.frames_per_step * Co * Q
    assert cuda_plans.weight_reads_per_step(spec, p) == (gemm * -(-rows // 64), down * 2)


# -- presets with config overrides: the ablation of Q (base with 16 classes against 256) --------
def test_preset_overrides_change_the_config():
    assert common.parse_preset("base") == ("base", {})
    assert common.parse_preset("base@quantization_bins=16,context_size_in_seconds=2.5") == (
        "base", {"quantization_bins": 16, "context_size_in_seconds": 2.5})
    spec, _ = common.spec_and_weights("base@quantization_bins=16")
    full, _ = common.spec_and_weights("base")
    assert (spec.num_classes, full.num_classes) == (16, 256)
    # only Q and what depends on it differ
    assert spec.to_dict() | {"num_classes": 256, "cond_classes": full.cond_classes,
                             "start_class": full.start_class} == full.to_dict()
    with pytest.raises(ValueError, match="nope"):
        common.config_of("base@nope=3")
    with pytest.raises(ValueError, match="name=value"):
        common.parse_preset("base@quantization_bins")


def test_an_override_runs_each_batch_right_after_its_base_preset():
    q16 = "base@quantization_bins=16"
    assert report.case_order(["small", "base", q16], [1, 256]) == [
        ("small", 1), ("small", 256), ("base", 1), (q16, 1), ("base", 256), (q16, 256)]
    assert report.case_order([q16, "base"], [1, 2]) == [("base", 1), (q16, 1), ("base", 2), (q16, 2)]
    assert report.case_order([q16], [1, 2]) == [(q16, 1), (q16, 2)]      # no base preset: on its own


def test_override_deltas_compare_same_batch_backend_and_dtype():
    rows = [dict(preset="base", batch=1, backend="cuda", dtype="bf16", us_per_step=100.0),
            dict(preset="base@quantization_bins=16", batch=1, backend="cuda", dtype="bf16", us_per_step=75.0),
            dict(preset="base@quantization_bins=16", batch=1, backend="cuda", dtype="fp32", us_per_step=80.0)]
    [d] = report.override_deltas(rows)                                     # no fp32 base row: no pair
    assert (d["base_preset"], d["dtype"], d["saved_fraction"]) == ("base", "bf16", pytest.approx(0.25))


def test_ablation_run_on_the_cpu(tmp_path):
    # the device check's ablation, tiny: tiny (Q = 16) against tiny with Q = 4, on the cpu backend
    low = "tiny@quantization_bins=4"
    assert report.main(["--device", "cpu", "--presets", "tiny", low, "--batches", "1", "2", "--variants", "cpu",
                        "--steps", "32", "--repeats", "1", "--out", str(tmp_path), "--no-plot", "--quiet"]) == 0
    [js] = tmp_path.glob("*.json")
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".md"]       # --no-plot
    res = json.loads(js.read_text())
    assert [(r["preset"], r["batch"]) for r in res["rows"]] == [("tiny", 1), (low, 1), ("tiny", 2), (low, 2)]
    by = {(r["preset"], r["batch"]): r for r in res["rows"]}
    assert by[low, 1]["flops_per_step"] < by["tiny", 1]["flops_per_step"]       # the downsampling shrank
    deltas = res["override_deltas"]
    assert [(d["preset"], d["batch"]) for d in deltas] == [(low, 1), (low, 2)]
    for d in deltas:
        assert d["saved_fraction"] == pytest.approx(1 - by[low, d["batch"]]["us_per_step"] / by["tiny", d["batch"]]
                                                    ["us_per_step"])
    md = js.with_suffix(".md").read_text()
    assert "Preset overrides against their base preset" in md
    assert sum(ln.startswith(f"| {low} |") for ln in md.splitlines()) == 4       # 2 rows + 2 comparisons


def test_targets_leave_out_presets_with_overrides():
    rows = [_row("base@quantization_bins=16", 1, "cuda", "bf16", 1.0), _row("base", 1, "cuda", "bf16", 1.0)]
    assert {c["preset"] for c in targets.evaluate({"rows": rows})} == {"base"}


def test_cli_bench_rejects_a_bad_preset():
    with pytest.raises(SystemExit) as e:
        report.main(["--device", "cpu", "--presets", "base@nope=1"])
    assert "nope" in str(e.value)
