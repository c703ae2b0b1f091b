"""A small run of the ``cuda`` backend for NVIDIA's compute-sanitizer (needs a GPU):

    compute-sanitizer --tool memcheck  python benchmarks/cuda_sanitizer.py
    compute-sanitizer --tool racecheck python benchmarks/cuda_sanitizer.py
    compute-sanitizer --tool synccheck python benchmarks/cuda_sanitizer.py
    compute-sanitizer --tool initcheck python benchmarks/cuda_sanitizer.py

It covers both GEMM paths (fp32 FMA, bf16 tensor cores, fp16 FMA on odd channel counts),
the cross-block hand-off (positions split over several blocks), several sequences per block,
weights streamed from global memory, generation, forced steps and teacher forcing, and checks the results
against the float64 reference so a run that "passes" the sanitizer also computed the right
thing. Keep it small: the sanitizers slow kernels down by 10-100x. Exit status 0 = all good.
``--quick`` runs one configuration.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import fastgen  # noqa: E402
from fastgen import reference as ref  # noqa: E402
from fastgen.backends import cuda as cb  # noqa: E402


def spec_of(Cin, F, K, Cr, Ch, Cs, Co, Q, E, dil):
    return fastgen.NetworkSpec(in_channels=Cin, num_features=F, frames_per_step=K, residual_channels=Cr,
                               hidden_channels=Ch, skip_channels=Cs, out_channels=Co, num_classes=Q,
                               cond_classes=Q + 1, cond_channels=E, dilations=tuple(dil), start_class=Q)


ROUND = spec_of(1, 8, 4, 16, 16, 32, 32, 64, 16, (1, 2, 4, 8, 16))
ODD = spec_of(1, 5, 3, 12, 20, 24, 7, 11, 6, (1, 2, 4, 8, 1, 2, 4, 8))

# (name, spec, dtype, batch, steps, engine options)
CASES = [
    ("fp32 fma, 4-way split", ROUND, torch.float32, 1, 6, dict(f_splits=4)),
    ("bf16 mma, 2-way split", ROUND, torch.bfloat16, 2, 6, dict(f_splits=2)),
    ("bf16 mma, 2 seqs/block", ROUND, torch.bfloat16, 3, 5, dict(seqs_per_block=2, f_splits=1)),
    ("fp16 fma odd, uneven split", ODD, torch.float16, 2, 5, dict(f_splits=2, threads=64)),
    ("fp32 streamed weights", ODD, torch.float32, 2, 5, dict(stream=True, f_splits=1)),
]


def run_case(name, spec, dtype, batch, steps, options, seed=0):
    options = dict(options)
    stream = options.pop("stream", False)
    g = torch.Generator().manual_seed(seed)
    w = fastgen.random_weights(spec, seed=seed)
    frames = torch.randn(batch, spec.in_channels, steps * spec.frames_per_step, spec.num_features, generator=g)
    classes = torch.randint(0, spec.num_classes, (batch, steps), generator=g)
    uniforms = torch.rand(batch, steps, generator=g)
    eng = cb.CudaEngine(spec, w, device="cuda", dtype=dtype, **options)
    if stream:  # no weights resident in shared memory
        plan = eng.plan(batch)
        eng = cb.CudaEngine(spec, w, device="cuda", dtype=dtype, _runtime=eng._runtime,
                            _device_limits=(plan.activation_bytes, eng._limits[1]), **options)
    plan = eng.plan(batch)
    logits = eng.teacher_forced(frames, classes)
    samples = eng.generate(frames, uniforms, 1.0)
    # forced steps: the first half of the samples forced, the rest generated on from there
    state, j, K = eng.start(batch), steps // 2, spec.frames_per_step
    eng.force(frames[:, :, :j * K], samples[:, :j], state)
    rest = eng.generate(frames[:, :, j * K:], uniforms[:, j:], 1.0, state=state)
    torch.cuda.synchronize()
    w64 = {k: v.double() for k, v in w.items()}
    want = ref.forward(spec, w64, frames.double(), ref.shift_conditioning(classes, spec.start_class))
    err = ((logits.cpu().double() - want).abs().max() / want.abs().max()).item()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    s = samples.cpu()
    # the forced rings are the sampled ones (the same arithmetic), so the continuation is exact
    continued = torch.equal(rest.cpu(), s[:, j:])
    ok = err <= tol and s.min() >= 0 and s.max() < spec.num_classes and continued
    print(f"{'ok ' if ok else 'BAD'} {name}: grid {plan.grid}, {plan.threads} threads, smem {plan.smem_bytes} B "
          f"(weights resident {plan.core_resident}/{plan.core_bytes} B), logits rel err {err:.2e}, "
          f"forced then generated {'= ' if continued else '!= '}generated", flush=True)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one configuration only")
    args = ap.parse_args(argv)
    reason = cb.unavailable_reason()
    if reason:
        print(f"cuda backend unavailable: {reason}", file=sys.stderr)
        return 2
    cases = CASES[:1] if args.quick else CASES
    ok = all([run_case(*c) for c in cases])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
