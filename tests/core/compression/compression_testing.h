// Helpers the compression tests share: pipelines from YAML, stage casts,
// Gaussian vectors, norms and bit-exact comparison.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/layer.h"
#include "core/base/rng.h"
#include "core/compression/compressor.h"
#include "core/compression/pipeline.h"

namespace fedsim::test_util {

// `stages` is the inside of a pipeline list, e.g. "error_feedback, {top_k: {k: 3}}".
inline std::unique_ptr<Compressor> make_pipeline(const std::string& stages, std::size_t n,
                                                 std::vector<Layer> layers = {}, std::uint64_t shared_seed = 0) {
  if (layers.empty()) layers.push_back(Layer{"all", 0, n});
  Config cfg = Config::parse_string("uplink: [" + stages + "]\n");
  return PipelineSpec::parse(cfg, "uplink").make(n, layers, shared_seed);
}

template <class T>
T& as(Compressor& c) {
  T* p = dynamic_cast<T*>(&c);
  EXPECT_NE(p, nullptr);
  return *p;
}

inline std::vector<float> gaussian(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

inline double sq_norm(std::span<const float> v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return s;
}

inline bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace fedsim::test_util
