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
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "core/base/lane_rng.h"
#include "core/base/rng.h"
#include "core/coding/bit_io.h"
#include "core/compression/error_feedback.h"
#include "core/compression/fedvote_quantizer.h"
#include "core/compression/hadamard_rotation.h"
#include "core/compression/lane_kernels.h"
#include "core/compression/natural_compression.h"
#include "core/compression/natural_dithering.h"
#include "core/compression/qsgd.h"
#include "core/compression/sign_compressor.h"
#include "core/compression/terngrad.h"
#include "core/compression/top_k.h"
#include "core/compression/vector_norms.h"

namespace fedsim {
namespace {

constexpr simd::Isa kIsas[] = {simd::Isa::kBaseline, simd::Isa::kAvx2, simd::Isa::kAvx512};

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
  std::printf("cpu_isa=%s best_isa=%s\n", simd::isa_name(simd::cpu_isa()), simd::isa_name(simd::best_isa()));
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
          << "n=" << n << " " << simd::isa_name(isa);
      EXPECT_EQ(std::bit_cast<std::uint32_t>(max_abs(v.data(), n, isa)), std::bit_cast<std::uint32_t>(max))
          << "n=" << n << " " << simd::isa_name(isa);
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
      EXPECT_EQ(got, expected) << simd::isa_name(kIsas[k]) << " steps=" << steps;
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
      {"qsgd s=2^20 elias (levels past the short codes)", 0x1ee748cb88e43853ULL, [] {
         Qsgd q(5000, 1u << 20, 0, Qsgd::Norm::kL2, Qsgd::Coding::kElias);
         return quantizer_digest(q, 5000, 7);
       }},
      {"qsgd s=300 elias max-norm (long gaps)", 0x011a8210d5c22295ULL, [] {
         Qsgd q(5000, 300, 1500, Qsgd::Norm::kMax, Qsgd::Coding::kElias);
         return quantizer_digest(q, 5000, 8);
       }},
      {"qsgd s=3 fixed (3-bit codes)", 0xa3a8ede017148002ULL, [] {
         Qsgd q(3001, 3, 512, Qsgd::Norm::kL2, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 3001, 9);
       }},
      {"qsgd s=1000 fixed (11-bit codes)", 0x3928234ab758b38dULL, [] {
         Qsgd q(2053, 1000, 0, Qsgd::Norm::kMax, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 2053, 10);
       }},
      {"qsgd s=40000 fixed (17-bit codes)", 0x5b3a0ffe36e54c3aULL, [] {
         Qsgd q(2053, 40000, 0, Qsgd::Norm::kMax, Qsgd::Coding::kFixed);
         return quantizer_digest(q, 2053, 11);
       }},
      {"hadamard_rotation block 1024 + qsgd s=7", 0xcbf4449f80f1b19cULL, [] {
         HadamardRotation h(std::make_unique<Qsgd>(3001, 7, 512, Qsgd::Norm::kL2, Qsgd::Coding::kFixed), 3001, 1024,
                            42);
         return quantizer_digest(h, 3001, 12);
       }},
      {"hadamard_rotation block 64 + qsgd elias", 0x266c008d4c528f47ULL, [] {
         HadamardRotation h(std::make_unique<Qsgd>(1000, 45, 0, Qsgd::Norm::kL2, Qsgd::Coding::kElias), 1000, 64, 43);
         return quantizer_digest(h, 1000, 13);
       }},
      {"natural compression", 0xc5bc354698eeb143ULL, [] {
         NaturalCompression c(3001);
         return quantizer_digest(c, 3001, 6);
       }},
  };
  for (const Case& c : cases) {
    const std::uint64_t digest = c.run();
    EXPECT_EQ(digest, c.digest) << c.name << " on the " << simd::isa_name(simd::best_isa()) << " path: digest 0x"
                                << std::hex << digest;
  }
}

// Sizes around the kernels' groups of 8 and blocks of kLaneBlock.
std::vector<std::size_t> awkward_sizes() {
  std::vector<std::size_t> sizes;
  for (std::size_t n = 0; n <= 33; ++n) sizes.push_back(n);
  for (std::size_t n : {63, 64, 65, 1023, 1024, 1025, 2049, 3001}) sizes.push_back(n);
  return sizes;
}

