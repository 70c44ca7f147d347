// Packed low-precision kernels (clients/packed_kernels.h) on every SIMD path:
// exact integer dot products and sums against a scalar reference on random
// codes of awkward sizes, the float axpy bit for bit, the affine dot product
// against the float-grid reference within the stated bound (exactly where
// both are exact), stochastic_codes against stochastic_round, the packed
// double-sampled least-squares gradient against the float one, and the
// compute billing of double sampling's second sample in a two-client run.
// The dpbusd (VNNI) dot kernel's algorithm is tested through an exact AVX2
// emulation of vpdpbusd on any AVX2 CPU, the real instructions where the CPU
// has them. The AVX-512 path is skipped, saying so, on a CPU without AVX-512;
// tools/check_isa.sh also runs this test with FEDSIM_SIMD=avx2 / baseline.
#include "clients/packed_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "clients/quantized_compute.h"
#include "clients/zipml_markers.h"
#include "core/base/errors.h"
#include "core/base/config.h"
#include "core/base/rng.h"
#include "core/models/mlp.h"
#include "core/models/model_kernels.h"
#include "core/models/softmax_regression.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

constexpr std::size_t kSizes[] = {1, 7, 15, 16, 17, 31, 33, 100, 785, 4099};
constexpr int kBits[] = {2, 4, 8};
constexpr double kU = 0x1.0p-24;  // float unit roundoff

std::vector<std::uint8_t> random_codes(Rng& rng, std::size_t n, int bits) {
  std::vector<std::uint8_t> codes(n);
  for (auto& c : codes) c = static_cast<std::uint8_t>(rng.below(1u << bits));
  return codes;
}

// Every kernel on one path against scalar references.
void check_path(simd::Isa isa) {
  Rng rng(42);
  for (int bits : kBits) {
    for (std::size_t n : kSizes) {
      SCOPED_TRACE(std::string(simd::isa_name(isa)) + " bits=" + std::to_string(bits) + " n=" + std::to_string(n));
      std::vector<std::uint8_t> ka = random_codes(rng, n, bits), kb = random_codes(rng, n, bits);
      if (n == 785) std::fill(ka.begin(), ka.end(), static_cast<std::uint8_t>((1u << bits) - 1u));  // all maximal
      std::vector<std::uint8_t> pa, pb;
      packed::pack(ka, bits, pa);
      packed::pack(kb, bits, pb);
      ASSERT_EQ(pa.size(), packed::packed_bytes(n, bits));
      std::vector<std::uint8_t> back(n);
      packed::unpack(pa.data(), n, bits, back.data());
      EXPECT_EQ(back, ka);
      std::uint64_t dot = 0, sum = 0;
      for (std::size_t i = 0; i < n; ++i) {
        dot += static_cast<std::uint64_t>(ka[i]) * kb[i];
        sum += ka[i];
      }
      EXPECT_EQ(packed::dot_codes(pa.data(), pb.data(), n, bits, isa), dot);
      EXPECT_EQ(packed::sum_codes(pa.data(), n, bits, isa), sum);
      // axpy: the same float operations as this scalar loop, bit for bit.
      std::vector<float> y(n + 3), expected(n + 3);
      for (std::size_t i = 0; i < y.size(); ++i) y[i] = expected[i] = static_cast<float>(rng.normal());
      const float alpha = -0.37f, beta = 0.011f;
      for (std::size_t i = 0; i < n; ++i) {
        float t = static_cast<float>(ka[i]) * beta;
        t = t + alpha;
        expected[i] = expected[i] + t;
      }
      packed::axpy_codes(alpha, beta, pa.data(), n, bits, y.data(), isa);
      EXPECT_EQ(y, expected);  // including the 3 guard values past n
      // The batched axpy: bit for bit successive axpy_codes calls (three vectors).
      std::vector<float> yb(y), ys(y);
      const float alphas[3] = {0.5f, -1.25e-3f, 3.0f}, betas[3] = {-0.02f, 7.5f, 1e-4f};
      const std::uint8_t* vectors[3] = {pa.data(), pb.data(), pa.data()};
      packed::axpy_codes_batch(alphas, betas, vectors, 3, n, bits, yb.data(), isa);
      for (int j = 0; j < 3; ++j) packed::axpy_codes(alphas[j], betas[j], vectors[j], n, bits, ys.data(), simd::Isa::kBaseline);
      EXPECT_EQ(yb, ys);
      // The fp32 kernels: bit for bit the baseline's on every path, within
      // gamma_n sum |a b| of the exact dot product.
      std::vector<float> fa(n), fb(n);
      double exact = 0.0, magnitude = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        fa[i] = static_cast<float>(rng.normal());
        fb[i] = static_cast<float>(rng.normal());
        exact += static_cast<double>(fa[i]) * fb[i];
        magnitude += std::fabs(static_cast<double>(fa[i]) * fb[i]);
      }
      const float fdot = packed::dot_f32(fa.data(), fb.data(), n, isa);
      EXPECT_EQ(fdot, packed::dot_f32(fa.data(), fb.data(), n, simd::Isa::kBaseline));
      EXPECT_LE(std::fabs(fdot - exact), (n + 1) * kU / (1 - (n + 1) * kU) * magnitude);
      std::vector<float> z1(fb), z2(fb);
      packed::axpy_f32(0.3f, fa.data(), n, z1.data(), isa);
      packed::axpy_f32(0.3f, fa.data(), n, z2.data(), simd::Isa::kBaseline);
      EXPECT_EQ(z1, z2);
    }
  }
  // A long vector crosses the accumulator flush (32768 chunks): all codes maximal.
  const std::size_t n = 16 * 32768 * 2 + 5;
  const std::vector<std::uint8_t> k(n, 255);
  std::vector<std::uint8_t> p;
  packed::pack(k, 8, p);
  EXPECT_EQ(packed::dot_codes(p.data(), p.data(), n, 8, isa), static_cast<std::uint64_t>(n) * 65025u);
  EXPECT_EQ(packed::sum_codes(p.data(), n, 8, isa), static_cast<std::uint64_t>(n) * 255u);
}

TEST(PackedKernels, BaselinePathIsExact) { check_path(simd::Isa::kBaseline); }

