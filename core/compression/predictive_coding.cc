#include "core/compression/predictive_coding.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <utility>

#include "core/coding/arithmetic_coder.h"
#include "core/base/errors.h"
#include "core/base/simd.h"

namespace fedsim {

namespace {

constexpr int kMinBits = 2;
constexpr int kMaxBits = 12;  // alphabet 2^12 - 1 <= AdaptiveModel::kMaxSize
static_assert((1u << kMaxBits) - 1 <= AdaptiveModel::kMaxSize);

int bits_for(std::size_t count) { return count <= 1 ? 0 : std::bit_width(count - 1); }

std::int32_t levels(int bits) { return (std::int32_t{1} << (bits - 1)) - 1; }

// Symbols: q > 0 -> 2q - 1, q <= 0 -> -2q (a zigzag map of -q).
std::int32_t from_symbol(std::uint32_t s) {
  return (s & 1) ? static_cast<std::int32_t>((s + 1) / 2) : -static_cast<std::int32_t>(s / 2);
}

// r = x - prediction; returns max_i |r_i|. The maximum does not depend on the
// order when r holds no NaN (in encode() it holds one only if x does, which
// ||x||^2 reports; a NaN is skipped by every lane, as by std::max(m, NaN)),
// so eight running maxima in one vector.
[[gnu::always_inline]] inline float residual_and_max_abs_impl(const float* x, const float* prediction, float* r,
                                                              std::size_t n) {
  using simd::f32x8;
  using u32x8 = simd::u32x8;
  f32x8 lane_max{};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    f32x8 xv, pv;
    std::memcpy(&xv, x + i, sizeof xv);
    std::memcpy(&pv, prediction + i, sizeof pv);
    const f32x8 rv = xv - pv;
    std::memcpy(r + i, &rv, sizeof rv);
    const f32x8 abs = (f32x8)((u32x8)rv & 0x7FFFFFFFu);
    lane_max = lane_max < abs ? abs : lane_max;  // std::max(lane_max, abs)
  }
  float max_abs = 0.0f;
  for (std::size_t k = 0; k < 8; ++k) max_abs = std::max(max_abs, lane_max[k]);
  for (; i < n; ++i) {
    r[i] = x[i] - prediction[i];
    max_abs = std::max(max_abs, std::fabs(r[i]));
  }
  return max_abs;
}
FEDSIM_TARGET_AVX2 float residual_and_max_abs_avx2(const float* x, const float* prediction, float* r, std::size_t n) {
  return residual_and_max_abs_impl(x, prediction, r, n);
}
float residual_and_max_abs_baseline(const float* x, const float* prediction, float* r, std::size_t n) {
  return residual_and_max_abs_impl(x, prediction, r, n);
}
float residual_and_max_abs(std::span<const float> x, std::span<const float> prediction, std::span<float> r) {
  static const auto kernel = simd::pick(simd::best_isa(), residual_and_max_abs_avx2, residual_and_max_abs_avx2,
                                        residual_and_max_abs_baseline);
  return kernel(x.data(), prediction.data(), r.data(), r.size());
}

// ||x - p||^2 of the five predictors (PredictiveCoder::residual_energies):
// the predictions formed with predict()'s operations, each sum over the
// coordinates in order. Four of the sums run as the lanes of one f64x4 (lane
// k gets the same operations in the same order as its scalar loop would), so
// that their dependency chains advance together.
struct EnergySums {
  std::array<double, 4> zero_last_mean_linear;
  double lms;
};
[[gnu::always_inline]] inline EnergySums residual_energies_impl(const float* x, const float* p1, const float* p2,
                                                                const float* mean, std::size_t n,
                                                                bool linear_is_last, double w1, double w2) {
  using simd::f64x4;
  f64x4 sums{};
  double lms = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double xi = x[i];
    const float twice = 2.0f * p1[i];
    const float linear_p = linear_is_last ? p1[i] : twice - p2[i];
    const double a = w1 * p1[i];
    const double b = w2 * p2[i];
    const float lms_p = static_cast<float>(a + b);
    const f64x4 r = xi - f64x4{0.0, p1[i], mean[i], linear_p};  // xi - 0.0 == xi
    sums += r * r;
    const double r_lms = xi - static_cast<double>(lms_p);
    lms += r_lms * r_lms;
  }
  return {{sums[0], sums[1], sums[2], sums[3]}, lms};
}
FEDSIM_TARGET_AVX2 EnergySums residual_energies_avx2(const float* x, const float* p1, const float* p2,
                                                     const float* mean, std::size_t n, bool linear_is_last, double w1,
                                                     double w2) {
  return residual_energies_impl(x, p1, p2, mean, n, linear_is_last, w1, w2);
}
EnergySums residual_energies_baseline(const float* x, const float* p1, const float* p2, const float* mean,
                                      std::size_t n, bool linear_is_last, double w1, double w2) {
  return residual_energies_impl(x, p1, p2, mean, n, linear_is_last, w1, w2);
}

// What step 2 of encode() needs from one candidate quantizer.
struct QuantizerTerms {
  double step = 0.0;
  double levels = 0.0;       // L
  double* counts = nullptr;  // 2L + 2 entries: the last one absorbs the p = 0 terms at q = L
  double variance = 0.0;     // sum_i p_i (1 - p_i), in units of step^2
};

// Coordinates per block of accumulate_terms(): the per-quantizer block
// buffers of up to 11 quantizers stay in L1.
constexpr std::size_t kBlock = 64;

