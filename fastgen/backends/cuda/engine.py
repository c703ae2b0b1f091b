"""The cuda backend's engine: whether the extension and a GPU are here (and why not), and
``CudaEngine``, which packs once, plans per call, allocates the workspaces and calls
``fastgen._cuda.run``."""
from __future__ import annotations

import torch

from ... import devices
from ...engine import Engine

from .pack import DTYPES, MODE_GENERATE, MODE_TEACHER, pack_weights, select_path
from .plan import LaunchPlan, device_limits, launch_ints, plan_launch, spin_timeout_ms


def unavailable_reason() -> str | None:
    """None when the extension imports and a GPU is visible, else what is missing and how to build."""
    from .. import BUILD_HINT
    try:
        from ... import _cuda  # noqa: F401
    except ImportError as e:
        cuda = torch.version.cuda
        why = ("this torch is a CPU-only build (torch.version.cuda is None), so setup.py skipped it"
               if cuda is None else f"import failed: {e}")
        return (f"the CUDA extension fastgen._cuda is not built ({why}). Build it on a machine with a CUDA "
                f"build of torch and nvcc:\n  {BUILD_HINT}\n(set FASTGEN_BUILD_CUDA=1 to make the build fail "
                "loudly if it cannot compile the CUDA sources)")
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no usable CUDA GPU on this machine"
    return _arch_mismatch(_cuda)