TEST(PackedKernels, Avx2PathIsExact) {
  if (simd::cpu_isa() < simd::Isa::kAvx2) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 path is not tested here";
  check_path(simd::Isa::kAvx2);
}

TEST(PackedKernels, Avx512PathIsExact) {
  if (simd::cpu_isa() < simd::Isa::kAvx512)
    GTEST_SKIP() << "this CPU has no AVX-512: the AVX-512 path is not tested here (run on an AVX-512 machine)";
  check_path(simd::Isa::kAvx512);
}

// The dpbusd dot kernel (clients/packed_kernels.cc) on `kernel` against the
// scalar reference: sizes around the 32- and 64-byte blocks and the 16-code
// chunks (0 included), random codes, all-maximal codes, and b at 2^(bits-1)
// (8-bit: 128, the first code dpbusd's signed operand cannot take); then
// all-maximal vectors of more than two flush periods (4096 blocks of 64
// bytes) plus a partial block, where 32-bit lanes left unflushed would overflow.
void check_dpbusd(packed::DpbusdKernel kernel, const char* name) {
  // The kernel on two code vectors, packed, against their dot product in scalar code.
  const auto expect_dot = [kernel](const std::vector<std::uint8_t>& ka, const std::vector<std::uint8_t>& kb,
                                   int bits) {
    std::vector<std::uint8_t> pa, pb;
    packed::pack(ka, bits, pa);
    packed::pack(kb, bits, pb);
    std::uint64_t dot = 0;
    for (std::size_t i = 0; i < ka.size(); ++i) dot += static_cast<std::uint64_t>(ka[i]) * kb[i];
    EXPECT_EQ(packed::dot_codes_dpbusd(pa.data(), pb.data(), ka.size(), bits, kernel), dot);
  };
  constexpr std::size_t kDpbusdSizes[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 1000, 4097 * 16};
  Rng rng(77);
  for (int bits : kBits) {
    const std::uint8_t max = static_cast<std::uint8_t>((1u << bits) - 1u);
    const std::uint8_t half = static_cast<std::uint8_t>(1u << (bits - 1));
    for (std::size_t n : kDpbusdSizes) {
      for (int pattern = 0; pattern < 3; ++pattern) {
        SCOPED_TRACE(std::string(name) + " bits=" + std::to_string(bits) + " n=" + std::to_string(n) +
                     " pattern=" + std::to_string(pattern));
        std::vector<std::uint8_t> ka = random_codes(rng, n, bits), kb = random_codes(rng, n, bits);
        if (pattern > 0) {
          ka.assign(n, max);
          kb.assign(n, pattern == 1 ? max : half);
        }
        expect_dot(ka, kb, bits);
      }
    }
    // Several flush periods of 64-byte blocks and a partial block: 8-bit, 17
    // periods, where each of the 4 accumulators would pass 2^31 unflushed
    // (17 * 4096 / 4 blocks of +-4 * 255 * 127 or 128), with b maximal and b
    // zero (the bias makes it -128: negative lanes); 2- and 4-bit, 2 periods.
    const std::size_t bytes = (bits == 8 ? 17 : 2) * 4096 * 64 + 37;
    const std::size_t n = bytes * 8 / static_cast<std::size_t>(bits);
    SCOPED_TRACE(std::string(name) + " bits=" + std::to_string(bits) + " long n=" + std::to_string(n));
    std::vector<std::uint8_t> pmax, pzero;
    packed::pack(std::vector<std::uint8_t>(n, max), bits, pmax);
    packed::pack(std::vector<std::uint8_t>(n, 0), bits, pzero);
    EXPECT_EQ(packed::dot_codes_dpbusd(pmax.data(), pmax.data(), n, bits, kernel),
              static_cast<std::uint64_t>(n) * max * max);
    EXPECT_EQ(packed::dot_codes_dpbusd(pmax.data(), pzero.data(), n, bits, kernel), 0u);
    expect_dot(random_codes(rng, n, bits), random_codes(rng, n, bits), bits);
  }
}

// The emulations run the VNNI kernels' algorithm (bit planes, the 8-bit bias,
// lanes, flushes, the padded last block) on any AVX2 CPU, at both widths.
TEST(PackedKernels, DpbusdEmulated256PathIsExact) {
  if (!packed::dpbusd_supported(packed::DpbusdKernel::kEmulated256))
    GTEST_SKIP() << "this CPU has no AVX2: the emulated dpbusd kernel is not tested here";
  check_dpbusd(packed::DpbusdKernel::kEmulated256, "emulated256");
}

TEST(PackedKernels, DpbusdEmulated512PathIsExact) {
  if (!packed::dpbusd_supported(packed::DpbusdKernel::kEmulated512))
    GTEST_SKIP() << "this CPU has no AVX2: the emulated dpbusd kernel is not tested here";
  check_dpbusd(packed::DpbusdKernel::kEmulated512, "emulated512");
}

// The real instructions: only on CPUs that have them.
TEST(PackedKernels, AvxVnniPathIsExact) {
  if (!packed::dpbusd_supported(packed::DpbusdKernel::kAvxVnni))
    GTEST_SKIP() << "this CPU has no AVX-VNNI: the AVX-VNNI dot kernel (vpdpbusd ymm) is not tested here "
                    "(its algorithm is, emulated, in DpbusdEmulated256PathIsExact)";
  check_dpbusd(packed::DpbusdKernel::kAvxVnni, "avx-vnni");
}

TEST(PackedKernels, Avx512VnniPathIsExact) {
  if (!packed::dpbusd_supported(packed::DpbusdKernel::kAvx512Vnni))
    GTEST_SKIP() << "this CPU has no AVX-512 VNNI and BW: the AVX-512 VNNI dot kernel (vpdpbusd zmm) is not "
                    "tested here (its algorithm is, emulated, in DpbusdEmulated512PathIsExact)";
  check_dpbusd(packed::DpbusdKernel::kAvx512Vnni, "avx512-vnni");
}

