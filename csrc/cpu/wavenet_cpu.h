// fastgen fused CPU backend: the whole conditioned-WaveNet generation loop in native code.
//
// Weights are packed once (pack) into a layout made for the microkernels:
//   - every channel count is padded to a multiple of 8 floats (one AVX2 vector; padded
//     weights, biases and therefore activations are zero);
//   - every matrix used as "rows x in @ in x out" is stored in column panels of 16 output
//     channels (the last one 8 wide where the padded count is an odd number of vectors): a
//     panel is (in x 16) contiguous, so the register-blocked kernel streams it linearly;
//   - the dilated conv has its filter and gate channels interleaved per 8-channel group, so
//     one 16-wide panel yields 8 filter and the matching 8 gate pre-activations and the gate
//     is applied in registers; the conditioning (cond_emb @ cond_w^T + cond_b + dil_b) is
//     folded into a per-layer table over classes in the same interleaved order.
// Generation keeps one ring buffer per layer and sequence of (dilation + K) frames.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "cpu/wavenet_kernels.h"

#pragma GCC visibility push(hidden)

namespace fastgen {
namespace cpu {

// Pack the flat weight dict (names and shapes of fastgen.spec.weight_shapes, plus the folded
// cond_table and skip_bias of fastgen.packing.folded) for the engine.
std::shared_ptr<PackedWeights> pack(const std::map<std::string, at::Tensor>& weights,
                                    const std::vector<int64_t>& dilations, double flops_per_step);

// num_threads <= 0: at::get_num_threads(). split: see run_job in wavenet_kernels.h.
// Sample n steps: frames float32 (B, C_in, n*K, F), uniforms float32 (B, n) -> int64 (B, n).
// Continuing a generation: rings (B, ring_stride) float32 updated in place, step0 the absolute
// index of the first step, first_class (B,) int64 the class conditioning it.
at::Tensor generate(const PackedWeights& pw, const at::Tensor& frames, const at::Tensor& uniforms,
                    double temperature, int64_t start_class, int64_t num_threads, int64_t split,
                    const std::optional<at::Tensor>& rings, int64_t step0,
                    const std::optional<at::Tensor>& first_class);

// Forced steps: continue a generation (rings, step0, first_class as for generate, required)
// with the given classes int64 (B, n) instead of sampled ones; rings updated in place, nothing
// output (only the layers run: no skip sums, head, output conv or sampling).
void force(const PackedWeights& pw, const at::Tensor& frames, const at::Tensor& classes, const at::Tensor& rings,
           int64_t step0, const at::Tensor& first_class, int64_t num_threads, int64_t split);

// Logits float32 (B, n, Q) of every step for the class sequence classes int64 (B, n); step j is
// conditioned on classes[:, j-1] (start_class for j = 0).
at::Tensor teacher_forced(const PackedWeights& pw, const at::Tensor& frames, const at::Tensor& classes,
                          int64_t start_class, int64_t num_threads, int64_t split);

}  // namespace cpu
}  // namespace fastgen

#pragma GCC visibility pop