TEST(Simd, SignBitStreamsAreTheReferenceOnEveryPath) {
  Rng rng(21);
  for (std::size_t n : awkward_sizes()) {
    std::vector<std::uint32_t> words(n);
    for (auto& w : words) w = static_cast<std::uint32_t>(rng());
    std::vector<std::uint8_t> expected((n + 7) / 8, 0);
    for (std::size_t i = 0; i < n; ++i) expected[i / 8] |= static_cast<std::uint8_t>((words[i] >> 31) << (i % 8));
    for (bool invert : {false, true}) {
      std::vector<float> expected_floats(n);
      for (std::size_t i = 0; i < n; ++i) {
        const bool bit = ((expected[i / 8] >> (i % 8)) & 1) != 0;
        expected_floats[i] = (bit != invert) ? -0.75f : 0.75f;
      }
      for (simd::Isa isa : kIsas) {
        std::vector<std::uint8_t> packed((n + 7) / 8, 0xAB);
        pack_top_bits(words.data(), n, packed.data(), isa);
        EXPECT_EQ(packed, expected) << "n=" << n << " " << simd::isa_name(isa);
        std::vector<float> floats(n);
        expand_sign_bits(expected.data(), n, 0.75f, invert, floats.data(), isa);
        EXPECT_EQ(floats, expected_floats) << "n=" << n << " " << simd::isa_name(isa);
      }
    }
  }
}

TEST(Simd, WriteCodesIsBitWriterWriteForEveryWidth) {
  Rng rng(22);
  for (int width = 1; width <= 32; ++width) {
    for (std::size_t n : {0, 1, 5, 8, 63, 64, 65, 1000, 1024, 1031, 40000}) {
      std::vector<std::uint32_t> codes(n);
      for (auto& c : codes) c = static_cast<std::uint32_t>(rng() & BitWriter::mask(width));
      if (n > 0) codes[n / 2] = static_cast<std::uint32_t>(BitWriter::mask(width));  // all ones
      Bytes expected, got;
      {
        BitWriter w(expected);
        w.write(5, 3);  // an unaligned start
        for (std::uint32_t c : codes) w.write(c, width);
      }
      {
        BitWriter w(got);
        w.write(5, 3);
        write_codes(w, codes.data(), n, width);
      }
      EXPECT_EQ(got, expected) << "width " << width << " n " << n;
      for (simd::Isa isa : kIsas) {
        for (int start_bits : {0, 3, 64}) {  // aligned, unaligned, a whole word in
          Bytes want, have;
          {
            BitWriter w(want);
            w.write(0x2A, start_bits);
            for (std::uint32_t c : codes) w.write(c, width);
          }
          {
            BitWriter w(have);
            w.write(0x2A, start_bits);
            write_codes(w, codes.data(), n, width, isa);
          }
          EXPECT_EQ(have, want) << "width " << width << " n " << n << " start " << start_bits << " "
                                << simd::isa_name(isa);
        }
      }
    }
  }
}

// The stated accuracy of the vectorised logistic function (FedVote's
// P(+1)): within 2e-6 of 1 / (1 + exp(-z)) in double, the same floats on
// every path, 0 for NaN.
TEST(Simd, LogisticIsWithinItsStatedAccuracyOnEveryPath) {
  std::vector<float> z;
  for (int i = -200000; i <= 200000; ++i) z.push_back(static_cast<float>(i) * 5e-4f);  // [-100, 100]
  Rng rng(23);
  for (int i = 0; i < 20000; ++i) z.push_back(std::ldexp(static_cast<float>(rng.normal()), static_cast<int>(rng.below(30)) - 20));
  for (float special : {0.0f, -0.0f, 1e-40f, -1e-40f, 79.9f, 80.0f, 80.1f, -80.0f, -87.0f, 88.7f, 1e30f, -1e30f,
                        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()})
    z.push_back(special);
  z.push_back(std::numeric_limits<float>::quiet_NaN());
  z.push_back(-std::numeric_limits<float>::quiet_NaN());
  const std::size_t n = z.size();
  std::vector<float> expected(n);
  logistic(z.data(), n, expected.data(), simd::Isa::kBaseline);
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(z[i])) {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(expected[i]), 0u);
      continue;
    }
    const double exact = 1.0 / (1.0 + std::exp(-static_cast<double>(z[i])));
    worst = std::max(worst, std::fabs(static_cast<double>(expected[i]) - exact));
    EXPECT_GE(expected[i], 0.0f);
    EXPECT_LE(expected[i], 1.0f);
  }
  EXPECT_LE(worst, 2e-6);
  std::printf("logistic: max abs error %.3g over %zu points\n", worst, n);
  for (simd::Isa isa : kIsas) {
    for (std::size_t m : {n, std::size_t{13}, std::size_t{1}}) {
      std::vector<float> got(m);
      logistic(z.data(), m, got.data(), isa);
      EXPECT_EQ(0, std::memcmp(got.data(), expected.data(), m * sizeof(float))) << simd::isa_name(isa) << " n=" << m;
    }
  }
}

