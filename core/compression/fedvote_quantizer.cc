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

// The votes of group g (coordinates 8g to 8g + 7 of a block, the first
// `lanes` of them real, h_g their inputs) as described at vote_block_impl():
// sets bits[g], appends to unsure_groups, replaces h_g by the lanes' +-1.0f.
[[gnu::always_inline]] inline void vote_group(std::size_t g, simd::f32x8& h_g, std::size_t lanes,
                                              const std::uint32_t* random, float two_k, std::uint8_t* bits,
                                              std::uint32_t* unsure_groups, std::size_t& unsure_count) {
  using simd::f32x8;
  using simd::i32x8;
  using simd::u32x8;
  const i32x8 minus_one = i32x8{} + std::bit_cast<std::int32_t>(-1.0f);
  const i32x8 margin = i32x8{} + std::bit_cast<std::int32_t>(kUnsure);
  const u32x8 lane_index = {0, 1, 2, 3, 4, 5, 6, 7};
  u32x8 r;
  std::memcpy(&r, random + 8 * g, sizeof r);
  f32x8 z = h_g * two_k;
  logistic8(z);
  const i32x8 p = (i32x8)z;
  const f32x8 u = __builtin_convertvector((i32x8)(r >> 8), f32x8) * 0x1.0p-24f;
  const i32x8 plus = FEDSIM_SIMD_MASK_LT((i32x8)u, p);
  const i32x8 distance = (i32x8)(u - (f32x8)p) & 0x7FFFFFFF;
  const i32x8 close = FEDSIM_SIMD_MASK_LT(distance, margin);
  // Lane j's vote to bit j and its unsure flag to bit 16 + j, in every lane
  // after the shuffle reduction (lane_bits_to_byte() for two masks at once).
  u32x8 flags = (((u32x8)plus & 1u) | ((u32x8)close & 0x10000u)) << lane_index;
  flags |= __builtin_shufflevector(flags, flags, 4, 5, 6, 7, 0, 1, 2, 3);
  flags |= __builtin_shufflevector(flags, flags, 2, 3, 0, 1, 6, 7, 4, 5);
  flags |= __builtin_shufflevector(flags, flags, 1, 0, 3, 2, 5, 4, 7, 6);
  const std::uint32_t real = (1u << lanes) - 1u;
  const std::uint32_t f = flags[0] & (real | (real << 16));
  bits[g] = static_cast<std::uint8_t>(f);
  unsure_groups[unsure_count] = static_cast<std::uint32_t>(g) | (f & 0xFF0000u);
  unsure_count += (f >> 16) != 0;
  h_g = (f32x8)(minus_one ^ (plus & static_cast<std::int32_t>(0x80000000u)));
}

// Most votes are far from a close call, and for them a cheaper P(+1) than
// logistic() decides the same vote: 1 / s, s = 1 + exp(-z) with exp by its
// cubic Taylor polynomial after the same range reduction (no division, half
// the dependency chain). |1 / s - logistic(z)| < kCubicError for every float
// z but NaN (checked over all 2^32 of them: at most 1.93e-4). Where
// |u s - 1| > kSureMargin s, |u - 1 / s| > kSureMargin - 1e-7 (roundings),
// so |u - logistic(z)| > kUnsure: logistic() would vote u < 1 / s there and
// not recompute it. A group of 8 with a lane nearer than that (about 0.4% of
// the groups), or a NaN, takes the exact path.
constexpr float kCubicError = 2.5e-4f;
constexpr float kSureMargin = kUnsure + kCubicError + 1e-6f;

// s = 1 + exp(-z) as described above, for z clamped to [-80, 80] as in
// logistic8(); is_nan = -1 in the NaN lanes of z, else 0.
[[gnu::always_inline]] inline void one_plus_exp_cubic(const simd::f32x8& z, simd::f32x8& s, simd::i32x8& is_nan) {
  using simd::f32x8;
  using simd::i32x8;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2 = 0.693147180559945309f;
  const i32x8 clamp_bits = i32x8{} + std::bit_cast<std::int32_t>(80.0f);
  const i32x8 inf_bits = i32x8{} + 0x7F800000;
  const i32x8 zb = (i32x8)z;
  const i32x8 mag = zb & 0x7FFFFFFF;
  is_nan = FEDSIM_SIMD_MASK_LT(inf_bits, mag);
  const i32x8 small = FEDSIM_SIMD_MASK_LT(mag, clamp_bits);
  const i32x8 clamped = (mag & small) | (clamp_bits & ~small);
  const f32x8 w = (f32x8)(clamped | (~zb & static_cast<std::int32_t>(0x80000000u)));
  const f32x8 x = w * kLog2e + 128.5f;
  const i32x8 k = __builtin_convertvector(x, i32x8) - 128;
  const f32x8 r = w - __builtin_convertvector(k, f32x8) * kLn2;
  f32x8 p = r * (1.0f / 6.0f) + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  s = p * (f32x8)((k + 127) << 23) + 1.0f;
}

