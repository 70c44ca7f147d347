// Seeded, splittable random numbers.
//
// Determinism contract: every random draw in a simulation comes from an Rng
// derived from (scenario seed, purpose, client, round, ...) with Rng::derive.
// No global state, no dependence on thread timing: the same scenario and seed
// give bit-identical results whatever the thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

namespace fedsim {

// Purposes keep the streams of different consumers apart.
enum class Stream : std::uint64_t {
  kModelInit = 1,
  kPartition = 2,
  kSampling = 3,
  kTraining = 4,
  kUplink = 5,
  kDownlink = 6,
  kAvailability = 7,
  kLinks = 8,
  kSynthetic = 9,
  kPopulation = 10,
  kShared = 11,  // randomness both ends of a link know (rotation signs, ...)
  kAttack = 12,  // Byzantine clients: who attacks, and the attacks' own draws
  kNetwork = 13,  // packet losses and trace phases (server/network_faults.h)
};

// xoshiro256** (Blackman & Vigna), seeded through SplitMix64.
// Satisfies UniformRandomBitGenerator. Not thread-safe: one per consumer.
class Rng {
 public:
  using result_type = std::uint64_t;

  explicit Rng(std::uint64_t seed);

  // A generator for one purpose, independent of all other (seed, path) pairs.
  static Rng derive(std::uint64_t seed, std::initializer_list<std::uint64_t> path);
  static Rng derive(std::uint64_t seed, Stream stream, std::initializer_list<std::uint64_t> path = {});

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }

  result_type operator()() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 24 random bits (exact in float).
  float uniform_float() { return static_cast<float>((*this)() >> 40) * 0x1.0p-24f; }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n > 0, without modulo bias (Lemire).
  std::uint64_t below(std::uint64_t n);
  // Standard normal (Box-Muller; portable, unlike std::normal_distribution).
  double normal();
  // Gamma(shape, 1) (Marsaglia-Tsang), for Dirichlet draws.
  double gamma(double shape);
  bool bernoulli(double p) { return uniform() < p; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

// SplitMix64 finaliser: a good 64-bit mixer.
std::uint64_t mix64(std::uint64_t x);

}  // namespace fedsim
