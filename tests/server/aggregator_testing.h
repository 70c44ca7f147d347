// Helpers the aggregator tests share.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "server/aggregator.h"

namespace fedsim::test_util {

// Builds an aggregator from YAML settings and reports unread keys as the
// scenario loader does.
inline std::unique_ptr<Aggregator> make(const std::string& name, const std::string& settings = "{}",
                                       AggregatorSettings s = {}) {
  Config cfg = Config::parse_string("aggregator: " + settings + "\n", "agg.yaml").child("aggregator");
  auto agg = AggregatorRegistry::instance().create("agg.yaml:1: aggregator", name, cfg, s);
  cfg.finish();
  return agg;
}

// Owns client vectors and exposes them as ClientUpdates sorted by id.
struct Round {
  std::vector<std::vector<float>> vectors;
  std::vector<ClientUpdate> updates;
  void add(std::uint32_t id, std::vector<float> v, std::uint32_t samples = 1, double weight = 1.0) {
    vectors.push_back(std::move(v));
    updates.push_back(ClientUpdate{id, samples, weight, {}});
  }
  std::span<const ClientUpdate> span() {
    for (std::size_t c = 0; c < updates.size(); ++c) updates[c].vector = vectors[c];
    return updates;
  }
};

}  // namespace fedsim::test_util