// The vectorised TernGrad, natural dithering, sign and FedVote give the bytes
// and values of their scalar definitions (as they were written before they
// were vectorised, same random draws), at awkward layer, bucket and vector
// sizes, on the path in use (FEDSIM_SIMD caps it).
// The 32-bit random words of TernGrad, natural dithering and FedVote binary:
// from a LaneRng seeded by one draw of the encoder's Rng, refilled with
// ceil(m / 16) steps at the start of every block of m <= kLaneBlock
// coordinates of a layer or bucket (k counts from its first coordinate).
class BlockWords {
 public:
  explicit BlockWords(Rng& rng) : lanes_(rng), words_(kLaneBlock / 2) {}
  std::uint32_t at(std::size_t k, std::size_t len) {
    if (k % kLaneBlock == 0) {
      const std::size_t m = std::min(kLaneBlock, len - k);
      lanes_.fill(words_.data(), (m + 15) / 16);
    }
    const std::size_t i = k % kLaneBlock;
    return static_cast<std::uint32_t>(words_[i / 2] >> (32 * (i % 2)));
  }

 private:
  LaneRng lanes_;
  std::vector<std::uint64_t> words_;
};

TEST(Simd, TernGradIsItsScalarDefinition) {
  for (std::size_t n : {1, 7, 9, 1000, 1025, 3001}) {
    const std::vector<Layer> layers{{"a", 0, n / 3}, {"b", n / 3, 5 % (n - n / 3 + 1)},
                                    {"c", n / 3 + 5 % (n - n / 3 + 1), n - n / 3 - 5 % (n - n / 3 + 1)}};
    Rng data(31 + n);
    std::vector<float> v = random_vector(data, n);
    TernGrad t(n, layers, 0.0);
    Rng rng(7);
    Bytes out;
    std::vector<float> rec(n), decoded(n);
    t.encode(v, rng, out, rec);
    t.decode(out, decoded);
    EXPECT_EQ(rec, decoded);

    Rng same(7);
    Bytes expected;
    std::vector<float> expected_rec(n);
    std::vector<float> scalers;
    for (const Layer& l : layers) scalers.push_back(max_abs(v.data() + l.offset, l.size));
    for (float s : scalers) put_f32(expected, s);
    {
      BitWriter w(expected);
      BlockWords words(same);
      for (std::size_t li = 0; li < layers.size(); ++li) {
        const float s = scalers[li];
        if (s == 0.0f) continue;
        const float inv = 1.0f / s;
        for (std::size_t k = 0; k < layers[li].size; ++k) {
          const std::size_t i = layers[li].offset + k;
          const float u = static_cast<float>(words.at(k, layers[li].size) >> 8) * 0x1.0p-24f;
          const bool keep = u < std::min(std::fabs(v[i]), s) * inv;
          const bool neg = std::signbit(v[i]);
          w.write(keep ? (neg ? 2u : 1u) : 0u, 2);
          expected_rec[i] = keep ? (neg ? -s : s) : 0.0f;
        }
      }
    }
    EXPECT_EQ(out, expected) << "n=" << n;
    EXPECT_EQ(0, std::memcmp(rec.data(), expected_rec.data(), n * sizeof(float))) << "n=" << n;
  }
}

