// Every SIMD kernel gives bit-identical results on every instruction-set
// path (core/base/simd.h). Kernels with an explicit-ISA entry point are
// compared variant against variant in one process; the quantizers, whose
// variants are internal, are pinned to digests, so that running this test
// with FEDSIM_SIMD=avx2 / baseline and on narrower CPUs (tools/check_isa.sh
// runs it under qemu) compares their paths too. A variant this CPU lacks is
// replaced by the widest one it has (simd::pick), so on an AVX2 machine the
// AVX-512 path is not covered here.
#include "core/base/simd.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "core/base/lane_rng.h"
#include "core/base/rng.h"
#include "core/compression/natural_compression.h"
#include "core/compression/qsgd.h"
#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

constexpr simd::Isa kIsas[] = {simd::Isa::kBaseline, simd::Isa::kAvx2, simd::Isa::kAvx512};

const char* isa_name(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return "avx512";
    case simd::Isa::kAvx2: return "avx2";
    case simd::Isa::kBaseline: break;
  }
  return "baseline";
}

// Gaussian coordinates times a random power of two, so that the sums cover
// many exponents; some exact zeros and negative zeros.
std::vector<float> random_vector(Rng& rng, std::size_t n) {
  std::vector<float> v(n);
  for (float& x : v) {
    const auto kind = rng.below(16);
    if (kind == 0) x = 0.0f;
    else if (kind == 1) x = -0.0f;
    else x = std::ldexp(static_cast<float>(rng.normal()), static_cast<int>(rng.below(40)) - 20);
  }
  return v;
}

// FNV-1a over bytes, for the digests below.
std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t size) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

TEST(Simd, ReportsThePathInUse) {
  std::printf("cpu_isa=%s best_isa=%s\n", isa_name(simd::cpu_isa()), isa_name(simd::best_isa()));
  EXPECT_LE(simd::best_isa(), simd::cpu_isa());
  EXPECT_LE(simd::pick(simd::Isa::kAvx512, 2, 1, 0), static_cast<int>(simd::cpu_isa()));
}

TEST(Simd, NormsAreTheSameOnEveryPath) {
  Rng rng(11);
  std::vector<std::size_t> sizes;
  for (std::size_t n = 0; n <= 70; ++n) sizes.push_back(n);
  for (std::size_t n : {255, 256, 1000, 4099}) sizes.push_back(n);
  for (std::size_t n : sizes) {
    const std::vector<float> v = random_vector(rng, n);
    const double l2 = l2_norm(v.data(), n, simd::Isa::kBaseline);
    const float max = max_abs(v.data(), n, simd::Isa::kBaseline);
    for (simd::Isa isa : kIsas) {
      EXPECT_EQ(std::bit_cast<std::uint64_t>(l2_norm(v.data(), n, isa)), std::bit_cast<std::uint64_t>(l2))
          << "n=" << n << " " << isa_name(isa);
      EXPECT_EQ(std::bit_cast<std::uint32_t>(max_abs(v.data(), n, isa)), std::bit_cast<std::uint32_t>(max))
          << "n=" << n << " " << isa_name(isa);
    }
    EXPECT_EQ(std::bit_cast<std::uint64_t>(l2_norm(v.data(), n)), std::bit_cast<std::uint64_t>(l2));
    EXPECT_EQ(std::bit_cast<std::uint32_t>(max_abs(v.data(), n)), std::bit_cast<std::uint32_t>(max));
  }
}

TEST(Simd, MaxAbsIsNanWithANanOnEveryPath) {
  for (std::size_t n : {1, 7, 8, 9, 17, 100}) {
    for (std::size_t at = 0; at < n; at += 3) {
      std::vector<float> v(n, -2.0f);
      v[at] = std::numeric_limits<float>::quiet_NaN();
      for (simd::Isa isa : kIsas) EXPECT_TRUE(std::isnan(max_abs(v.data(), n, isa))) << n << " " << at;
    }
  }
}

TEST(Simd, LaneRngIsTheSameOnEveryPath) {
  Rng seed(5);
  LaneRng base(seed);
  std::vector<LaneRng> others;
  for (std::size_t k = 0; k < std::size(kIsas); ++k) {
    Rng same(5);
    others.emplace_back(same);
  }
  for (std::size_t steps : {1, 3, 64, 129}) {
    std::vector<std::uint64_t> expected(steps * LaneRng::kLanes), got(expected.size());
    base.fill(expected.data(), steps);
    for (std::size_t k = 0; k < std::size(kIsas); ++k) {
      others[k].fill(got.data(), steps, kIsas[k]);
      EXPECT_EQ(got, expected) << isa_name(kIsas[k]) << " steps=" << steps;
    }
  }
}

// Bytes and reconstruction of the quantizers, digested. The digests were
// recorded on the AVX2 and baseline paths (FEDSIM_SIMD=avx2 / baseline); a
// mismatch on one path only is a kernel that differs by instruction set. A
// deliberate change of the wire format or the random draws changes them all:
// re-record from the printed value.
std::uint64_t quantizer_digest(Compressor& c, std::size_t dim, std::uint64_t seed) {
  Rng data(seed);
  const std::vector<float> v = random_vector(data, dim);
  Rng rng(seed + 1);
  Bytes out;
  std::vector<float> rec(dim), decoded(dim);
  c.encode(v, rng, out, rec);
  c.decode(out, decoded);
  EXPECT_EQ(rec, decoded);
  std::uint64_t h = 0xcbf29ce484222325ULL;
  h = fnv1a(h, out.data(), out.size());
  return fnv1a(h, rec.data(), rec.size() * sizeof(float));
}

TEST(Simd, QuantizersGiveTheRecordedBytesOnEveryPath) {
  struct Case {
    const char* name;
    std::uint64_t digest;
    std::uint64_t (*run)();
  };
  const Case cases[] = {
      {"qsgd s=1 fixed (2-bit packing)", 0x0cb14128f9db068eULL, [] {
         Qsgd q(3001, 1, 512, Qsgd::Norm::kL2, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 3001, 1);
       }},
      {"qsgd s=7 fixed max-norm (4-bit packing)", 0x9b225038ac65334fULL, [] {
         Qsgd q(3001, 7, 1000, Qsgd::Norm::kMax, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 3001, 2);
       }},
      {"qsgd s=127 fixed (8-bit packing)", 0x3d735af83a9359c5ULL, [] {
         Qsgd q(2053, 127, 0, Qsgd::Norm::kL2, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 2053, 3);
       }},
      {"qsgd s=15 fixed (5-bit codes)", 0x18d3bb03eda6b090ULL, [] {
         Qsgd q(2053, 15, 700, Qsgd::Norm::kMax, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 2053, 4);
       }},
      {"qsgd s=45 elias", 0x7882bc6c6b0fef05ULL, [] {
         Qsgd q(2053, 45, 0, Qsgd::Norm::kL2, Qsgd::Coding::kElias);
         return quantizer_digest(q, 2053, 5);
       }},
      {"natural compression", 0xc5bc354698eeb143ULL, [] {
         NaturalCompression c(3001);
         return quantizer_digest(c, 3001, 6);
       }},
  };
  for (const Case& c : cases) {
    const std::uint64_t digest = c.run();
    EXPECT_EQ(digest, c.digest) << c.name << " on the " << isa_name(simd::best_isa()) << " path: digest 0x"
                                << std::hex << digest;
  }
}

}  // namespace
}  // namespace fedsim