// Per coordinate of a block, for one quantizer: y = clamp(r / step, -L, L),
// lo = floor(y), p = y - lo, and the two symbols whose counts step 2 adds to:
// symbol(lo) gets 1 - p, symbol(lo + 1) gets p. `count` is a
// multiple of 4. floor is trunc minus 1 where trunc > y (exact: |y| <= 2047);
// it gives lo = +0 for y = -0, where std::floor gives -0, and so p = -0
// instead of +0, which adds nothing to any sum either.
[[gnu::always_inline]] inline void stochastic_terms_impl(const float* r, std::size_t count, double step, double levels,
                                                         std::uint32_t* low_symbol, std::uint32_t* high_symbol,
                                                         double* p) {
  using simd::f64x4;
  using i32x4 = std::int32_t __attribute__((vector_size(16)));
  using f32x4 = float __attribute__((vector_size(16)));
  using i64x4 = std::int64_t __attribute__((vector_size(32)));
  const f64x4 s = f64x4{} + step;
  const f64x4 hi = f64x4{} + levels;
  const f64x4 lo_bound = -hi;
  const i64x4 one_bits = i64x4{} + std::bit_cast<std::int64_t>(1.0);
  for (std::size_t i = 0; i < count; i += 4) {
    f32x4 rf;
    std::memcpy(&rf, r + i, sizeof rf);
    f64x4 y = __builtin_convertvector(rf, f64x4) / s;
    y = y < lo_bound ? lo_bound : y;  // std::clamp
    y = hi < y ? hi : y;
    const f64x4 trunc = __builtin_convertvector(__builtin_convertvector(y, i32x4), f64x4);
    const f64x4 lo = trunc - (f64x4)((i64x4)(trunc > y) & one_bits);
    const f64x4 frac = y - lo;
    const i32x4 m = -__builtin_convertvector(lo, i32x4);  // symbol(q) = zigzag(-q)
    const i32x4 low = (m << 1) ^ (m >> 31);
    const i32x4 m1 = m - 1;
    const i32x4 high = (m1 << 1) ^ (m1 >> 31);
    std::memcpy(low_symbol + i, &low, sizeof low);
    std::memcpy(high_symbol + i, &high, sizeof high);
    std::memcpy(p + i, &frac, sizeof frac);
  }
}
FEDSIM_TARGET_AVX2 void stochastic_terms_avx2(const float* r, std::size_t count, double step, double levels,
                                              std::uint32_t* low_symbol, std::uint32_t* high_symbol, double* p) {
  stochastic_terms_impl(r, count, step, levels, low_symbol, high_symbol, p);
}
void stochastic_terms_baseline(const float* r, std::size_t count, double step, double levels,
                               std::uint32_t* low_symbol, std::uint32_t* high_symbol, double* p) {
  stochastic_terms_impl(r, count, step, levels, low_symbol, high_symbol, p);
}

struct TermsBlock {
  alignas(32) std::uint32_t low[kBlock];
  alignas(32) std::uint32_t high[kBlock];
  alignas(32) double p[kBlock];
};

// The sums of one block for N quantizers together (N known at compile time,
// so that the variances stay in registers).
template <std::size_t N>
void add_block(const TermsBlock* blocks, std::size_t count, std::span<QuantizerTerms> terms) {
  std::array<double*, N> counts;
  std::array<double, N> variance;
  for (std::size_t t = 0; t < N; ++t) counts[t] = terms[t].counts, variance[t] = terms[t].variance;
  for (std::size_t i = 0; i < count; ++i) {
#pragma GCC unroll 16
    for (std::size_t t = 0; t < N; ++t) {
      const double p = blocks[t].p[i];
      const double keep = 1.0 - p;
      counts[t][blocks[t].low[i]] += keep;
      counts[t][blocks[t].high[i]] += p;
      variance[t] += p * keep;
    }
  }
  for (std::size_t t = 0; t < N; ++t) terms[t].variance = variance[t];
}

template <std::size_t... N>
void add_block_for(std::index_sequence<N...>, const TermsBlock* blocks, std::size_t count,
                   std::span<QuantizerTerms> terms) {
  using Fn = void (*)(const TermsBlock*, std::size_t, std::span<QuantizerTerms>);
  static constexpr Fn kTable[] = {&add_block<N + 1>...};
  kTable[terms.size() - 1](blocks, count, terms);
}

// add_block() for one quantizer alone with L = 1 or 3 (kVectors = 1 or 2), as
// in encode()'s first exact pass: its 2L + 2 counts in kVectors f64x4
// registers, lane s = count s. Nearly every coordinate hits the count of
// level 0, so in memory each add would wait for the previous one's store.
// A coordinate adds keep to lane `low`, p to lane `high` (low != high) and
// +0.0 to the other lanes; counts are sums of terms >= +0 from +0, never -0,
// and c + (+0.0) == c for such c, so every lane receives the values the count
// in memory would, in the same order: the same sums.
template <std::size_t kVectors>
[[gnu::always_inline]] inline void add_block_in_registers_impl(const TermsBlock& block, std::size_t count,
                                                               QuantizerTerms& terms) {
  using simd::f64x4;
  using i64x4 = std::int64_t __attribute__((vector_size(32)));
  std::array<f64x4, kVectors> counts;
  std::array<i64x4, kVectors> lanes;
  for (std::size_t v = 0; v < kVectors; ++v) {
    std::memcpy(&counts[v], terms.counts + 4 * v, sizeof counts[v]);
    const auto first = static_cast<std::int64_t>(4 * v);
    lanes[v] = i64x4{first, first + 1, first + 2, first + 3};
  }
  double variance = terms.variance;
  for (std::size_t i = 0; i < count; ++i) {
    const double p = block.p[i];
    const double keep = 1.0 - p;
    const i64x4 keep_bits = (i64x4)(f64x4{} + keep);
    const i64x4 p_bits = (i64x4)(f64x4{} + p);
    const auto low = static_cast<std::int64_t>(block.low[i]);
    const auto high = static_cast<std::int64_t>(block.high[i]);
    for (std::size_t v = 0; v < kVectors; ++v)
      counts[v] += (f64x4)((keep_bits & (lanes[v] == low)) | (p_bits & (lanes[v] == high)));
    variance += p * keep;
  }
  for (std::size_t v = 0; v < kVectors; ++v) std::memcpy(terms.counts + 4 * v, &counts[v], sizeof counts[v]);
  terms.variance = variance;
}
template <std::size_t kVectors>
FEDSIM_TARGET_AVX2 void add_block_in_registers_avx2(const TermsBlock& block, std::size_t count, QuantizerTerms& terms) {
  add_block_in_registers_impl<kVectors>(block, count, terms);
}
template <std::size_t kVectors>
void add_block_in_registers_baseline(const TermsBlock& block, std::size_t count, QuantizerTerms& terms) {
  add_block_in_registers_impl<kVectors>(block, count, terms);
}