TEST(Simd, NaturalDitheringIsItsScalarDefinition) {
  for (std::uint32_t levels : {1u, 3u, 8u, 64u}) {
    for (std::size_t n : {1, 7, 9, 1000, 1025, 3001}) {
      const std::size_t bucket = n > 100 ? 700 : 0;
      Rng data(41 + n + levels);
      const std::vector<float> v = random_vector(data, n);
      NaturalDithering d(n, levels, NaturalDithering::Norm::kL2, bucket);
      Rng rng(9);
      Bytes out;
      std::vector<float> rec(n), decoded(n);
      d.encode(v, rng, out, rec);
      d.decode(out, decoded);
      EXPECT_EQ(rec, decoded);

      Rng same(9);
      Bytes expected;
      std::vector<float> expected_rec(n);
      const int index_bits = std::bit_width(levels);
      const float top = std::ldexp(1.0f, static_cast<int>(levels) - 1);
      const std::size_t b = bucket == 0 ? n : bucket;
      {
        BitWriter w(expected);
        BlockWords words(same);
        for (std::size_t b0 = 0; b0 < n; b0 += b) {
          const std::size_t len = std::min(b, n - b0);
          const float norm = static_cast<float>(l2_norm(v.data() + b0, len));
          w.write_f32(norm);
          if (norm == 0.0f) continue;
          float pre = 1.0f, scale = top / norm;
          if (!std::isfinite(scale)) {
            pre = 0x1.0p64f;
            scale = top / (norm * pre);
          }
          for (std::size_t k = 0; k < len; ++k) {
            const std::uint32_t random23 = words.at(k, len) & 0x7FFFFFu;
            const float x = v[b0 + k];
            const float t = std::min((std::fabs(x) * pre) * scale, top);
            const bool small = t < 1.0f;
            const std::uint32_t bits = std::bit_cast<std::uint32_t>(small ? t + 1.0f : t);
            const std::uint32_t up = random23 < (bits & 0x7FFFFFu) ? 1u : 0u;
            const std::uint32_t index = ((bits >> 23) - 127u) + (small ? 0u : 1u) + up;
            const std::uint32_t neg = (std::bit_cast<std::uint32_t>(x) >> 31) & (index != 0 ? 1u : 0u);
            w.write(neg | (index << 1), 1 + index_bits);
            const float level = index == 0 ? 0.0f : std::ldexp(1.0f, static_cast<int>(index) - static_cast<int>(levels));
            expected_rec[b0 + k] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(norm * level) | (neg << 31));
          }
        }
      }
      EXPECT_EQ(out, expected) << "levels=" << levels << " n=" << n;
      EXPECT_EQ(0, std::memcmp(rec.data(), expected_rec.data(), n * sizeof(float))) << "levels=" << levels << " n=" << n;
    }
  }
}

TEST(Simd, SignAndFedVoteAreTheirScalarDefinitions) {
  for (std::size_t n : awkward_sizes()) {
    Rng data(51 + n);
    const std::vector<float> v = random_vector(data, n);
    // Sign: (sum |v_i| / n) * sgn(v_i), sgn(-0) = +1.
    SignCompressor sign;
    Rng unused(1);
    Bytes out;
    std::vector<float> rec(n), decoded(n);
    sign.encode(v, unused, out, rec);
    sign.decode(out, decoded);
    EXPECT_EQ(rec, decoded);
    double l1 = 0.0;
    for (float x : v) l1 += std::fabs(static_cast<double>(x));
    const float scale = n == 0 ? 0.0f : static_cast<float>(l1 / static_cast<double>(n));
    Bytes expected;
    put_f32(expected, scale);
    expected.resize(SignCompressor::payload_bytes(n), 0);
    for (std::size_t i = 0; i < n; ++i) {
      expected[4 + i / 8] |= static_cast<std::uint8_t>(static_cast<unsigned>(v[i] < 0.0f) << (i % 8));
      EXPECT_EQ(rec[i], v[i] < 0.0f ? -scale : scale);
    }
    EXPECT_EQ(out, expected) << "sign n=" << n;

    // FedVote binary: +1 iff u_i < 0.5f * (1 + tanhf(k h_i)), u_i = the top
    // 24 bits of word i (BlockWords) times 2^-24; inputs of both kinds (tiny k h, where the votes are
    // close calls, and the wide random_vector) and 0, -0, +-inf, NaN.
    std::vector<float> h = v;
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 3 == 1) h[i] = static_cast<float>(data.normal()) * 1e-3f;
      if (i % 97 == 5) h[i] = std::numeric_limits<float>::infinity();
      if (i % 97 == 6) h[i] = -std::numeric_limits<float>::infinity();
      if (i % 97 == 7) h[i] = std::numeric_limits<float>::quiet_NaN();
    }
    // Then every vote a close call: h_i placed so that P(+1) is the i-th
    // uniform the encoder will draw (the recomputed path).
    for (bool close_calls : {false, true}) {
      if (close_calls) {
        Rng ahead(3);
        BlockWords words(ahead);
        for (std::size_t i = 0; i < n; ++i)
          h[i] = static_cast<float>(std::atanh(2.0 * (words.at(i, n) >> 8) * 0x1.0p-24 - 1.0) / 1.5);
      }
      FedVoteBinary vote(1.5f);
      Rng rng(3);
      Bytes votes;
      vote.encode(h, rng, votes, rec);
      vote.decode(votes, decoded);
      if (n > 0) {
        EXPECT_EQ(0, std::memcmp(rec.data(), decoded.data(), n * sizeof(float)));
      }
      Rng same(3);
      BlockWords words(same);
      Bytes expected_votes((n + 7) / 8, 0);
      for (std::size_t i = 0; i < n; ++i) {
        const float p_plus = 0.5f * (1.0f + std::tanh(1.5f * h[i]));
        const bool plus = static_cast<float>(words.at(i, n) >> 8) * 0x1.0p-24f < p_plus;
        expected_votes[i / 8] |= static_cast<std::uint8_t>(static_cast<unsigned>(plus) << (i % 8));
        EXPECT_EQ(rec[i], plus ? 1.0f : -1.0f) << i << (close_calls ? " (close calls)" : "");
      }
      EXPECT_EQ(votes, expected_votes) << "fedvote n=" << n << (close_calls ? " (close calls)" : "");
    }
  }
}

