// Norms of float vectors shared by the quantizers that scale by a norm
// (QSGD, natural dithering): vectorised, with results that do not depend on
// which SIMD path runs.
#pragma once

#include <cstddef>

namespace fedsim {

// ||v||_2, accumulated in double (exact squares, fixed summation order).
double l2_norm(const float* v, std::size_t n);
// max |v_i|; NaN if any v_i is NaN.
float max_abs(const float* v, std::size_t n);

}  // namespace fedsim