// dot_codes takes the VNNI kernel where the CPU has it, and says which ran.
TEST(PackedKernels, DispatchedDotKernelIsNamed) {
  EXPECT_STREQ(packed::dot_kernel_name(simd::Isa::kBaseline), "baseline");
  const std::string avx2 = packed::dot_kernel_name(simd::Isa::kAvx2);
  const std::string avx512 = packed::dot_kernel_name(simd::Isa::kAvx512);
  if (simd::cpu_isa() >= simd::Isa::kAvx2) {
    EXPECT_EQ(avx2, packed::dpbusd_supported(packed::DpbusdKernel::kAvxVnni) ? "avx-vnni" : "avx2");
  }
  if (simd::cpu_isa() >= simd::Isa::kAvx512) {
    EXPECT_EQ(avx512, packed::dpbusd_supported(packed::DpbusdKernel::kAvx512Vnni) ? "avx512-vnni" : "avx512");
  } else {
    EXPECT_EQ(avx512, avx2);  // simd::pick falls back to the widest path this CPU has
  }
  std::printf("dot kernels here: avx512 -> %s, avx2 -> %s, dispatched (FEDSIM_SIMD=%s) -> %s\n", avx512.c_str(),
              avx2.c_str(), std::getenv("FEDSIM_SIMD") ? std::getenv("FEDSIM_SIMD") : "",
              packed::dot_kernel_name(simd::best_isa()));
}

TEST(PackedKernels, DispatchedPathMatchesBaseline) {
  // The path best_isa() picks (FEDSIM_SIMD caps it) gives the baseline's results.
  Rng rng(3);
  for (int bits : kBits) {
    const std::vector<std::uint8_t> a = random_codes(rng, 1001, bits), b = random_codes(rng, 1001, bits);
    std::vector<std::uint8_t> pa, pb;
    packed::pack(a, bits, pa);
    packed::pack(b, bits, pb);
    EXPECT_EQ(packed::dot_codes(pa.data(), pb.data(), 1001, bits),
              packed::dot_codes(pa.data(), pb.data(), 1001, bits, simd::Isa::kBaseline));
    std::vector<float> y1(1001, 0.5f), y2 = y1;
    packed::axpy_codes(0.25f, -1.5e-3f, pa.data(), 1001, bits, y1.data());
    packed::axpy_codes(0.25f, -1.5e-3f, pa.data(), 1001, bits, y2.data(), simd::Isa::kBaseline);
    EXPECT_EQ(y1, y2);
  }
}

packed::PackedVector quantized(const std::vector<float>& x, int bits, Rng& rng) {
  packed::PackedVector v;
  std::vector<std::uint8_t> scratch;
  EXPECT_TRUE(stochastic_pack(x, bits, rng, v, scratch));
  return v;
}

// The affine dot product against the exact value (long double) within a few
// ulp of double, and the float-grid reference within its stated bound
// gamma_{n+4} sum_i (|lo_a| + s_a k_a)(|lo_b| + s_b k_b).
TEST(PackedKernels, AffineDotIsTheExactValueAndTheFloatGridIsWithinItsBound) {
  Rng rng(11);
  for (int bits : kBits) {
    for (std::size_t n : kSizes) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " n=" + std::to_string(n));
      std::vector<float> x(n), y(n);
      for (float& v : x) v = static_cast<float>(rng.normal() + 0.3);
      for (float& v : y) v = static_cast<float>(std::exp(rng.normal()));  // one-signed, skewed
      const packed::PackedVector a = quantized(x, bits, rng), b = quantized(y, bits, rng);
      std::vector<std::uint8_t> ka(n), kb(n);
      packed::unpack(a.bytes.data(), n, bits, ka.data());
      packed::unpack(b.bytes.data(), n, bits, kb.data());
      long double exact = 0.0L, magnitude = 0.0L;
      for (std::size_t i = 0; i < n; ++i) {
        const long double va = static_cast<long double>(a.lo) + static_cast<long double>(a.step) * ka[i];
        const long double vb = static_cast<long double>(b.lo) + static_cast<long double>(b.step) * kb[i];
        exact += va * vb;
        magnitude += (std::fabs(static_cast<long double>(a.lo)) + static_cast<long double>(a.step) * ka[i]) *
                     (std::fabs(static_cast<long double>(b.lo)) + static_cast<long double>(b.step) * kb[i]);
      }
      const double got = packed::affine_dot(a, b);
      EXPECT_LE(std::fabs(static_cast<long double>(got) - exact), 8 * 0x1.0p-53 * magnitude + n * 0x1.0p-63 * magnitude);
      const double gamma = (n + 4) * kU / (1.0 - (n + 4) * kU);
      EXPECT_LE(std::fabs(static_cast<long double>(packed::reference_dot(a, b)) - exact), gamma * magnitude);
    }
  }
}

TEST(PackedKernels, ExactWhereTheFloatGridIsExact) {
  // Integer grid points (lo = 0, step = 1: codes 0..2^b - 1 with both ends
  // present) and small sizes: every float product and sum is exact, so the
  // float-grid reference and the integer kernel agree to the bit.
  Rng rng(5);
  for (int bits : kBits) {
    for (std::size_t n : {2u, 17u, 100u}) {
      std::vector<float> x(n), y(n);
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = static_cast<float>(rng.below(1u << bits));
        y[i] = static_cast<float>(rng.below(1u << bits));
      }
      x[0] = y[0] = 0.0f;
      x[1] = y[1] = static_cast<float>((1u << bits) - 1u);
      const packed::PackedVector a = quantized(x, bits, rng), b = quantized(y, bits, rng);
      ASSERT_EQ(a.step, 1.0f);
      EXPECT_EQ(packed::affine_dot(a, b), static_cast<double>(packed::reference_dot(a, b)));
    }
  }
}

TEST(PackedKernels, StochasticCodesAreStochasticRoundsGridPoints) {
  for (int bits : kBits) {
    for (std::size_t n : kSizes) {
      Rng data(n);
      std::vector<float> x(n);
      for (float& v : x) v = static_cast<float>(data.normal());
      if (n == 7) std::fill(x.begin(), x.end(), 1.5f);  // constant block: exact, nothing drawn
      const UniformGrid grid = uniform_grid(x, bits);
      Rng r1(9), r2(9);
      std::vector<float> rounded(n);
      stochastic_round(x, grid, r1, rounded);
      std::vector<std::uint8_t> codes(n);
      ASSERT_TRUE(stochastic_codes(x, grid, r2, codes.data()));
      for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(grid.lo + static_cast<float>(codes[i]) * grid.step, rounded[i]);
      EXPECT_EQ(r1(), r2());  // the same number of draws
    }
  }
  std::vector<float> bad = {1.0f, NAN, 2.0f};
  std::vector<std::uint8_t> codes(3);
  Rng rng(1);
  EXPECT_FALSE(stochastic_codes(bad, uniform_grid(bad, 4), rng, codes.data()));
}