// Error feedback fused into a stage (FusesErrorFeedback: sign, top-k) is
// error feedback's definition run around the plain stage: u = fl(v + e),
// C(u), e = fl(u - C(u)); over rounds, so that the memory carries over, with
// zeros and signed zeros in u, and ties for top-k.
template <typename Stage, typename... Args>
void expect_fused_error_feedback_is_the_stages_apart(Args... args) {
  for (std::size_t n : awkward_sizes()) {
    ErrorFeedback fused(std::make_unique<Stage>(args...), n);
    Stage plain(args...);
    std::vector<float> memory(n, 0.0f), u(n), rec(n), expected_rec(n);
    Rng data(71 + n), unused(1);
    for (int round = 0; round < 3; ++round) {
      std::vector<float> v = random_vector(data, n);
      for (std::size_t i = 0; i < n; i += 5) v[i] = round == 1 ? -memory[i] : v[i];  // u = +-0
      for (std::size_t i = 3; i < n; i += 7) v[i] = round == 2 ? 0.5f - memory[i] : v[i];  // ties
      Bytes out, expected;
      fused.encode(v, unused, out, rec);
      for (std::size_t i = 0; i < n; ++i) u[i] = v[i] + memory[i];
      plain.encode(u, unused, expected, expected_rec);
      for (std::size_t i = 0; i < n; ++i) memory[i] = u[i] - expected_rec[i];
      EXPECT_EQ(out, expected) << "n=" << n << " round " << round;
      if (n == 0) continue;  // no data to compare (and memcmp must not see the null pointers)
      EXPECT_EQ(0, std::memcmp(rec.data(), expected_rec.data(), n * sizeof(float))) << "n=" << n;
      ASSERT_EQ(0, std::memcmp(fused.residual().data(), memory.data(), n * sizeof(float))) << "n=" << n;
    }
  }
}

TEST(Simd, FusedErrorFeedbackIsTheTwoStagesApart) {
  expect_fused_error_feedback_is_the_stages_apart<SignCompressor>();
  expect_fused_error_feedback_is_the_stages_apart<TopK>(std::size_t{0}, 0.05);
  expect_fused_error_feedback_is_the_stages_apart<TopK>(std::size_t{3}, 0.0);
}

// A non-finite u throws and leaves the memory as it was.
TEST(Simd, FusedErrorFeedbackKeepsTheMemoryWhenTheInputIsNotFinite) {
  ErrorFeedback sign(std::make_unique<SignCompressor>(), 9);
  ErrorFeedback top_k(std::make_unique<TopK>(std::size_t{2}, 0.0), 9);
  for (ErrorFeedback* ef : {&sign, &top_k}) {
    Rng unused(1);
    Bytes out;
    std::vector<float> v(9, 0.25f), rec(9);
    v[4] = -1.5f;
    ef->encode(v, unused, out, rec);
    const std::vector<float> before(ef->residual().begin(), ef->residual().end());
    v[7] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(ef->encode(v, unused, out, rec), std::invalid_argument);
    EXPECT_EQ(0, std::memcmp(ef->residual().data(), before.data(), 9 * sizeof(float)));
  }
}

