// FedVote (Yue, Jin, Wong, Dai 2021): clients train latent weights h of a
// model with weights c tanh(k h) (core/models/tanh_latent_model.h) and send
// votes drawn from tanh(k h) (core/compression/fedvote_quantizer.h); the
// server's vote aggregator maps the (optionally reputation-weighted) soft
// vote back to h. Three components, one k: they must agree.
//
// Keys: algorithm: {name: fedvote, k: 1.5}, k in [1e-3, 100].
#include <sstream>

#include "core/models/tanh_latent_model.h"
#include "server/algorithm.h"

namespace fedsim {
namespace {

class FedVote final : public Algorithm {
 public:
  explicit FedVote(const Config& settings) : k_(settings.get_double("k", 1.5, 1e-3, 100.0)), settings_(settings) {}

  std::unique_ptr<Model> make_model(std::unique_ptr<Model> base) const override {
    return std::make_unique<TanhLatentModel>(std::move(base), static_cast<float>(k_));
  }
  UpdateContent update_content() const override { return UpdateContent::kWeights; }
  std::string describe_updates() const override { return "votes"; }
  std::string default_aggregator() const override { return "vote"; }
  std::vector<std::string> own_components() const override { return {"fedvote_binary", "fedvote_ternary", "vote"}; }

  void check(const AlgorithmCheck& s) const override {
    const std::string q = s.uplink.quantizer_name();
    const bool vote_quantizer = q == "fedvote_binary" || q == "fedvote_ternary";
    if (!vote_quantizer && !s.root.has("uplink"))
      settings_.fail("name", "an uplink with a fedvote_binary or fedvote_ternary quantizer for 'fedvote'",
                     "no uplink: list (float32)");
    if (!vote_quantizer)
      s.root.fail("uplink", "a fedvote_binary or fedvote_ternary quantizer (algorithm fedvote sends votes)",
                  "'" + q + "'");
    same_k(*s.uplink.quantizer_settings(), "the clients' " + q);
    if (s.aggregator.get_string("name", "vote") == "vote") same_k(s.aggregator, "the server's vote");
  }

 private:
  void same_k(const Config& c, const std::string& owner) const {
    const double k = c.get_double("k", 1.5, 1e-3, 1e3);
    if (k == k_) return;
    std::ostringstream found;
    found << k << (c.has("k") ? "" : " (the default)");
    c.fail("k", "the same k as algorithm.k (" + std::to_string(k_) + ") for " + owner, found.str());
  }

  double k_;
  Config settings_;  // for error locations
};

FEDSIM_REGISTER(
    AlgorithmRegistry, "fedvote",
    [](const Config& settings) -> std::unique_ptr<Algorithm> { return std::make_unique<FedVote>(settings); },
    "FedVote: latent tanh weights, binary/ternary votes, vote aggregation (Yue et al. 2021)");

}  // namespace
}  // namespace fedsim