// Step 3 on a block: q = floor(y) + (u < y - floor(y)) with y as above, its
// symbol, and the reconstruction prediction + q * step, formed as
// reconstruct() forms it. `count` is a multiple of 4.
[[gnu::always_inline]] inline void stochastic_round_impl(const float* r, const float* prediction, const float* u,
                                                         std::size_t count, float step, double levels,
                                                         std::uint32_t* symbols, float* recon) {
  using simd::f64x4;
  using i32x4 = std::int32_t __attribute__((vector_size(16)));
  using f32x4 = float __attribute__((vector_size(16)));
  using i64x4 = std::int64_t __attribute__((vector_size(32)));
  const f64x4 s = f64x4{} + static_cast<double>(step);
  const f64x4 hi = f64x4{} + levels;
  const f64x4 lo_bound = -hi;
  const i64x4 one_bits = i64x4{} + std::bit_cast<std::int64_t>(1.0);
  for (std::size_t i = 0; i < count; i += 4) {
    f32x4 rf, pf, uf;
    std::memcpy(&rf, r + i, sizeof rf);
    std::memcpy(&pf, prediction + i, sizeof pf);
    std::memcpy(&uf, u + i, sizeof uf);
    f64x4 y = __builtin_convertvector(rf, f64x4) / s;
    y = y < lo_bound ? lo_bound : y;
    y = hi < y ? hi : y;
    const f64x4 trunc = __builtin_convertvector(__builtin_convertvector(y, i32x4), f64x4);
    const f64x4 lo = trunc - (f64x4)((i64x4)(trunc > y) & one_bits);
    const f64x4 up = (f64x4)((i64x4)(__builtin_convertvector(uf, f64x4) < y - lo) & one_bits);
    const i32x4 q = __builtin_convertvector(lo + up, i32x4);
    const i32x4 m = -q;
    const i32x4 symbol = (m << 1) ^ (m >> 31);
    const f32x4 delta = __builtin_convertvector(q, f32x4) * step;
    const f32x4 value = pf + delta;
    std::memcpy(symbols + i, &symbol, sizeof symbol);
    std::memcpy(recon + i, &value, sizeof value);
  }
}
FEDSIM_TARGET_AVX2 void stochastic_round_avx2(const float* r, const float* prediction, const float* u,
                                              std::size_t count, float step, double levels, std::uint32_t* symbols,
                                              float* recon) {
  stochastic_round_impl(r, prediction, u, count, step, levels, symbols, recon);
}
void stochastic_round_baseline(const float* r, const float* prediction, const float* u, std::size_t count, float step,
                               double levels, std::uint32_t* symbols, float* recon) {
  stochastic_round_impl(r, prediction, u, count, step, levels, symbols, recon);
}

// Any block of up to kBlock coordinates (a partial group of 4 on a padded copy).
void stochastic_round(std::span<const float> r, std::span<const float> prediction, const float* u, float step,
                      double levels, std::uint32_t* symbols, std::span<float> recon) {
  static const auto kernel =
      simd::pick(simd::best_isa(), stochastic_round_avx2, stochastic_round_avx2, stochastic_round_baseline);
  const std::size_t count = r.size();
  const std::size_t full = count - count % 4;
  kernel(r.data(), prediction.data(), u, full, step, levels, symbols, recon.data());
  if (full == count) return;
  alignas(16) float r_pad[4] = {}, p_pad[4] = {}, u_pad[4] = {}, recon_pad[4];
  std::memcpy(r_pad, r.data() + full, (count - full) * sizeof(float));
  std::memcpy(p_pad, prediction.data() + full, (count - full) * sizeof(float));
  std::memcpy(u_pad, u + full, (count - full) * sizeof(float));
  kernel(r_pad, p_pad, u_pad, 4, step, levels, symbols + full, recon_pad);
  std::memcpy(recon.data() + full, recon_pad, (count - full) * sizeof(float));
}

