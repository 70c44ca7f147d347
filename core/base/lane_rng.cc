#include "core/base/lane_rng.h"

#include <cstring>

#include "core/base/simd.h"

namespace fedsim {
namespace {

using simd::u64x4;
static_assert(LaneRng::kLanes == 8);

// One xoshiro256** step on four lanes; x * 5 and x * 9 as shifts and adds,
// which every SIMD level has for 64-bit lanes.
#define FEDSIM_XOSHIRO_STEP(s0, s1, s2, s3, result)       \
  do {                                                    \
    const u64x4 times5 = ((s1) << 2) + (s1);              \
    const u64x4 rotated = (times5 << 7) | (times5 >> 57); \
    (result) = (rotated << 3) + rotated;                  \
    const u64x4 shifted = (s1) << 17;                     \
    (s2) ^= (s0);                                         \
    (s3) ^= (s1);                                         \
    (s1) ^= (s2);                                         \
    (s0) ^= (s3);                                         \
    (s2) ^= shifted;                                      \
    (s3) = ((s3) << 45) | ((s3) >> 19);                   \
  } while (false)

// The eight lanes as two named halves of four (32-byte vectors, see simd.h).
using State = std::uint64_t[4][LaneRng::kLanes];
[[gnu::always_inline]] inline void fill_lanes(State& state, std::uint64_t* out, std::size_t steps) {
  u64x4 a0, a1, a2, a3, b0, b1, b2, b3;
  std::memcpy(&a0, state[0], 32);
  std::memcpy(&b0, state[0] + 4, 32);
  std::memcpy(&a1, state[1], 32);
  std::memcpy(&b1, state[1] + 4, 32);
  std::memcpy(&a2, state[2], 32);
  std::memcpy(&b2, state[2] + 4, 32);
  std::memcpy(&a3, state[3], 32);
  std::memcpy(&b3, state[3] + 4, 32);
  for (std::size_t t = 0; t < steps; ++t) {
    u64x4 ra, rb;
    FEDSIM_XOSHIRO_STEP(a0, a1, a2, a3, ra);
    FEDSIM_XOSHIRO_STEP(b0, b1, b2, b3, rb);
    std::memcpy(out + t * LaneRng::kLanes, &ra, 32);
    std::memcpy(out + t * LaneRng::kLanes + 4, &rb, 32);
  }
  std::memcpy(state[0], &a0, 32);
  std::memcpy(state[0] + 4, &b0, 32);
  std::memcpy(state[1], &a1, 32);
  std::memcpy(state[1] + 4, &b1, 32);
  std::memcpy(state[2], &a2, 32);
  std::memcpy(state[2] + 4, &b2, 32);
  std::memcpy(state[3], &a3, 32);
  std::memcpy(state[3] + 4, &b3, 32);
}
#undef FEDSIM_XOSHIRO_STEP
FEDSIM_TARGET_AVX512 void fill_lanes_avx512(State& state, std::uint64_t* out, std::size_t steps) {
  fill_lanes(state, out, steps);
}
FEDSIM_TARGET_AVX2 void fill_lanes_avx2(State& state, std::uint64_t* out, std::size_t steps) {
  fill_lanes(state, out, steps);
}
void fill_lanes_baseline(State& state, std::uint64_t* out, std::size_t steps) { fill_lanes(state, out, steps); }

}  // namespace

LaneRng::LaneRng(Rng& rng) {
  // SplitMix64 from one seed: mix64(seed + i * golden ratio) is its i-th output.
  std::uint64_t z = rng();
  for (auto& word : state_) {
    for (std::uint64_t& lane : word) {
      lane = mix64(z);
      z += 0x9e3779b97f4a7c15ULL;
    }
  }
  // An all-zero lane would stay zero; SplitMix64 outputs are distinct, so
  // this cannot happen for all four words of a lane, but keep xoshiro's rule.
  for (std::size_t j = 0; j < kLanes; ++j)
    if ((state_[0][j] | state_[1][j] | state_[2][j] | state_[3][j]) == 0) state_[0][j] = 1;
}

void LaneRng::fill(std::uint64_t* out, std::size_t steps) {
  static const auto kernel = simd::pick(simd::best_isa(), fill_lanes_avx512, fill_lanes_avx2, fill_lanes_baseline);
  kernel(state_, out, steps);
}

void LaneRng::fill(std::uint64_t* out, std::size_t steps, simd::Isa isa) {
  simd::pick(isa, fill_lanes_avx512, fill_lanes_avx2, fill_lanes_baseline)(state_, out, steps);
}

}  // namespace fedsim