// Bit j = the sign bit of lane j: one movmskps per register on x86 (the
// shuffle reduction of lane_bits_to_byte() is several times its latency in
// the fast path below), that reduction elsewhere. sign_bits_avx2() cannot be
// always-inline (the helpers it is called from are not FEDSIM_TARGET_AVX2):
// vote_block_avx2() is flattened instead.
#if FEDSIM_SIMD_X86
FEDSIM_TARGET_AVX2 inline std::uint32_t sign_bits_avx2(const simd::i32x8& v) {
  return static_cast<std::uint32_t>(__builtin_ia32_movmskps256((simd::f32x8)v));
}
[[gnu::always_inline]] inline std::uint32_t sign_bits_baseline(const simd::i32x8& v) {
  using f32x4 = float __attribute__((vector_size(16)));
  const auto f = (simd::f32x8)v;
  const f32x4 lo = __builtin_shufflevector(f, f, 0, 1, 2, 3);
  const f32x4 hi = __builtin_shufflevector(f, f, 4, 5, 6, 7);
  return static_cast<std::uint32_t>(__builtin_ia32_movmskps(lo) | (__builtin_ia32_movmskps(hi) << 4));
}
#else
[[gnu::always_inline]] inline std::uint32_t sign_bits_baseline(const simd::i32x8& v) {
  return lane_bits_to_byte((simd::u32x8)v >> 31);
}
#endif

// The votes of group g as vote_group() casts them, when every lane of the
// group is sure (see above; then sets bits[g], replaces h_g by the lanes'
// +-1.0f and returns true); else returns false and changes nothing.
template <bool kAvx2>
[[gnu::always_inline]] inline bool vote_group_if_sure(std::size_t g, simd::f32x8& h_g, const std::uint32_t* random,
                                                      float two_k, std::uint8_t* bits) {
  using simd::f32x8;
  using simd::i32x8;
  using simd::u32x8;
  const i32x8 minus_one = i32x8{} + std::bit_cast<std::int32_t>(-1.0f);
  f32x8 s;
  i32x8 is_nan;
  one_plus_exp_cubic(h_g * two_k, s, is_nan);
  u32x8 words;
  std::memcpy(&words, random + 8 * g, sizeof words);
  const f32x8 u = __builtin_convertvector((i32x8)(words >> 8), f32x8) * 0x1.0p-24f;
  // u < 1 / s iff t < 0; both sides of the comparison are finite, >= 0.
  const i32x8 t = (i32x8)(u * s - 1.0f);
  const i32x8 unsure = FEDSIM_SIMD_MASK_LT(t & 0x7FFFFFFF, (i32x8)(s * kSureMargin) + 1) | is_nan;
  std::uint32_t doubt, plus;
#if FEDSIM_SIMD_X86
  if constexpr (kAvx2) {
    doubt = sign_bits_avx2(unsure);
    plus = sign_bits_avx2(t);
  } else
#endif
  {
    doubt = sign_bits_baseline(unsure);
    plus = sign_bits_baseline(t);
  }
  if (doubt != 0) [[unlikely]]
    return false;
  bits[g] = static_cast<std::uint8_t>(plus);
  h_g = (f32x8)(minus_one ^ (t & static_cast<std::int32_t>(0x80000000u)));
  return true;
}