// The packed double-sampled gradient (the definition below fp32) against the
// float one on the same quantized values. Stated bound, per coordinate i:
//   |g_int - g_float| <= (1/n) sum_j (E_j |a1_ij| + 2 (n + 4) u |r2_j| |a1_ij|),
//   E_j = 2 (dim + 4) u (sum_i |w_i a2_ij| + |b| + |t_j|)  (the float residual's error),
// and the bias gradient and loss alike.
TEST(PackedKernels, PackedDoubleSamplingMatchesTheFloatGridWithinTheBound) {
  for (int bits : kBits) {
    for (std::size_t dim : {5u, 33u, 784u}) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " dim=" + std::to_string(dim));
      const std::size_t n = 13;
      Rng rng(dim * 31 + bits);
      std::vector<float> w(dim);
      for (float& v : w) v = static_cast<float>(0.2 * rng.normal());
      const packed::PackedVector pw = quantized(w, bits, rng);
      std::vector<std::uint8_t> kw(dim);
      packed::unpack(pw.bytes.data(), dim, bits, kw.data());
      arma::fvec params(dim + 1);
      for (std::size_t i = 0; i < dim; ++i) params[i] = pw.lo + static_cast<float>(kw[i]) * pw.step;
      params[dim] = 0.125f;
      std::vector<packed::PackedVector> outer, inner;
      arma::fmat a1(dim, n), a2(dim, n);
      std::vector<float> targets(n);
      for (std::size_t j = 0; j < n; ++j) {
        std::vector<float> x(dim);
        for (float& v : x) v = static_cast<float>(rng.uniform());
        targets[j] = static_cast<float>(rng.normal());
        outer.push_back(quantized(x, bits, rng));
        inner.push_back(quantized(x, bits, rng));
        std::vector<std::uint8_t> k(dim);
        packed::unpack(outer[j].bytes.data(), dim, bits, k.data());
        for (std::size_t i = 0; i < dim; ++i) a1(i, j) = outer[j].lo + static_cast<float>(k[i]) * outer[j].step;
        packed::unpack(inner[j].bytes.data(), dim, bits, k.data());
        for (std::size_t i = 0; i < dim; ++i) a2(i, j) = inner[j].lo + static_cast<float>(k[i]) * inner[j].step;
      }
      arma::fvec g_float, g_int;
      const double l2 = 0.01;
      const double loss_float = double_sampled_least_squares(params, a1, a2, targets, l2, g_float);
      const double loss_int = packed_double_sampled_least_squares(pw, {params.memptr(), dim}, params[dim], outer,
                                                                  inner, targets, l2, g_int);
      ASSERT_EQ(g_int.n_elem, dim + 1);
      std::vector<double> r2(n), err(n);
      double r_bound = 0.0;
      for (std::size_t j = 0; j < n; ++j) {
        double dot = 0.0, mag = 0.0;
        for (std::size_t i = 0; i < dim; ++i) {
          dot += static_cast<double>(params[i]) * a2(i, j);
          mag += std::fabs(static_cast<double>(params[i]) * a2(i, j));
        }
        r2[j] = dot + params[dim] - targets[j];
        err[j] = 2 * (dim + 4) * kU * (mag + std::fabs(params[dim]) + std::fabs(targets[j]));
        r_bound += err[j] / n;
      }
      for (std::size_t i = 0; i < dim; ++i) {
        double bound = 0.0;
        for (std::size_t j = 0; j < n; ++j)
          bound += (err[j] * std::fabs(a1(i, j)) + 2 * (n + 4) * kU * std::fabs(r2[j] * a1(i, j))) / n;
        bound += 2 * kU * l2 * std::fabs(params[i]);
        EXPECT_LE(std::fabs(static_cast<double>(g_int[i]) - g_float[i]), bound) << "coordinate " << i;
      }
      double r2_abs = 0.0;
      for (double r : r2) r2_abs += std::fabs(r) / n;
      EXPECT_LE(std::fabs(static_cast<double>(g_int[dim]) - g_float[dim]), r_bound + 2 * (n + 4) * kU * r2_abs);
      EXPECT_NEAR(loss_int, loss_float, 1e-4 * (1.0 + std::fabs(loss_float)));
    }
  }
}

// A network case for packed_dense_cross_entropy: widths {in, classes}
// (softmax regression) or {in, hidden, classes} (an MLP), the model
// quantized per layer as QuantizedCompute does (the first weight layer packed
// row by row on its one grid), n packed samples, and the same values as
// floats (the float-grid operands).
struct DenseCase {
  std::vector<std::size_t> widths;
  arma::fvec values;
  std::vector<packed::PackedVector> rows, samples;
  std::vector<std::uint32_t> labels;
  arma::fmat inputs;  // in x n, the samples' grid points
  std::vector<std::vector<std::uint8_t>> sample_codes;
};

