#include "core/compression/fedvote_quantizer.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <cmath>
#include <string>

#include "core/base/errors.h"
#include "core/base/lane_rng.h"
#include "core/compression/lane_kernels.h"

namespace fedsim {
namespace {

constexpr int kTritsPerByte = 5;
constexpr std::uint8_t kPow3[kTritsPerByte + 1] = {1, 3, 9, 27, 81, 243};
constexpr float kTritValue[3] = {0.0f, 1.0f, -1.0f};

void check_size(const char* scheme, std::size_t got, std::size_t expected) {
  if (got != expected)
    throw DecodeError(std::string(scheme) + " payload has " + std::to_string(got) + " bytes, expected " +
                      std::to_string(expected));
}

// P(+1) = (1 + tanh(k h)) / 2 exactly as the definition computes it in
// float (the reference for the vectorised approximation below).
float p_plus_of(float k, float h) { return 0.5f * (1.0f + std::tanh(k * h)); }

// The approximation logistic(2 k h) is within 2e-6 of the exact value, and
// the float p_plus_of() within 3e-7 of it (tanhf's 2 ulp and one rounding):
// a vote whose u is farther than kUnsure from the approximation is the one
// the definition casts; the others are recomputed with p_plus_of().
constexpr float kUnsure = 1e-5f;

// z[i] = factor * h[i] (z = 2 k h, the argument of logistic()).
[[gnu::always_inline]] inline void scale_impl(const float* h, std::size_t m, float factor, float* z) {
  using simd::f32x8;
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    f32x8 v;
    std::memcpy(&v, h + i, sizeof v);
    v *= factor;
    std::memcpy(z + i, &v, sizeof v);
  }
  for (; i < m; ++i) z[i] = factor * h[i];
}
FEDSIM_TARGET_AVX2 void scale_avx2(const float* h, std::size_t m, float factor, float* z) {
  scale_impl(h, m, factor, z);
}
void scale_baseline(const float* h, std::size_t m, float factor, float* z) { scale_impl(h, m, factor, z); }

// Binary votes of m coordinates: +1 when u < p (u = (random >> 8) * 2^-24),
// as bit 31 of votes (set = +1) and +-1.0f in rec; unsure[i] != 0
// when |u - p| < kUnsure. Returns whether any is.
[[gnu::always_inline]] inline bool vote_words_impl(const float* p, const std::uint32_t* random, std::size_t m,
                                                   std::uint32_t* votes, float* rec, std::uint32_t* unsure) {
  using simd::f32x8;
  using simd::i32x8;
  using simd::u32x8;
  const i32x8 minus_one = i32x8{} + std::bit_cast<std::int32_t>(-1.0f);
  const i32x8 margin = i32x8{} + std::bit_cast<std::int32_t>(kUnsure);
  i32x8 any = {};
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    i32x8 pb;
    u32x8 r;
    std::memcpy(&pb, p + i, sizeof pb);
    std::memcpy(&r, random + i, sizeof r);
    const f32x8 u = __builtin_convertvector((i32x8)(r >> 8), f32x8) * 0x1.0p-24f;
    const i32x8 plus = FEDSIM_SIMD_MASK_LT((i32x8)u, pb);
    const i32x8 distance = (i32x8)(u - (f32x8)pb) & 0x7FFFFFFF;
    const i32x8 close = FEDSIM_SIMD_MASK_LT(distance, margin);
    const i32x8 vote = plus & static_cast<std::int32_t>(0x80000000u);
    const i32x8 value = minus_one ^ vote;
    std::memcpy(votes + i, &vote, sizeof vote);
    std::memcpy(rec + i, &value, sizeof value);
    std::memcpy(unsure + i, &close, sizeof close);
    any |= close;
  }
  bool found = false;
  for (int j = 0; j < 8; ++j) found = found || any[j] != 0;
  for (; i < m; ++i) {
    const float u = static_cast<float>(random[i] >> 8) * 0x1.0p-24f;
    const bool plus = u < p[i];
    votes[i] = plus ? 0x80000000u : 0u;
    rec[i] = plus ? 1.0f : -1.0f;
    unsure[i] = std::fabs(u - p[i]) < kUnsure ? 1u : 0u;
    found = found || unsure[i] != 0;
  }
  return found;
}
FEDSIM_TARGET_AVX2 bool vote_words_avx2(const float* p, const std::uint32_t* random, std::size_t m,
                                        std::uint32_t* votes, float* rec, std::uint32_t* unsure) {
  return vote_words_impl(p, random, m, votes, rec, unsure);
}
bool vote_words_baseline(const float* p, const std::uint32_t* random, std::size_t m, std::uint32_t* votes,
                         float* rec, std::uint32_t* unsure) {
  return vote_words_impl(p, random, m, votes, rec, unsure);
}

}  // namespace