// Expected symbol counts and stochastic-rounding variance of every candidate
// quantizer. Each sum receives the same terms in coordinate order as the
// direct loop
//   y = clamp(r_i / step, -L, L); lo = floor(y); p = y - lo;
//   counts[symbol(lo)] += 1 - p; if (p > 0) counts[symbol(lo + 1)] += p;
//   variance += p * (1 - p);
// one quantizer at a time would, so every result is bit-identical to that
// loop's (adding the p = 0 terms the loop skips adds +0.0 or -0.0 to a sum of
// non-negative terms, which changes nothing). The element-wise part runs
// vectorised per block; the sums then run for all quantizers together, so
// that their dependency chains (a count hit by consecutive coordinates)
// overlap.
void accumulate_terms(std::span<const float> residual, std::span<QuantizerTerms> terms) {
  static const auto kernel =
      simd::pick(simd::best_isa(), stochastic_terms_avx2, stochastic_terms_avx2, stochastic_terms_baseline);
  constexpr std::size_t kMaxTerms = kMaxBits - kMinBits + 1;
  static_assert(kBlock % 4 == 0);
  if (terms.empty()) return;
  std::vector<TermsBlock> blocks(terms.size());
  // One quantizer with L = 1 or 3: its counts in registers (add_block_in_registers_impl()).
  using InRegistersFn = void (*)(const TermsBlock&, std::size_t, QuantizerTerms&);
  static const InRegistersFn kInRegisters1 =
      simd::pick(simd::best_isa(), add_block_in_registers_avx2<1>, add_block_in_registers_avx2<1>,
                 add_block_in_registers_baseline<1>);
  static const InRegistersFn kInRegisters2 =
      simd::pick(simd::best_isa(), add_block_in_registers_avx2<2>, add_block_in_registers_avx2<2>,
                 add_block_in_registers_baseline<2>);
  InRegistersFn single_in_registers = nullptr;
  if (terms.size() == 1 && terms[0].levels == 1.0) single_in_registers = kInRegisters1;
  if (terms.size() == 1 && terms[0].levels == 3.0) single_in_registers = kInRegisters2;
  alignas(32) float padded[kBlock] = {};
  for (std::size_t start = 0; start < residual.size(); start += kBlock) {
    const std::size_t count = std::min(kBlock, residual.size() - start);
    const float* r = residual.data() + start;
    if (count % 4 != 0) {
      std::memcpy(padded, r, count * sizeof(float));
      r = padded;
    }
    const std::size_t rounded = (count + 3) / 4 * 4;
    for (std::size_t t = 0; t < terms.size(); ++t) {
      TermsBlock& b = blocks[t];
      kernel(r, rounded, terms[t].step, terms[t].levels, b.low, b.high, b.p);
    }
    if (single_in_registers != nullptr) {
      single_in_registers(blocks[0], count, terms[0]);
    } else {
      add_block_for(std::make_index_sequence<kMaxTerms>(), blocks.data(), count, terms);
    }
  }
}

// A lower bound of a candidate quantizer's cost J(b) from a histogram of the
// residual, so that step 2 of encode() runs the exact closed form (a pass of
// accumulate_terms() per quantizer, the bulk of the encoder's work) only for
// candidates the bound cannot rule out. A candidate is skipped only when its
// bound exceeds an exactly computed cost by a relative margin, so the choice,
// and with it every byte, is the one the exact costs of all candidates give.
//
// The histogram counts r_i / max|r| in kBoundBins equal bins over [-1, 1];
// bin k is credited with the interval of bins k - 1 to k + 1, which covers
// the rounding of the bin index and of y_i = r_i / step (both far below a
// bin width in y: 2L / kBoundBins >= 1e-3). For every bin and y in that
// interval (clamped to [-L, L] as y_i is):
//   distortion: p (1 - p) with p = y - floor(y) is concave between
//     integers, so at least its smaller end value (0 if the interval holds an
//     integer); the sum over coordinates bounds the variance from below.
//   rate: coordinate i adds max(0, 1 - |y_i - q|) to the expected count c_q
//     of level q, at most max(0, 1 - dist(q, interval)): caps u_q >= c_q.
//     AdaptiveModel::ideal_bits(c) is -log2 of a Dirichlet mixture of the
//     i.i.d. likelihoods, so at least the maximum likelihood code length
//     n H(c / n) bits (n = sum c); and among the count vectors with c <= u and
//     sum n, entropy (Schur-concave) is smallest at the greedy one that fills
//     the largest caps first, which majorises all the others.
// The margin kBoundMargin (relative, on both sides of the comparison) covers
// the rounding in the exact sums (at most n 2^-53 relative), in ideal_bits()
// (its lgamma differences: a few ulps of n ln n per level, below 1e-4 of the
// 35 header bits every rate includes while n < 2^32) and here; candidates
// within it of the exact cost are computed exactly.
constexpr std::size_t kBoundBins = 2048;
constexpr double kBoundMargin = 1e-3;
// Below this layer size the exact costs are cheaper than the bounds.
constexpr std::size_t kBoundMinCoordinates = 8 * kBoundBins;

void residual_histogram(std::span<const float> residual, float max_abs, std::span<std::uint64_t> hist) {
  std::fill(hist.begin(), hist.end(), 0);
  const double scale = 0.5 * static_cast<double>(kBoundBins) / max_abs;
  const double last = static_cast<double>(kBoundBins - 1);
  for (const float r : residual) {
    const double u = (static_cast<double>(r) + max_abs) * scale;
    ++hist[static_cast<std::size_t>(std::clamp(u, 0.0, last))];
  }
}

