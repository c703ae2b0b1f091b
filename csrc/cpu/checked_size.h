// Overflow-checked size arithmetic for the fused CPU backend (torch-free, header only).
//
// Sizes come from weight shapes and dilations a user may have downloaded: a product that
// wraps around int64 would size a buffer far smaller than the loop that indexes it. Every
// element count the backend allocates or indexes with is therefore computed here, and a
// wrap-around becomes an error message instead.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace fastgen {
namespace cpu {

// a * b for a, b >= 0; false (out untouched) when a factor is negative or the product overflows.
inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

// a + b for a, b >= 0; false when a term is negative or the sum overflows.
inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

// The product of non-negative factors, or -1 when one is negative or the product overflows.
inline int64_t checked_product(std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (int64_t f : factors)
    if (!checked_mul(r, f, &r)) return -1;
  return r;
}

// x rounded up to a multiple of m (m > 0), or -1 when x is negative or the result overflows.
inline int64_t checked_round_up(int64_t x, int64_t m) {
  int64_t r;
  if (x < 0 || m <= 0 || !checked_add(x, m - 1, &r)) return -1;
  return r / m * m;
}

}  // namespace cpu
}  // namespace fastgen