DenseCase dense_case(std::vector<std::size_t> widths, std::size_t n, int bits, std::uint64_t seed) {
  DenseCase c;
  c.widths = widths;
  Rng rng(seed);
  std::size_t total = 0;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) total += widths[l] * widths[l + 1] + widths[l + 1];
  arma::fvec params(total);
  for (float& v : params) v = static_cast<float>(0.3 * rng.normal());
  const std::size_t in = widths[0], out = widths[1];
  // First weight layer: one grid, packed row by row; the rest rounded as one
  // block (any grid points will do here; QuantizedCompute rounds per layer).
  std::vector<float> w(params.memptr(), params.memptr() + in * out);
  const UniformGrid grid = uniform_grid(w, bits);
  std::vector<std::uint8_t> codes(w.size());
  EXPECT_TRUE(stochastic_codes(w, grid, rng, codes.data()));
  c.values = params;
  for (std::size_t i = 0; i < w.size(); ++i) c.values[i] = grid.lo + static_cast<float>(codes[i]) * grid.step;
  for (std::size_t o = 0; o < out; ++o) {
    packed::PackedVector row;
    row.lo = grid.lo;
    row.step = grid.step;
    row.bits = bits;
    row.n = in;
    packed::pack({codes.data() + o * in, in}, bits, row.bytes);
    row.code_sum = packed::sum_codes(row.bytes.data(), in, bits);
    c.rows.push_back(std::move(row));
  }
  const std::span<float> rest(c.values.memptr() + in * out, total - in * out);
  stochastic_quantize(rest, bits, rng, rest);
  c.inputs.set_size(in, n);
  for (std::size_t j = 0; j < n; ++j) {
    std::vector<float> x(in);
    for (float& v : x) v = static_cast<float>(j % 2 == 0 ? rng.uniform() : rng.normal());  // pixels, and signed
    c.samples.push_back(quantized(x, bits, rng));
    std::vector<std::uint8_t> k(in);
    packed::unpack(c.samples[j].bytes.data(), in, bits, k.data());
    for (std::size_t i = 0; i < in; ++i) c.inputs(i, j) = c.samples[j].lo + static_cast<float>(k[i]) * c.samples[j].step;
    c.sample_codes.push_back(std::move(k));
    c.labels.push_back(static_cast<std::uint32_t>(rng.below(widths.back())));
  }
  return c;
}

// Softmax regression's packed function on one path against a scalar
// reference, bit for bit: the exact integer dot product combined as
// affine_dot states, the softmax cross-entropy, and the weight gradient's
// float axpy over the codes in sample order.
void check_softmax_path(simd::Isa isa) {
  for (int bits : kBits) {
    for (std::size_t in : {1u, 17u, 33u, 785u}) {
      for (std::size_t classes : {2u, 10u}) {
        SCOPED_TRACE(std::string(simd::isa_name(isa)) + " bits=" + std::to_string(bits) + " in=" +
                     std::to_string(in) + " classes=" + std::to_string(classes));
        const std::size_t n = 5;
        const DenseCase c = dense_case({in, classes}, n, bits, in * 7 + classes + bits);
        arma::fvec grad;
        const double loss = packed_dense_cross_entropy(c.widths, c.values, c.rows, c.samples, c.labels, grad, isa);
        std::vector<std::vector<std::uint8_t>> row_codes(classes, std::vector<std::uint8_t>(in));
        for (std::size_t o = 0; o < classes; ++o) packed::unpack(c.rows[o].bytes.data(), in, bits, row_codes[o].data());
        arma::fmat z(classes, n);
        for (std::size_t j = 0; j < n; ++j) {
          for (std::size_t o = 0; o < classes; ++o) {
            std::uint64_t d = 0, sw = 0, sa = 0;
            for (std::size_t i = 0; i < in; ++i) {
              d += static_cast<std::uint64_t>(row_codes[o][i]) * c.sample_codes[j][i];
              sw += row_codes[o][i];
              sa += c.sample_codes[j][i];
            }
            const double lw = c.rows[o].lo, la = c.samples[j].lo, stw = c.rows[o].step, sta = c.samples[j].step;
            const double dot = static_cast<double>(in) * lw * la + lw * sta * static_cast<double>(sa) +
                               stw * la * static_cast<double>(sw) + stw * sta * static_cast<double>(d);
            z(o, j) = static_cast<float>(dot + static_cast<double>(c.values[in * classes + o]));
          }
        }
        std::size_t correct = 0;
        const double expected_loss =
            model_kernels::softmax_cross_entropy(z, c.labels, 1.0f / static_cast<float>(n), correct) / n;
        arma::fvec expected(c.values.n_elem, arma::fill::zeros);
        for (std::size_t o = 0; o < classes; ++o) {
          for (std::size_t j = 0; j < n; ++j) {
            const double d = z(o, j);
            if (d == 0.0) continue;
            const float alpha = static_cast<float>(d * c.samples[j].lo), beta = static_cast<float>(d * c.samples[j].step);
            for (std::size_t i = 0; i < in; ++i) {
              float t = static_cast<float>(c.sample_codes[j][i]) * beta;
              t = t + alpha;
              expected[o * in + i] = expected[o * in + i] + t;
            }
          }
        }
        arma::fvec bias_grad(expected.memptr() + in * classes, classes, false, true);
        bias_grad += arma::sum(z, 1);
        EXPECT_EQ(loss, expected_loss);
        EXPECT_TRUE(std::equal(grad.begin(), grad.end(), expected.begin(), expected.end()));
      }
    }
  }
}

TEST(PackedKernels, PackedSoftmaxBaselinePathIsTheScalarReference) { check_softmax_path(simd::Isa::kBaseline); }

TEST(PackedKernels, PackedSoftmaxAvx2PathIsTheScalarReference) {
  if (simd::cpu_isa() < simd::Isa::kAvx2) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 path is not tested here";
  check_softmax_path(simd::Isa::kAvx2);
}

TEST(PackedKernels, PackedSoftmaxAvx512PathIsTheScalarReference) {
  if (simd::cpu_isa() < simd::Isa::kAvx512)
    GTEST_SKIP() << "this CPU has no AVX-512: the AVX-512 path is not tested here (run on an AVX-512 machine)";
  check_softmax_path(simd::Isa::kAvx512);
}