// Lower bound of distortion / norm + lambda * rate / n (encode(), step 2) for
// the quantizer with `levels` L and `step`; `caps` is scratch.
double cost_lower_bound(std::span<const std::uint64_t> hist, float max_abs, double step, std::int32_t L, double norm,
                        double lambda, double header_bits, std::size_t n, std::vector<double>& caps) {
  caps.assign(2 * static_cast<std::size_t>(L) + 1, 0.0);
  const double top = L;
  const double width = 2.0 * static_cast<double>(max_abs) / static_cast<double>(kBoundBins);
  double variance = 0.0;
  for (std::size_t k = 0; k < kBoundBins; ++k) {
    if (hist[k] == 0) continue;
    const double count = static_cast<double>(hist[k]);
    const double kd = static_cast<double>(k);
    const double ya = std::clamp((-static_cast<double>(max_abs) + (kd - 1.0) * width) / step, -top, top);
    const double yb = std::clamp((-static_cast<double>(max_abs) + (kd + 2.0) * width) / step, -top, top);
    const double cell = std::floor(ya);
    if (yb < cell + 1.0) {
      const double pa = ya - cell;
      const double pb = yb - cell;
      variance += count * std::min(pa * (1.0 - pa), pb * (1.0 - pb));
    }
    const auto q_end = static_cast<std::int32_t>(std::ceil(yb));
    for (auto q = static_cast<std::int32_t>(cell); q <= q_end; ++q) {
      const double qd = q;
      const double distance = qd < ya ? ya - qd : (qd > yb ? qd - yb : 0.0);
      if (distance < 1.0) caps[static_cast<std::size_t>(q + L)] += count * (1.0 - distance);
    }
  }
  std::sort(caps.begin(), caps.end(), std::greater<>());
  const double total = static_cast<double>(n);
  double left = total;
  double nats = 0.0;
  for (const double cap : caps) {
    if (!(left > 0.0)) break;
    const double c = std::min(cap, left);
    if (c > 0.0) nats += c * std::log(total / c);
    left -= c;
  }
  if (left > 1e-6 * total) nats = 0.0;  // caps below the total: only by rounding; no rate bound
  const double rate = header_bits + nats / std::log(2.0);
  return variance * (step * step) / norm + lambda * rate / total;
}

// The one place where a reconstruction is formed, so that both ends compute
// it with the same operations (no contraction into an FMA across them).
float reconstruct(float prediction, std::int32_t q, float step) {
  const float delta = static_cast<float>(q) * step;
  return prediction + delta;
}

}  // namespace

const char* predictor_name(Predictor p) {
  switch (p) {
    case Predictor::kZero: return "zero";
    case Predictor::kLast: return "last";
    case Predictor::kMean: return "mean";
    case Predictor::kLinear: return "linear";
    case Predictor::kLms: return "lms";
  }
  return "?";
}

PredictiveCodingOptions PredictiveCodingOptions::from_config(const Config& cfg) {
  PredictiveCodingOptions o;
  std::string all_names;
  for (Predictor p : kAllPredictors) all_names += (all_names.empty() ? "" : ", ") + std::string(predictor_name(p));

  const bool have_predictors = cfg.has("predictors");
  const std::vector<Config> names = cfg.children("predictors");
  if (have_predictors) {
    if (names.empty()) cfg.fail("predictors", "a non-empty list of predictor names (" + all_names + ")", "an empty list");
    o.predictors.clear();
    for (const Config& item : names) {
      const std::string name = item.as_string();
      auto it = std::find_if(kAllPredictors.begin(), kAllPredictors.end(),
                             [&](Predictor p) { return name == predictor_name(p); });
      if (it == kAllPredictors.end()) item.fail("", "a predictor name (one of: " + all_names + ")", "'" + name + "'");
      if (std::find(o.predictors.begin(), o.predictors.end(), *it) != o.predictors.end())
        item.fail("", "each predictor at most once", "'" + name + "' again");
      o.predictors.push_back(*it);
    }
  }

  if (cfg.has("bits")) {
    const auto list = cfg.get_int_list("bits", kMinBits, kMaxBits);
    if (list.empty()) cfg.fail("bits", "a non-empty list of integers in [2, 12]", "an empty list");
    o.bits.clear();
    for (auto b : list) {
      if (std::find(o.bits.begin(), o.bits.end(), static_cast<int>(b)) != o.bits.end())
        cfg.fail("bits", "distinct values", std::to_string(b) + " twice");
      o.bits.push_back(static_cast<int>(b));
    }
  } else {
    cfg.get_string("bits", "");  // marks the key as read
  }

  o.lambda = cfg.get_double("lambda", 0.1, 0.0, 1e9);
  o.lms_step = cfg.get_double("lms_step", 0.5, 1e-6, 1.999);
  return o;
}

PredictiveCoder::PredictiveCoder(PredictiveCodingOptions options, std::size_t dim, std::vector<Layer> layers)
    : options_(std::move(options)), dim_(dim), layers_(std::move(layers)) {
  if (options_.predictors.empty() || options_.bits.empty())
    throw std::invalid_argument("predictive_coding: needs at least one predictor and one quantizer");
  for (int b : options_.bits)
    if (b < kMinBits || b > kMaxBits) throw std::invalid_argument("predictive_coding: bits outside [2, 12]");
  if (layers_.empty()) layers_.push_back(Layer{"all", 0, dim_});
  // The layers must tile [0, dim).
  std::vector<Layer> sorted = layers_;
  std::sort(sorted.begin(), sorted.end(), [](const Layer& a, const Layer& b) { return a.offset < b.offset; });
  std::size_t covered = 0;
  for (const Layer& l : sorted) {
    if (l.offset != covered || l.size > dim_ - covered)
      throw std::invalid_argument("predictive_coding: layers do not tile [0, " + std::to_string(dim_) + ")");
    covered += l.size;
  }
  if (covered != dim_) throw std::invalid_argument("predictive_coding: layers do not cover the vector");

  predictor_bits_ = bits_for(options_.predictors.size());
  quantizer_bits_ = bits_for(options_.bits.size());
  prev1_.assign(dim_, 0.0f);
  prev2_.assign(dim_, 0.0f);
  mean_.assign(dim_, 0.0f);
  lms_weights_.assign(layers_.size(), {1.0, 0.0});
  choices_.assign(layers_.size(), LayerChoice{});
  scratch_.assign(dim_, 0.0f);
}