// The butterflies on 8 lanes against the scalar definition (the same sums and
// differences in the same order: the same floats), on every path, blocks of
// every size.
TEST(Simd, HadamardButterfliesAreTheScalarDefinitionOnEveryPath) {
  for (std::size_t block : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}) {
    for (std::size_t dim : {1, 7, 8, 9, 100, 1024, 1500, 3001, 8192 + 4096 + 127}) {
      RandomizedHadamard map(dim, block);
      Rng signs(61);
      map.draw_signs(signs);
      Rng data(62 + dim);
      const std::vector<float> v = random_vector(data, dim);
      // H D v by the definition: D from the same draws as draw_signs(), then
      // scalar butterflies and the scale per block.
      std::vector<float> expected = v;
      Rng same(61);
      std::uint64_t bits = 0;
      for (std::size_t i = 0; i < dim; ++i) {
        if (i % 64 == 0) bits = same();
        expected[i] *= ((bits >> (i % 64)) & 1) ? -1.0f : 1.0f;
      }
      for (const auto& b : map.blocks()) {
        float* x = expected.data() + b.offset;
        for (std::size_t half = 1; half < b.size; half <<= 1)
          for (std::size_t start = 0; start < b.size; start += 2 * half)
            for (std::size_t i = start; i < start + half; ++i) {
              const float lo = x[i], hi = x[i + half];
              x[i] = lo + hi;
              x[i + half] = lo - hi;
            }
        if (b.size > 1)
          for (std::size_t i = 0; i < b.size; ++i) x[i] *= static_cast<float>(1.0 / std::sqrt(static_cast<double>(b.size)));
      }
      // D H y by the definition: butterflies and the scale per block, then D.
      std::vector<float> expected_back = expected;
      for (const auto& b : map.blocks()) {
        float* x = expected_back.data() + b.offset;
        for (std::size_t half = 1; half < b.size; half <<= 1)
          for (std::size_t start = 0; start < b.size; start += 2 * half)
            for (std::size_t i = start; i < start + half; ++i) {
              const float lo = x[i], hi = x[i + half];
              x[i] = lo + hi;
              x[i + half] = lo - hi;
            }
        if (b.size > 1)
          for (std::size_t i = 0; i < b.size; ++i) x[i] *= static_cast<float>(1.0 / std::sqrt(static_cast<double>(b.size)));
      }
      same = Rng(61);
      for (std::size_t i = 0; i < dim; ++i) {
        if (i % 64 == 0) bits = same();
        expected_back[i] *= ((bits >> (i % 64)) & 1) ? -1.0f : 1.0f;
      }
      for (simd::Isa isa : kIsas) {
        std::vector<float> got = v;
        map.use_isa(isa);
        map.rotate(got);
        EXPECT_EQ(0, std::memcmp(got.data(), expected.data(), dim * sizeof(float)))
            << "block " << block << " dim " << dim << " " << simd::isa_name(isa);
        std::vector<float> out(dim, -7.0f);
        map.rotate(v, out);
        EXPECT_EQ(0, std::memcmp(out.data(), expected.data(), dim * sizeof(float)))
            << "out of place: block " << block << " dim " << dim << " " << simd::isa_name(isa);
        EXPECT_TRUE(map.unrotate_finite(got));
        EXPECT_EQ(0, std::memcmp(got.data(), expected_back.data(), dim * sizeof(float)))
            << "unrotate: block " << block << " dim " << dim << " " << simd::isa_name(isa);
        // A value near the float limit overflows in the butterflies (blocks of 2 or more).
        std::vector<float> big = expected;
        for (std::size_t i : {std::size_t{0}, dim - 1}) {
          big[i] = std::numeric_limits<float>::max();
          if (i + 1 < dim) big[i + 1] = std::numeric_limits<float>::max();
          if (i > 0) big[i - 1] = std::numeric_limits<float>::max();
        }
        const bool overflows = dim > 1 && block > 1;
        EXPECT_EQ(map.unrotate_finite(big), !overflows) << "block " << block << " dim " << dim;
        std::vector<float> inf = expected;
        inf[dim / 2] = std::numeric_limits<float>::infinity();
        EXPECT_FALSE(map.unrotate_finite(inf)) << "block " << block << " dim " << dim;
      }
    }
  }
}

}  // namespace
}  // namespace fedsim