// The packed network function (the definition below fp32) against the
// model's own float kernels on the same quantized values. Stated bound, from
// the exact (long double) values, first order, u = 2^-24, g(m) = m u / (1 - m u):
//  - first-layer pre-activation z1_oj: E1 = 2 g(in + 2) M1 (M1 = sum_i |w_oi a_ij| + |b_o|);
//  - (MLP) hidden ReLU 1-Lipschitz (the case asserts no unit within E1 of 0,
//    where the two paths could clip differently), logits z2: E2 = sum_o |w2_co| E1_oj + 2 g(hidden + 2) M2;
//  - softmax: |dp_c| <= p_c (2.5 max_c E + 2 (classes + 6) u + 2 u |z_c - max z|),
//    delta = (p - y) / n with 2 u |delta| more;
//  - a weight gradient: sum_j (|d delta| |x| + |delta| |dx|) + 2 g(n + 3) sum_j |delta| (|lo_j| + step_j k_ij)
//    (the float GEMM's accumulation and the axpy's three roundings per term);
//    the hidden delta through W2: sum_c |w2| |d delta| + 2 g(classes + 1) sum_c |w2 delta|;
//  - the loss: (1/n) sum_j (2 max_c E + 2 (classes + 4) u (1 + loss_j + |z_y - max z|)).
void check_against_float_grid(const DenseCase& c, const Model& model) {
  using Real = long double;
  const std::size_t in = c.widths[0], n = c.samples.size(), classes = c.widths.back();
  const bool hidden = c.widths.size() == 3;
  const std::size_t out = c.widths[1];
  auto g = [](double m) { return m * kU / (1.0 - m * kU); };
  Dataset data;
  data.features = c.inputs;
  data.labels = c.labels;
  data.num_classes = static_cast<std::uint32_t>(classes);
  std::vector<std::uint32_t> batch(n);
  for (std::size_t j = 0; j < n; ++j) batch[j] = static_cast<std::uint32_t>(j);
  arma::fvec g_float, g_int;
  const double loss_float = model.loss_and_gradient(c.values, data, batch, g_float);
  const double loss_int = packed_dense_cross_entropy(c.widths, c.values, c.rows, c.samples, c.labels, g_int);
  ASSERT_EQ(g_int.n_elem, g_float.n_elem);
  const float* v = c.values.memptr();
  const std::size_t b1 = in * out;  // first bias offset
  // First layer, exact.
  std::vector<Real> z1(out * n), e1(out * n);
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t o = 0; o < out; ++o) {
      Real z = v[b1 + o], m = std::fabs(static_cast<Real>(v[b1 + o]));
      for (std::size_t i = 0; i < in; ++i) {
        z += static_cast<Real>(v[o * in + i]) * c.inputs(i, j);
        m += std::fabs(static_cast<Real>(v[o * in + i]) * c.inputs(i, j));
      }
      z1[o + out * j] = z;
      e1[o + out * j] = 2 * g(in + 2) * m;
    }
  std::vector<Real> h(z1), z(z1), e(e1);
  const std::size_t w2 = b1 + out, b2 = w2 + out * classes;
  if (hidden) {
    for (std::size_t k = 0; k < h.size(); ++k) {
      ASSERT_GT(std::fabs(z1[k]), e1[k]) << "a hidden unit within rounding of the ReLU's kink: pick another seed";
      h[k] = std::max(z1[k], Real(0));
    }
    z.assign(classes * n, 0);
    e.assign(classes * n, 0);
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t cl = 0; cl < classes; ++cl) {
        Real s = v[b2 + cl], m = std::fabs(static_cast<Real>(v[b2 + cl])), prop = 0;
        for (std::size_t o = 0; o < out; ++o) {
          const Real w = v[w2 + cl * out + o];
          s += w * h[o + out * j];
          m += std::fabs(w * h[o + out * j]);
          if (z1[o + out * j] > 0) prop += std::fabs(w) * e1[o + out * j];
        }
        z[cl + classes * j] = s;
        e[cl + classes * j] = prop + 2 * g(out + 2) * m;
      }
  }
  // Softmax, its gradient and the bound on its difference.
  std::vector<Real> delta(classes * n), d_delta(classes * n);
  Real loss_bound = 0;
  for (std::size_t j = 0; j < n; ++j) {
    Real mx = z[classes * j], emax = 0, sum = 0;
    for (std::size_t cl = 0; cl < classes; ++cl) {
      mx = std::max(mx, z[cl + classes * j]);
      emax = std::max(emax, e[cl + classes * j]);
    }
    for (std::size_t cl = 0; cl < classes; ++cl) sum += std::exp(z[cl + classes * j] - mx);
    for (std::size_t cl = 0; cl < classes; ++cl) {
      const Real shift = std::fabs(z[cl + classes * j] - mx);
      const Real p = std::exp(z[cl + classes * j] - mx) / sum;
      const Real d = (p - (cl == c.labels[j] ? 1 : 0)) / n;
      delta[cl + classes * j] = d;
      d_delta[cl + classes * j] = p * (2.5L * emax + 2 * (classes + 6) * kU + 2 * kU * shift) / n + 2 * kU * std::fabs(d);
    }
    const Real loss_j = std::log(sum) - (z[c.labels[j] + classes * j] - mx);
    loss_bound += (2 * emax + 2 * (classes + 4) * kU * (1 + loss_j + std::fabs(z[c.labels[j] + classes * j] - mx))) / n;
  }
  EXPECT_LE(std::fabs(loss_int - loss_float), loss_bound);
  std::vector<Real> delta1(delta), d_delta1(d_delta);
  if (hidden) {
    // Output layer gradients, then the hidden delta through W2 and the ReLU.
    for (std::size_t cl = 0; cl < classes; ++cl) {
      Real bias_bound = 0, bias_mag = 0;
      for (std::size_t o = 0; o < out; ++o) {
        Real bound = 0, mag = 0;
        for (std::size_t j = 0; j < n; ++j) {
          bound += d_delta[cl + classes * j] * h[o + out * j] + std::fabs(delta[cl + classes * j]) * e1[o + out * j];
          mag += std::fabs(delta[cl + classes * j] * h[o + out * j]);
        }
        bound += 2 * g(n + 3) * mag;
        const std::size_t k = w2 + cl * out + o;
        EXPECT_LE(std::fabs(static_cast<Real>(g_int[k]) - g_float[k]), bound) << "output weight " << cl << "," << o;
      }
      for (std::size_t j = 0; j < n; ++j) {
        bias_bound += d_delta[cl + classes * j];
        bias_mag += std::fabs(delta[cl + classes * j]);
      }
      EXPECT_LE(std::fabs(static_cast<Real>(g_int[b2 + cl]) - g_float[b2 + cl]), bias_bound + 2 * g(n + 3) * bias_mag);
    }
    delta1.assign(out * n, 0);
    d_delta1.assign(out * n, 0);
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t o = 0; o < out; ++o) {
        if (!(z1[o + out * j] > 0)) continue;
        Real s = 0, bound = 0, mag = 0;
        for (std::size_t cl = 0; cl < classes; ++cl) {
          const Real w = v[w2 + cl * out + o];
          s += w * delta[cl + classes * j];
          bound += std::fabs(w) * d_delta[cl + classes * j];
          mag += std::fabs(w * delta[cl + classes * j]);
        }
        delta1[o + out * j] = s;
        d_delta1[o + out * j] = bound + 2 * g(classes + 1) * mag;
      }
  }
  // First layer gradients.
  for (std::size_t o = 0; o < out; ++o) {
    for (std::size_t i = 0; i < in; ++i) {
      Real bound = 0, mag = 0;
      for (std::size_t j = 0; j < n; ++j) {
        bound += d_delta1[o + out * j] * std::fabs(static_cast<Real>(c.inputs(i, j)));
        mag += std::fabs(delta1[o + out * j]) *
               (std::fabs(static_cast<Real>(c.samples[j].lo)) + static_cast<Real>(c.samples[j].step) * c.sample_codes[j][i]);
      }
      bound += 2 * g(n + 3) * mag;
      const std::size_t k = o * in + i;
      EXPECT_LE(std::fabs(static_cast<Real>(g_int[k]) - g_float[k]), bound) << "first-layer weight " << o << "," << i;
    }
    Real bound = 0, mag = 0;
    for (std::size_t j = 0; j < n; ++j) {
      bound += d_delta1[o + out * j];
      mag += std::fabs(delta1[o + out * j]);
    }
    EXPECT_LE(std::fabs(static_cast<Real>(g_int[b1 + o]) - g_float[b1 + o]), bound + 2 * g(n + 3) * mag);
  }
}