void PredictiveCoder::predict(Predictor p, std::size_t layer, std::span<float> out) const {
  const std::size_t off = layers_[layer].offset;
  const std::size_t n = layers_[layer].size;
  switch (p) {
    case Predictor::kZero:
      std::fill(out.begin(), out.end(), 0.0f);
      break;
    case Predictor::kLast:
      std::copy_n(prev1_.begin() + static_cast<std::ptrdiff_t>(off), n, out.begin());
      break;
    case Predictor::kMean:
      std::copy_n(mean_.begin() + static_cast<std::ptrdiff_t>(off), n, out.begin());
      break;
    case Predictor::kLinear:
      if (rounds_ < 2) {
        std::copy_n(prev1_.begin() + static_cast<std::ptrdiff_t>(off), n, out.begin());
      } else {
        for (std::size_t i = 0; i < n; ++i) {
          const float twice = 2.0f * prev1_[off + i];
          out[i] = twice - prev2_[off + i];
        }
      }
      break;
    case Predictor::kLms: {
      const auto [w1, w2] = lms_weights_[layer];
      for (std::size_t i = 0; i < n; ++i) {
        const double a = w1 * prev1_[off + i];
        const double b = w2 * prev2_[off + i];
        out[i] = static_cast<float>(a + b);
      }
      break;
    }
  }
}

std::array<double, kAllPredictors.size()> PredictiveCoder::residual_energies(std::size_t layer,
                                                                             std::span<const float> x) const {
  static const auto kernel =
      simd::pick(simd::best_isa(), residual_energies_avx2, residual_energies_avx2, residual_energies_baseline);
  const std::size_t off = layers_[layer].offset;
  const auto [w1, w2] = lms_weights_[layer];
  const EnergySums sums = kernel(x.data(), prev1_.data() + off, prev2_.data() + off, mean_.data() + off, x.size(),
                                 rounds_ < 2, w1, w2);
  std::array<double, kAllPredictors.size()> e{};
  e[static_cast<std::size_t>(Predictor::kZero)] = sums.zero_last_mean_linear[0];
  e[static_cast<std::size_t>(Predictor::kLast)] = sums.zero_last_mean_linear[1];
  e[static_cast<std::size_t>(Predictor::kMean)] = sums.zero_last_mean_linear[2];
  e[static_cast<std::size_t>(Predictor::kLinear)] = sums.zero_last_mean_linear[3];
  e[static_cast<std::size_t>(Predictor::kLms)] = sums.lms;
  return e;
}

void PredictiveCoder::commit(std::span<const float> recon) {
  // Block-normalised LMS (per layer) on the reconstruction just formed, with
  // the inputs its prediction used: w += mu * sum_i e_i u_i / sum_i |u_i|^2.
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::size_t off = layers_[l].offset;
    auto& w = lms_weights_[l];
    double g1 = 0.0, g2 = 0.0, power = 0.0;
    for (std::size_t i = off; i < off + layers_[l].size; ++i) {
      const double a = prev1_[i];
      const double b = prev2_[i];
      const double e = static_cast<double>(recon[i]) - (w[0] * a + w[1] * b);
      g1 += e * a;
      g2 += e * b;
      power += a * a + b * b;
    }
    if (power > 0.0 && std::isfinite(power) && std::isfinite(g1) && std::isfinite(g2)) {
      w[0] += options_.lms_step * g1 / power;
      w[1] += options_.lms_step * g2 / power;
    }
  }
  ++rounds_;
  const float count = static_cast<float>(rounds_);
  // Four lanes at a time (SSE, the same operations per element).
  using f32x4 = float __attribute__((vector_size(16)));
  std::size_t i = 0;
  for (; i + 4 <= dim_; i += 4) {
    f32x4 r, m;
    std::memcpy(&r, recon.data() + i, sizeof r);
    std::memcpy(&m, mean_.data() + i, sizeof m);
    const f32x4 diff = r - m;
    m += diff / count;
    std::memcpy(mean_.data() + i, &m, sizeof m);
  }
  for (; i < dim_; ++i) {
    const float diff = recon[i] - mean_[i];
    mean_[i] += diff / count;
  }
  prev2_.swap(prev1_);
  std::copy(recon.begin(), recon.end(), prev1_.begin());
}

