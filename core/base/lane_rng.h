// Bulk random words for the quantizers: kLanes interleaved xoshiro256**
// streams (Blackman & Vigna) advanced together in SIMD, several times the
// throughput of drawing from one Rng, whose next step always waits for the
// previous one.
//
// Determinism: the lanes are seeded from a single draw of the Rng passed to
// the constructor (expanded with SplitMix64, as xoshiro's authors recommend
// for seeding), so a LaneRng is as reproducible as the Rng it came from, and
// its output does not depend on which SIMD variant runs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/base/rng.h"
#include "core/base/simd.h"

namespace fedsim {

class LaneRng {
 public:
  static constexpr std::size_t kLanes = 8;

  // Consumes exactly one draw of `rng`.
  explicit LaneRng(Rng& rng);

  // Writes `steps` * kLanes words; out[t * kLanes + j] is lane j's t-th
  // output. All 64 bits of every word are uniform.
  void fill(std::uint64_t* out, std::size_t steps);
  // The same on the variant for `isa` (a narrower one if the CPU lacks it),
  // to test that every variant gives the same words. fill() uses
  // simd::best_isa().
  void fill(std::uint64_t* out, std::size_t steps, simd::Isa isa);

 private:
  alignas(64) std::uint64_t state_[4][kLanes];
};

}  // namespace fedsim