TEST(PackedKernels, PackedSoftmaxMatchesTheFloatGridWithinTheBound) {
  for (int bits : kBits) {
    for (std::size_t in : {5u, 33u, 784u}) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " in=" + std::to_string(in));
      const SoftmaxRegression model(Config::parse_string("{}\n", "test.yaml"), ModelInput{in, 10});
      check_against_float_grid(dense_case({in, 10}, 13, bits, in * 13 + bits), model);
    }
  }
}

TEST(PackedKernels, PackedMlpMatchesTheFloatGridWithinTheBound) {
  for (int bits : kBits) {
    for (std::size_t in : {5u, 33u, 784u}) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " in=" + std::to_string(in));
      const Mlp model(Config::parse_string("hidden: [16]\n", "test.yaml"), ModelInput{in, 10});
      check_against_float_grid(dense_case({in, 16, 10}, 13, bits, in * 17 + bits), model);
    }
  }
}

TEST(PackedKernels, PackedMlpIsBitIdenticalOnEveryPath) {
  if (simd::cpu_isa() < simd::Isa::kAvx512)
    std::printf("this CPU has no AVX-512: the packed MLP's AVX-512 path is not tested here\n");
  for (int bits : kBits) {
    const DenseCase c = dense_case({33, 7, 3}, 5, bits, 100 + bits);
    arma::fvec base, other;
    const double loss = packed_dense_cross_entropy(c.widths, c.values, c.rows, c.samples, c.labels, base,
                                                   simd::Isa::kBaseline);
    for (simd::Isa isa : {simd::Isa::kAvx2, simd::Isa::kAvx512}) {
      if (simd::cpu_isa() < isa) continue;  // said above
      EXPECT_EQ(packed_dense_cross_entropy(c.widths, c.values, c.rows, c.samples, c.labels, other, isa), loss);
      EXPECT_TRUE(std::equal(base.begin(), base.end(), other.begin(), other.end())) << simd::isa_name(isa);
    }
  }
}

// QuantizedCompute takes the packed path for softmax regression and the MLP
// with the float-grid path's draws in its order (model layers, samples,
// gradient layers): the same number of draws, the same loss within rounding,
// and every gradient coordinate within one step of its layer's grid (the
// gradient is rounded with the same uniforms onto grids that differ by rounding).
TEST(PackedKernels, QuantizedComputeDrawsAsTheFloatGridPath) {
  const Config empty = Config::parse_string("{}\n", "test.yaml");
  const SoftmaxRegression softmax(empty, ModelInput{20, 4});
  const Mlp mlp(Config::parse_string("hidden: [8]\n", "test.yaml"), ModelInput{20, 4});
  Dataset data;
  Rng data_rng(4);
  data.features.set_size(20, 12);
  for (float& x : data.features) x = static_cast<float>(data_rng.uniform());
  for (std::size_t j = 0; j < 12; ++j) data.labels.push_back(static_cast<std::uint32_t>(data_rng.below(4)));
  data.num_classes = 4;
  const std::vector<std::uint32_t> batch = {3, 0, 7, 11, 5};
  for (const Model* model : {static_cast<const Model*>(&softmax), static_cast<const Model*>(&mlp)}) {
    for (Precision precision : {Precision::kInt8, Precision::kInt4, Precision::kInt2}) {
      const int bits = precision_bits(precision);
      SCOPED_TRACE("params=" + std::to_string(model->num_params()) + " bits=" + std::to_string(bits));
      arma::fvec params(model->num_params());
      Rng init(9);
      for (float& v : params) v = static_cast<float>(0.2 * init.normal());
      Rng r1(21), r2(21);
      QuantizedCompute compute(*model, precision);
      arma::fvec g_packed, g_float;
      const double loss_packed = compute.loss_and_gradient(params, data, batch, r1, g_packed);
      // The float-grid path by hand.
      arma::fvec q = params;
      for (const Layer& layer : model->layers())
        stochastic_quantize({q.memptr() + layer.offset, layer.size}, bits, r2, {q.memptr() + layer.offset, layer.size});
      Dataset quantized_batch;
      quantized_batch.features.set_size(20, batch.size());
      quantized_batch.num_classes = 4;
      for (std::size_t j = 0; j < batch.size(); ++j) {
        stochastic_quantize({data.features.colptr(batch[j]), 20}, bits, r2, {quantized_batch.features.colptr(j), 20});
        quantized_batch.labels.push_back(data.labels[batch[j]]);
      }
      const std::vector<std::uint32_t> order = {0, 1, 2, 3, 4};
      const double loss_float = model->loss_and_gradient(q, quantized_batch, order, g_float);
      for (const Layer& layer : model->layers()) {
        const UniformGrid grid = uniform_grid({g_float.memptr() + layer.offset, layer.size}, bits);
        stochastic_quantize({g_float.memptr() + layer.offset, layer.size}, bits, r2,
                            {g_float.memptr() + layer.offset, layer.size});
        for (std::size_t i = layer.offset; i < layer.offset + layer.size; ++i)
          EXPECT_LE(std::fabs(g_packed[i] - g_float[i]), 1.001 * grid.step + 1e-6) << layer.name << " " << i;
      }
      EXPECT_EQ(r1(), r2());
      EXPECT_NEAR(loss_packed, loss_float, 1e-5 * (1 + std::fabs(loss_float)));
    }
  }
}