void PredictiveCoder::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("predictive_coding: vector of size " + std::to_string(v.size()) + ", coder built for " +
                                std::to_string(dim_));
  ArithmeticEncoder coder(out);
  const double header_bits = predictor_bits_ + quantizer_bits_ + 32;

  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::size_t off = layers_[l].offset;
    const std::size_t n = layers_[l].size;
    const std::span<const float> x = v.subspan(off, n);
    const std::span<float> recon = reconstructed.subspan(off, n);

    // 1. Predictor with the lowest residual energy (ties: the first listed).
    const auto energies = residual_energies(l, x);
    std::size_t best_id = 0;
    double best_energy = 0.0;
    for (std::size_t id = 0; id < options_.predictors.size(); ++id) {
      const double energy = energies[static_cast<std::size_t>(options_.predictors[id])];
      if (id == 0 || energy < best_energy) {
        best_id = id;
        best_energy = energy;
      }
    }
    prediction_.resize(n);
    predict(options_.predictors[best_id], l, prediction_);
    const std::span<const float> best_prediction(prediction_);

    residual_.resize(n);
    const std::span<float> residual(residual_);
    const float max_abs = residual_and_max_abs(x, best_prediction, residual);
    const double update_energy = energies[static_cast<std::size_t>(Predictor::kZero)];  // ||x||^2
    if (!std::isfinite(max_abs) || !std::isfinite(update_energy))
      throw std::invalid_argument("predictive_coding: non-finite value in layer '" + layers_[l].name + "'");
    double norm = update_energy;
    if (!(update_energy > 0.0)) {
      norm = 0.0;  // ||r||^2
      for (const float r : residual) norm += static_cast<double>(r) * r;
    }

    // 2. Quantizer by expected distortion + lambda * rate (closed form in r).
    std::array<QuantizerTerms, kMaxBits - kMinBits + 1> terms_storage;
    std::array<std::size_t, kMaxBits - kMinBits + 1> term_of{};  // options_.bits index -> terms index
    std::size_t count_slots = 0;
    for (int b : options_.bits) count_slots += 2 * static_cast<std::size_t>(levels(b)) + 2;
    counts_.assign(count_slots, 0.0);
    std::size_t num_terms = 0;
    count_slots = 0;
    for (std::size_t qid = 0; qid < options_.bits.size(); ++qid) {
      const std::int32_t L = levels(options_.bits[qid]);
      const float step = max_abs / static_cast<float>(L);
      if (!(step > 0.0f)) continue;
      term_of[qid] = num_terms;
      terms_storage[num_terms++] = QuantizerTerms{step, static_cast<double>(L), counts_.data() + count_slots, 0.0};
      count_slots += 2 * static_cast<std::size_t>(L) + 2;
    }
    const std::span<QuantizerTerms> terms(terms_storage.data(), num_terms);
    auto cost_of = [&](std::size_t qid) {
      const std::int32_t L = levels(options_.bits[qid]);
      const QuantizerTerms& t = terms[term_of[qid]];
      const double s = t.step;
      const double distortion = t.variance * (s * s);
      const double rate =
          header_bits + AdaptiveModel::ideal_bits(std::span<const double>(t.counts, 2 * static_cast<std::size_t>(L) + 1));
      return distortion / norm + options_.lambda * rate / static_cast<double>(n);
    };
    // The exact terms of every candidate, or (large layers) of the one with
    // the lowest bound and then of those whose bound does not exceed its cost.
    std::array<bool, kMaxBits - kMinBits + 1> skipped{};  // by options_.bits index
    if (n >= kBoundMinCoordinates && num_terms > 1) {
      bound_hist_.resize(kBoundBins);
      residual_histogram(residual, max_abs, bound_hist_);
      std::array<double, kMaxBits - kMinBits + 1> bound{};
      std::size_t first = options_.bits.size();
      for (std::size_t qid = 0; qid < options_.bits.size(); ++qid) {
        if (!(max_abs / static_cast<float>(levels(options_.bits[qid])) > 0.0f)) continue;
        bound[qid] = cost_lower_bound(bound_hist_, max_abs, terms[term_of[qid]].step, levels(options_.bits[qid]), norm,
                                      options_.lambda, header_bits, n, bound_caps_);
        if (first == options_.bits.size() || bound[qid] < bound[first]) first = qid;
      }
      accumulate_terms(residual, terms.subspan(term_of[first], 1));
      const double first_cost = cost_of(first);
      std::array<QuantizerTerms, kMaxBits - kMinBits + 1> rest;
      std::array<std::size_t, kMaxBits - kMinBits + 1> rest_of{};
      std::size_t num_rest = 0;
      for (std::size_t qid = 0; qid < options_.bits.size(); ++qid) {
        if (qid == first || !(max_abs / static_cast<float>(levels(options_.bits[qid])) > 0.0f)) continue;
        if (bound[qid] * (1.0 - kBoundMargin) > first_cost * (1.0 + kBoundMargin)) {
          skipped[qid] = true;
        } else {
          rest_of[num_rest] = qid;
          rest[num_rest++] = terms[term_of[qid]];
        }
      }
      accumulate_terms(residual, std::span<QuantizerTerms>(rest.data(), num_rest));
      for (std::size_t i = 0; i < num_rest; ++i) terms[term_of[rest_of[i]]] = rest[i];
    } else {
      accumulate_terms(residual, terms);
    }

    std::size_t best_q = 0;
    double best_cost = 0.0;
    float best_step = 0.0f;
    bool any_step = false;
    for (std::size_t qid = 0; qid < options_.bits.size(); ++qid) {
      const std::int32_t L = levels(options_.bits[qid]);
      const float step = max_abs / static_cast<float>(L);
      if (!(step > 0.0f) || skipped[qid]) continue;
      const double cost = cost_of(qid);
      if (!any_step || cost < best_cost) {
        best_q = qid;
        best_cost = cost;
        best_step = step;
        any_step = true;
      }
    }

    // 3-4. Header, then the stochastically rounded residual.
    if (predictor_bits_ > 0) coder.encode_bits(static_cast<std::uint32_t>(best_id), predictor_bits_);
    if (quantizer_bits_ > 0) coder.encode_bits(static_cast<std::uint32_t>(best_q), quantizer_bits_);
    const float step = any_step ? best_step : 0.0f;
    const std::uint32_t step_bits = std::bit_cast<std::uint32_t>(step);
    coder.encode_bits(step_bits >> 16, 16);
    coder.encode_bits(step_bits & 0xFFFFu, 16);
    choices_[l] = LayerChoice{options_.predictors[best_id], options_.bits[best_q], step};

    if (step == 0.0f) {
      std::copy(best_prediction.begin(), best_prediction.end(), recon.begin());
      continue;
    }
    const std::int32_t L = levels(options_.bits[best_q]);
    AdaptiveModel model(2 * static_cast<std::uint32_t>(L) + 1);
    alignas(32) float uniform[kBlock] = {};
    alignas(32) std::uint32_t symbols[kBlock];
    for (std::size_t start = 0; start < n; start += kBlock) {
      const std::size_t count = std::min(kBlock, n - start);
      for (std::size_t i = 0; i < count; ++i) uniform[i] = rng.uniform_float();
      stochastic_round(residual.subspan(start, count), best_prediction.subspan(start, count), uniform, step,
                       static_cast<double>(L), symbols, recon.subspan(start, count));
      for (std::size_t i = 0; i < count; ++i) coder.encode(symbols[i], model);
      // decode() rejects what overflows; only inputs near the float limit get here.
      if (!std::all_of(recon.begin() + static_cast<std::ptrdiff_t>(start),
                       recon.begin() + static_cast<std::ptrdiff_t>(start + count),
                       [](float r) { return std::isfinite(r); }))
        throw std::invalid_argument("predictive_coding: reconstruction in layer '" + layers_[l].name +
                                    "' overflows float");
    }
  }
  coder.finish();
  commit(reconstructed);
}