// The binary votes of one block of m <= kLaneBlock coordinates in one pass
// over registers (scale, logistic(), draw, vote and bit packing fused: h is
// read once, nothing in between goes through memory; logistic() only for the
// groups with a lane near a close call): vote i is +1 when
// u_i < p_i, u_i = (random[i] >> 8) * 2^-24, p_i = logistic(two_k * h[i]);
// bit i of bits (LSB first, padding bits zero, ceil(m / 8) bytes) set = +1,
// rec[i] = +-1.0f. random holds ceil(m / 16) * 16 words. A vote with
// |u_i - p_i| < kUnsure is left to the caller: each group of 8 holding one
// goes to unsure_groups as its index g (bits 0-15) and its unsure lanes as a
// mask (bits 16-23). Returns their number.
template <bool kAvx2>
[[gnu::always_inline]] inline std::size_t vote_block_impl(const float* h, const std::uint32_t* random,
                                                          std::size_t m, float two_k, std::uint8_t* bits,
                                                          float* rec, std::uint32_t* unsure_groups) {
  using simd::f32x8;
  std::size_t unsure_count = 0;
  std::size_t g = 0;
  for (; 8 * g + 8 <= m; ++g) {
    f32x8 h_g;
    std::memcpy(&h_g, h + 8 * g, sizeof h_g);
    if (!vote_group_if_sure<kAvx2>(g, h_g, random, two_k, bits)) [[unlikely]]
      vote_group(g, h_g, 8, random, two_k, bits, unsure_groups, unsure_count);
    std::memcpy(rec + 8 * g, &h_g, sizeof h_g);
  }
  if (const std::size_t tail = m - 8 * g; tail != 0) {
    f32x8 h_g = {};
    std::memcpy(&h_g, h + 8 * g, tail * sizeof(float));
    vote_group(g, h_g, tail, random, two_k, bits, unsure_groups, unsure_count);
    std::memcpy(rec + 8 * g, &h_g, tail * sizeof(float));
  }
  return unsure_count;
}
[[gnu::flatten]] FEDSIM_TARGET_AVX2 std::size_t vote_block_avx2(const float* h, const std::uint32_t* random,
                                                                std::size_t m, float two_k, std::uint8_t* bits,
                                                                float* rec, std::uint32_t* unsure_groups) {
  return vote_block_impl<true>(h, random, m, two_k, bits, rec, unsure_groups);
}
std::size_t vote_block_baseline(const float* h, const std::uint32_t* random, std::size_t m, float two_k,
                                std::uint8_t* bits, float* rec, std::uint32_t* unsure_groups) {
  return vote_block_impl<false>(h, random, m, two_k, bits, rec, unsure_groups);
}

}  // namespace

void FedVoteBinary::encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = h.size();
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(n), 0);
  std::uint8_t* bytes = out.data() + start;
  static const auto kernel = simd::pick(simd::best_isa(), vote_block_avx2, vote_block_avx2, vote_block_baseline);
  std::uint64_t words[kLaneBlock / 2];
  std::uint32_t unsure_groups[kLaneBlock / 8];
  const auto* random = reinterpret_cast<const std::uint32_t*>(words);
  LaneRng lanes(rng);
  const float two_k = 2.0f * k_;
  for (std::size_t c0 = 0; c0 < n; c0 += kLaneBlock) {
    const std::size_t m = std::min(kLaneBlock, n - c0);
    // +1 with probability P(+1) = (1 + w) / 2, which gives E[vote] = w; 24
    // bits of a 32-bit word of the lanes per vote. A NaN h votes -1.
    lanes.fill(words, (m + 2 * LaneRng::kLanes - 1) / (2 * LaneRng::kLanes));
    std::uint8_t* block_bytes = bytes + c0 / 8;
    const std::size_t unsure_count =
        kernel(h.data() + c0, random, m, two_k, block_bytes, reconstructed.data() + c0, unsure_groups);
    // The close calls, recast from the definition (about 2e-5 of the votes).
    for (std::size_t j = 0; j < unsure_count; ++j) {
      const std::size_t g = unsure_groups[j] & 0xFFFFu;
      for (std::uint32_t lanes_left = unsure_groups[j] >> 16; lanes_left != 0; lanes_left &= lanes_left - 1) {
        const std::size_t i = 8 * g + static_cast<std::size_t>(std::countr_zero(lanes_left));
        const bool plus = static_cast<float>(random[i] >> 8) * 0x1.0p-24f < p_plus_of(k_, h[c0 + i]);
        const auto bit = static_cast<std::uint8_t>(1u << (i % 8));
        block_bytes[g] = static_cast<std::uint8_t>(plus ? block_bytes[g] | bit : block_bytes[g] & ~bit);
        reconstructed[c0 + i] = plus ? 1.0f : -1.0f;
      }
    }
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
