"""The cuda backend's engine: whether the extension and a GPU are here (and why not), and
``CudaEngine``, which packs once, plans per call and calls the ops (``ops.py``) once per launch."""
from __future__ import annotations

import torch

from ... import devices
from ...engine import Engine

from . import ops
from .pack import DTYPES, pack_weights, select_path
from .plan import LaunchPlan, device_limits, op_ints, plan_launch, spin_timeout_ms


def unavailable_reason() -> str | None:
    """None when the extension imports (registering the ops' CUDA kernels) and a GPU is visible,
    else what is missing and how to build."""
    from .. import BUILD_HINT
    try:
        from ... import _cuda
    except ImportError as e:
        cuda = torch.version.cuda
        why = ("this torch is a CPU-only build (torch.version.cuda is None), so setup.py skipped it"
               if cuda is None else f"import failed: {e}")
        return (f"the CUDA extension fastgen._cuda is not built ({why}). Build it on a machine with a CUDA "
                f"build of torch and nvcc:\n  {BUILD_HINT}\n(set FASTGEN_BUILD_CUDA=1 to make the build fail "
                "loudly if it cannot compile the CUDA sources)")
    if not ops.registered():
        return (f"the ops torch.ops.fastgen.{', '.join(ops.OPS)} are not registered: fastgen._C, which "
                f"declares them, is not built or out of date; rebuild with  {BUILD_HINT}")
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no usable CUDA GPU on this machine"
    return arch_mismatch(_cuda)


def arch_mismatch(ext) -> str | None:
    """Why the built extension ``ext`` (its ``build_info()``) cannot run on the current GPU: older
    than sm_80, or not covered by the architectures it was built for. None when it can (or when
    that cannot be told)."""
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
    for another before it traps; default ``$FASTGEN_CUDA_SPIN_TIMEOUT_S`` or 20 s). ``_runtime``
    substitutes the ops (an object with ``cuda_generate`` and ``cuda_teacher_forced`` taking their
    arguments; default ``torch.ops.fastgen``), ``_device_limits`` the device's (smem per block,
    SMs) -- the tests run the kernel in a CPU emulator that way (with ``cuda_force`` too)."""
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
            _runtime = torch.ops.fastgen
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

    def _launches(self, batch: int):
        """The launches of a call on ``batch`` sequences: (first, end) sequence of each, the ops'
        integers, and the ring elements per sequence."""
        plan = self.plan(batch)
        ints = op_ints(self.spec, plan, self.packed.layout, self.spin_timeout_ms)
        step = plan.batch_per_launch
        return [(b0, min(batch, b0 + step)) for b0 in range(0, batch, step)], ints, plan.ring_elems_per_seq

    @torch.no_grad()
    def _generate(self, frames, uniforms, temperature, state):
        B, n = frames.shape[0], frames.shape[2] // self.spec.frames_per_step
        if B == 0 or n == 0:
            return torch.empty((B, n), dtype=torch.long, device=self.device)
        launches, ints, per_seq = self._launches(B)
        pk, dils, uniforms = self.packed, list(self.spec.dilations), uniforms.contiguous()
        # each launch continues its sequences' rings, in place in the state's
        out = [self._runtime.cuda_generate(pk.core, pk.down, pk.cond_table, frames[b0:b1], uniforms[b0:b1],
                                           state.classes[b0:b1], state.history[b0 * per_seq:b1 * per_seq],
                                           float(temperature), state.steps, dils, **ints)
               for b0, b1 in launches]
        return out[0] if len(out) == 1 else torch.cat(out)

    @torch.no_grad()
    def _force(self, frames, classes, state):
        # the kernel in forced mode: the layers only (no skip sums, head, downsampling, sampling)
        launches, ints, per_seq = self._launches(frames.shape[0])
        pk, dils, classes = self.packed, list(self.spec.dilations), classes.contiguous()
        for b0, b1 in launches:
            self._runtime.cuda_force(pk.core, pk.down, pk.cond_table, frames[b0:b1], classes[b0:b1],
                                     state.classes[b0:b1], state.history[b0 * per_seq:b1 * per_seq], state.steps,
                                     dils, **ints)

    @torch.no_grad()
    def _teacher_forced(self, frames, classes):
        B, n = frames.shape[0], frames.shape[2] // self.spec.frames_per_step
        if B == 0 or n == 0:
            return torch.empty((B, n, self.spec.num_classes), dtype=torch.float32, device=self.device)
        launches, ints, _ = self._launches(B)
        pk, dils, classes = self.packed, list(self.spec.dilations), classes.contiguous()
        out = [self._runtime.cuda_teacher_forced(pk.core, pk.down, pk.cond_table, frames[b0:b1], classes[b0:b1],
                                                 dils, **ints)
               for b0, b1 in launches]
        return out[0] if len(out) == 1 else torch.cat(out)