// Double sampling's second sample is billed: two clients (one per class),
// linear regression, one fp32 and one int8 on the same table profile. Per
// round, by hand: the fp32 client computes 2 (d + 1) MACs per sample, the
// int8 client 3 (d + 1) (the second forward pass w^T Q2(a) + b), each over
// local_steps * batch_size samples.
TEST(PackedKernels, DoubleSamplingsSecondSampleIsBilled) {
  const std::string yaml =
      "data: {source: synthetic_regression, train_samples: 200, test_samples: 50, dim: 10}\n"
      "model: {name: linear_regression}\n"
      "clients: 2\nclients_per_round: 2\nlocal_steps: 3\nbatch_size: 8\nlearning_rate: 0.05\n"
      "rounds: 2\noutput: {progress: false}\n"
      "profiles: {p: {macs_per_s: {fp32: 1e9, int8: 4e9}, joules_per_mac: {fp32: 1e-9, int8: 2e-10}}}\n"
      "population: [{name: a, fraction: 0.5, profile: p, precision: fp32},\n"
      "             {name: b, fraction: 0.5, profile: p, precision: int8}]\n";
  Scenario sc = parse_scenario(yaml, "billing.yaml", {});
  Simulation sim(sc);
  const RunSummary run = sim.run();
  ASSERT_EQ(run.rounds.size(), 2u);
  const double d = 10, samples = 3 * 8;
  const double fp32_j = 2 * (d + 1) * samples * 1e-9;   // 528 MACs: 5.28e-7 J
  const double int8_j = 3 * (d + 1) * samples * 2e-10;  // 792 MACs: 1.584e-7 J (1.056e-7 without the second sample)
  for (const RoundMetrics& m : run.rounds) {
    EXPECT_EQ(m.clients, 2u);
    EXPECT_NEAR(m.energy.compute_j, fp32_j + int8_j, 1e-15);
  }
}

// ZipML's optimal markers: lower rounding variance than uniform levels on
// skewed data, within 1% of (and never above) them on uniform data.
TEST(ZipmlMarkers, LowerVarianceThanUniformOnSkewedDataWithinOnePercentOnUniform) {
  for (std::size_t levels : {4u, 16u}) {
    SCOPED_TRACE("levels=" + std::to_string(levels));
    Rng rng(levels);
    std::vector<float> skewed(5000), uniform(5000);
    for (float& x : skewed) x = static_cast<float>(std::exp(1.5 * rng.normal()));  // log-normal
    for (float& x : uniform) x = static_cast<float>(rng.uniform());
    for (auto* data : {&skewed, &uniform}) {
      const auto [lo, hi] = std::minmax_element(data->begin(), data->end());
      const std::vector<float> u = uniform_markers(*lo, *hi, levels);
      const std::vector<float> m = optimal_markers(*data, levels);
      ASSERT_EQ(m.size(), levels);
      EXPECT_EQ(m.front(), *lo);
      EXPECT_EQ(m.back(), *hi);
      EXPECT_TRUE(std::is_sorted(m.begin(), m.end()));
      const double vu = rounding_variance(*data, u), vm = rounding_variance(*data, m);
      RecordProperty(std::string(data == &skewed ? "skewed" : "uniform") + "_levels" + std::to_string(levels),
                     std::to_string(vm / vu));
      EXPECT_LE(vm, vu * (1 + 1e-9));
      if (data == &skewed) {
        EXPECT_LT(vm, 0.5 * vu) << "optimal " << vm << " uniform " << vu;
      } else {
        EXPECT_GE(vm, 0.99 * vu) << "optimal " << vm << " uniform " << vu;
      }
    }
  }
  // Few distinct values: the markers are those values, no variance left.
  const std::vector<float> pixels = {0, 0, 0, 0.5f, 0.5f, 1, 0, 0.25f};
  EXPECT_EQ(rounding_variance(pixels, optimal_markers(pixels, 4)), 0.0);
}

TEST(ZipmlMarkers, StochasticRoundingOntoMarkersIsUnbiased) {
  const std::vector<float> markers = {0.0f, 0.1f, 0.5f, 2.0f};
  const std::vector<float> x = {0.0f, 0.05f, 0.3f, 1.9f, 2.0f, 0.1f};
  std::vector<double> mean(x.size(), 0.0);
  Rng rng(1);
  std::vector<float> out(x.size());
  const int draws = 200000;
  for (int d = 0; d < draws; ++d) {
    stochastic_round_markers(x, markers, rng, out);
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::find(markers.begin(), markers.end(), out[i]) != markers.end());
      mean[i] += out[i] / draws;
    }
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    // Standard error <= (u - l) / 2 / sqrt(draws) <= 0.0034; 5 of them.
    EXPECT_NEAR(mean[i], x[i], 0.017) << i;
  }
}

TEST(ZipmlMarkers, ScenarioKeyRunsAndRejectsBadValues) {
  const std::string yaml =
      "data: {source: synthetic_regression, train_samples: 400, test_samples: 50, dim: 8}\n"
      "model: {name: linear_regression}\n"
      "clients: 4\nclients_per_round: 2\nlocal_steps: 3\nbatch_size: 8\nlearning_rate: 0.05\n"
      "rounds: 3\noutput: {progress: false}\n"
      "population: [{name: a, fraction: 1.0, precision: int2}]\n";
  auto run = [&](const std::string& levels) {
    Scenario sc = parse_scenario(yaml + "quantization_levels: " + levels + "\n", "m.yaml", {});
    Simulation sim(sc);
    return sim.run().final_loss;
  };
  const double uniform = run("uniform"), optimal = run("optimal");
  EXPECT_TRUE(std::isfinite(optimal));
  EXPECT_NE(uniform, optimal);
  EXPECT_EQ(optimal, run("optimal"));
  try {
    run("nonuniform");
    FAIL() << "accepted quantization_levels: nonuniform";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("quantization_levels"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fedsim