void FedVoteBinary::encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = h.size();
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(n), 0);
  std::uint8_t* bytes = out.data() + start;
  static const auto kernel = simd::pick(simd::best_isa(), vote_words_avx2, vote_words_avx2, vote_words_baseline);
  static const auto scale = simd::pick(simd::best_isa(), scale_avx2, scale_avx2, scale_baseline);
  float z[kLaneBlock], p_plus[kLaneBlock];
  std::uint64_t words[kLaneBlock / 2];
  std::uint32_t votes[kLaneBlock], unsure[kLaneBlock];
  const auto* random = reinterpret_cast<const std::uint32_t*>(words);
  LaneRng lanes(rng);
  const float two_k = 2.0f * k_;
  for (std::size_t c0 = 0; c0 < n; c0 += kLaneBlock) {
    const std::size_t m = std::min(kLaneBlock, n - c0);
    // +1 with probability P(+1) = (1 + w) / 2, which gives E[vote] = w; 24
    // bits of a 32-bit word of the lanes per vote. A NaN h votes -1.
    lanes.fill(words, (m + 2 * LaneRng::kLanes - 1) / (2 * LaneRng::kLanes));
    scale(h.data() + c0, m, two_k, z);
    logistic(z, m, p_plus);
    const bool any_unsure = kernel(p_plus, random, m, votes, reconstructed.data() + c0, unsure);
    for (std::size_t i = 0; any_unsure && i < m; ++i) {
      if (unsure[i] == 0) [[likely]]
        continue;
      const bool plus = static_cast<float>(random[i] >> 8) * 0x1.0p-24f < p_plus_of(k_, h[c0 + i]);
      votes[i] = plus ? 0x80000000u : 0u;
      reconstructed[c0 + i] = plus ? 1.0f : -1.0f;
    }
    pack_top_bits(votes, m, bytes + c0 / 8);
  }
}

void FedVoteBinary::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  check_size("fedvote_binary", payload.size(), payload_bytes(n));
  if (n % 8 != 0 && (payload.back() >> (n % 8)) != 0)
    throw DecodeError("fedvote_binary payload has non-zero padding bits");
  expand_sign_bits(payload.data(), n, 1.0f, true, out.data());
}

void FedVoteTernary::encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = h.size();
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(n), 0);
  std::uint8_t* bytes = out.data() + start;
  for (std::size_t i = 0; i < n; ++i) {
    // Non-zero with probability |w|, with the sign of w (= sgn h): E[vote] = w.
    // A NaN h votes 0.
    const float w = std::tanh(k_ * h[i]);
    const bool nonzero = rng.uniform_float() < std::fabs(w);
    const int trit = nonzero ? (w > 0.0f ? 1 : 2) : 0;
    bytes[i / kTritsPerByte] += static_cast<std::uint8_t>(trit * kPow3[i % kTritsPerByte]);
    reconstructed[i] = kTritValue[trit];
  }
}

void FedVoteTernary::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  check_size("fedvote_ternary", payload.size(), payload_bytes(n));
  for (std::size_t b = 0; b < payload.size(); ++b) {
    const std::size_t first = b * kTritsPerByte;
    const int count = static_cast<int>(std::min<std::size_t>(kTritsPerByte, n - first));
    unsigned value = payload[b];
    if (value >= kPow3[count])
      throw DecodeError("fedvote_ternary payload byte " + std::to_string(b) + " = " + std::to_string(value) +
                        " is not a base-3 group of " + std::to_string(count) + " votes");
    for (int j = 0; j < count; ++j) {
      out[first + static_cast<std::size_t>(j)] = kTritValue[value % 3];
      value /= 3;
    }
  }
}

namespace {

float read_k(const Config& settings) {
  return static_cast<float>(settings.get_double("k", 1.5, 1e-3, 1e3));
}

FEDSIM_REGISTER_STAGE(
    "fedvote_binary", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      return std::make_unique<FedVoteBinary>(read_k(settings));
    },
    "FedVote: input latent weights h, votes +-1 with P(+1) = (1 + tanh(k h)) / 2; 1 bit per weight");

FEDSIM_REGISTER_STAGE(
    "fedvote_ternary", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      return std::make_unique<FedVoteTernary>(read_k(settings));
    },
    "FedVote ternary: input latent weights h, vote sgn(h) with P = |tanh(k h)|, else 0; 1.6 bits per weight");

}  // namespace
}  // namespace fedsim