def _arch_mismatch(ext) -> str | None:
    """A reason when the current GPU is older than sm_80 or not covered by the built arch list."""
    try:
        major, minor = torch.cuda.get_device_capability()
    except Exception:  # pragma: no cover - no device to ask
        return None
    if not devices.supported(major, minor):
        return (f"the cuda backend needs compute capability {devices.capability_name(*devices.MIN_CAPABILITY)}+ "
                f"(mma.sync bf16); "
                f"{torch.cuda.get_device_name()} is {major}.{minor}")
    try:
        import json
        archs = json.loads(ext.build_info()).get("arch", "")
    except Exception:
        return None
    if not archs:
        return None
    covered = False
    for a in archs.replace(",", ";").replace(" ", ";").split(";"):
        a = a.strip()
        if not a:
            continue
        plain = a.replace("+PTX", "")
        try:
            amaj, amin = (int(x) for x in plain.rstrip("af").split("."))
        except ValueError:
            return None
        if (amaj, amin) == (major, minor):
            covered = True
        elif amaj == major and amin <= minor and not plain.endswith(("a", "f")):
            covered = True                      # SASS runs on later minors of its major
        elif a.endswith("+PTX") and (amaj, amin) <= (major, minor):
            covered = True                      # JIT-compiled from the PTX
    if not covered:
        return (f"fastgen._cuda was built for TORCH_CUDA_ARCH_LIST={archs!r}, which does not cover this GPU "
                f"(compute capability {major}.{minor}); rebuild with e.g. TORCH_CUDA_ARCH_LIST=\"{major}.{minor}\"")
    return None


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------
class CudaEngine(Engine):
    """Options: ``path`` ("auto" | "mma" | "fma"), overrides of the launch heuristics
    ``threads``, ``f_splits``, ``seqs_per_block``, and ``spin_timeout_s`` (how long a block waits
    for another before it traps; default ``$FASTGEN_CUDA_SPIN_TIMEOUT_S`` or 20 s). ``_runtime``/``_device_limits`` substitute
    the extension and the device's (smem per block, SMs) -- the tests run the kernel in a CPU
    emulator that way."""
    name = "cuda"

    def __init__(self, spec, weights, device="cuda", dtype=torch.float32, path: str = "auto",
                 threads: int | None = None, f_splits: int | None = None, seqs_per_block: int | None = None,
                 spin_timeout_s: float | None = None, _runtime=None, _device_limits: tuple[int, int] | None = None):
        super().__init__(spec, weights, device, dtype)
        self.spin_timeout_ms = spin_timeout_ms(spin_timeout_s)
        if dtype not in DTYPES:
            raise ValueError(f"the cuda backend supports float32, bfloat16 and float16, got {dtype}")
        if _runtime is None:
            if self.device.type != "cuda":
                raise ValueError(f"the cuda backend runs on CUDA devices, got device {self.device}")
            from .. import BackendUnavailable
            reason = unavailable_reason()
            if reason:
                raise BackendUnavailable(reason)
            from ... import _cuda
            _runtime = _cuda
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            major, minor = torch.cuda.get_device_capability(self.device)
            if not devices.supported(major, minor):
                raise BackendUnavailable(f"the cuda backend is built for compute capability "
                                   f"{devices.capability_name(*devices.MIN_CAPABILITY)}+ (sm_80, sm_90); "
                                   f"{torch.cuda.get_device_name(self.device)} is {major}.{minor}")
        self._runtime = _runtime
        self._limits = _device_limits or device_limits(self.device)
        self.path = select_path(spec, dtype, path)
        self.options = {"threads": threads, "f_splits": f_splits, "seqs_per_block": seqs_per_block}
        self.packed = pack_weights(spec, weights, dtype, self.path).to(self.device)
        # fail early (with the sizes) if even one sequence cannot fit
        self.plan(1)

    def plan(self, batch: int) -> LaunchPlan:
        smem, sms = self._limits
        return plan_launch(self.spec, batch, smem, sms, dtype=self.dtype, path=self.path, **self.options)

    def _new_history(self, batch):
        # Slots before a sequence's first frame are never read (the kernel tests the frame
        # index), so the rings need no zeroing.
        return torch.empty(batch * self.plan(1).ring_elems_per_seq, dtype=self.dtype, device=self.device)

    def _run(self, mode: int, frames: torch.Tensor, aux: torch.Tensor, temperature: float,
             state=None) -> torch.Tensor:
        spec, dev = self.spec, self.device
        B = frames.shape[0]
        n = frames.shape[2] // spec.frames_per_step
        if mode == MODE_GENERATE:
            # column 0: the class conditioning the first step; the kernel writes steps to 1..n
            out = torch.empty((B, n + 1), dtype=torch.long, device=dev)
            out[:, 0] = state.classes
        else:
            out = torch.empty((B, n, spec.num_classes), dtype=torch.float32, device=dev)
        if B == 0 or n == 0:
            return out[:, 1:] if mode == MODE_GENERATE else out
        plan = self.plan(B)
        bpl = plan.batch_per_launch
        per_seq = plan.ring_elems_per_seq
        ring = state.history if state is not None else torch.empty(bpl * per_seq, dtype=self.dtype, device=dev)
        step0 = state.steps if state is not None else 0
        partials = torch.empty(plan.partial_floats, dtype=torch.float32, device=dev)
        flags = torch.zeros(plan.flag_count, dtype=torch.int32, device=dev)
        empty_f = torch.empty(0, dtype=torch.float32, device=dev)
        empty_l = torch.empty(0, dtype=torch.long, device=dev)
        aux = aux.contiguous()
        dils = list(spec.dilations)
        pk = self.packed
        for b0 in range(0, B, bpl):
            b1 = min(B, b0 + bpl)
            ints = launch_ints(spec, plan, pk.layout, b1 - b0, n, mode, self.spin_timeout_ms, step0)
            # a state's rings hold every sequence; a fresh teacher-forced call reuses one launch's
            ring_b = ring[b0 * per_seq:b1 * per_seq] if state is not None else ring
            if mode == MODE_GENERATE:
                uniforms, classes, samples, logits = aux[b0:b1], empty_l, out[b0:b1], empty_f
            else:
                uniforms, classes, samples, logits = empty_f, aux[b0:b1], empty_l, out[b0:b1]
            self._runtime.run(ints, dils, float(temperature), pk.core, pk.down, pk.cond_table, frames[b0:b1],
                              uniforms, classes, samples, logits, ring_b, partials, flags)
        return out[:, 1:] if mode == MODE_GENERATE else out

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature, state):
        return self._run(MODE_GENERATE, frames, uniforms, temperature, state)

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        return self._run(MODE_TEACHER, frames, classes, 0.0)