void PredictiveCoder::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_)
    throw std::invalid_argument("predictive_coding: output of size " + std::to_string(out.size()) +
                                ", coder built for " + std::to_string(dim_));
  ArithmeticDecoder coder(payload);
  std::vector<LayerChoice> choices(layers_.size());
  std::vector<float> prediction;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::size_t off = layers_[l].offset;
    const std::size_t n = layers_[l].size;
    const std::uint32_t pid = predictor_bits_ > 0 ? coder.decode_bits(predictor_bits_) : 0;
    if (pid >= options_.predictors.size())
      throw DecodeError("predictive_coding: predictor id " + std::to_string(pid) + " in layer " + std::to_string(l) +
                        ", only " + std::to_string(options_.predictors.size()) + " configured");
    const std::uint32_t qid = quantizer_bits_ > 0 ? coder.decode_bits(quantizer_bits_) : 0;
    if (qid >= options_.bits.size())
      throw DecodeError("predictive_coding: quantizer id " + std::to_string(qid) + " in layer " + std::to_string(l) +
                        ", only " + std::to_string(options_.bits.size()) + " configured");
    std::uint32_t step_bits = coder.decode_bits(16) << 16;
    step_bits |= coder.decode_bits(16);
    const float step = std::bit_cast<float>(step_bits);
    if (!std::isfinite(step) || std::signbit(step))
      throw DecodeError("predictive_coding: step in layer " + std::to_string(l) + " is not a finite value >= 0");
    choices[l] = LayerChoice{options_.predictors[pid], options_.bits[qid], step};

    prediction.resize(n);
    predict(options_.predictors[pid], l, prediction);
    const std::span<float> recon = std::span<float>(scratch_).subspan(off, n);
    if (step == 0.0f) {
      std::copy(prediction.begin(), prediction.end(), recon.begin());
      continue;
    }
    // Symbol values are bounded by the model's alphabet: |q| <= L by construction.
    AdaptiveModel model(2 * static_cast<std::uint32_t>(levels(options_.bits[qid])) + 1);
    for (std::size_t i = 0; i < n; ++i) recon[i] = reconstruct(prediction[i], from_symbol(coder.decode(model)), step);
    // A well-formed stream can still carry a step so large that q * step overflows.
    if (!std::all_of(recon.begin(), recon.end(), [](float x) { return std::isfinite(x); }))
      throw DecodeError("predictive_coding: layer " + std::to_string(l) + " reconstructs to values beyond float range");
  }
  coder.finish();
  choices_ = std::move(choices);
  std::copy(scratch_.begin(), scratch_.end(), out.begin());
  commit(scratch_);
}

namespace {
FEDSIM_REGISTER_STAGE(
    "predictive_coding", StageKind::kQuantizer,
    [](const Config& cfg, StageContext& ctx) -> std::unique_ptr<Compressor> {
      return std::make_unique<PredictiveCoder>(PredictiveCodingOptions::from_config(cfg), ctx.dim, ctx.layers);
    },
    "predictive coding (Yue et al.): per-layer predictor from the history, RD-chosen unbiased residual "
    "quantizer, adaptive arithmetic coding");
}  // namespace

void PredictiveCoder::save(StateWriter& out) const {
  out.begin("predictive_coding");
  out.vec(prev1_);
  out.vec(prev2_);
  out.vec(mean_);
  for (const auto& w : lms_weights_) out.put(w[0]), out.put(w[1]);
  out.put(rounds_);
  for (const LayerChoice& c : choices_) {
    out.put(static_cast<std::uint8_t>(c.predictor));
    out.put(static_cast<std::int32_t>(c.bits));
    out.put(c.step);
  }
}

void PredictiveCoder::restore(StateReader& in) {
  in.begin("predictive_coding");
  in.into(std::span<float>(prev1_));
  in.into(std::span<float>(prev2_));
  in.into(std::span<float>(mean_));
  for (auto& w : lms_weights_) w[0] = in.get<double>(), w[1] = in.get<double>();
  rounds_ = in.get<std::uint64_t>();
  for (LayerChoice& c : choices_) {
    const std::uint8_t p = in.get<std::uint8_t>();
    if (p > static_cast<std::uint8_t>(Predictor::kLms))
      throw DecodeError("predictive_coding: predictor " + std::to_string(p) + " in the state");
    c.predictor = static_cast<Predictor>(p);
    c.bits = in.get<std::int32_t>();
    c.step = in.get<float>();
  }
}

}  // namespace fedsim
