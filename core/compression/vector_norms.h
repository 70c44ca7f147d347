// Norms of float vectors shared by the quantizers that scale by a norm
// (QSGD, natural dithering): vectorised, with results that do not depend on
// which SIMD path runs.
#pragma once

#include <cstddef>

#include "core/base/simd.h"

namespace fedsim {

class BitReader;

// ||v||_2, accumulated in double (exact squares, fixed summation order).
double l2_norm(const float* v, std::size_t n);
// max |v_i|; NaN if any v_i is NaN.
float max_abs(const float* v, std::size_t n);
// The same on the variant for `isa` (a narrower one if the CPU lacks it), to
// test that every variant gives the same result. The above use
// simd::best_isa().
double l2_norm(const float* v, std::size_t n, simd::Isa isa);
float max_abs(const float* v, std::size_t n, simd::Isa isa);

// The per-bucket header of those quantizers, one float32 norm. The encoder's
// side: the L2 or max norm of the bucket; std::invalid_argument
// "<scheme>: non-finite input or norm overflow" when it is not finite.
float bucket_norm(bool l2, const float* v, std::size_t n, const char* scheme);
// The decoder's side: reads the norm and rejects (DecodeError) anything but a
// finite value >= 0.
float read_bucket_norm(BitReader& r, const char* scheme);

}  // namespace fedsim
