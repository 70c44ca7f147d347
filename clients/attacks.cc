// The non-colluding attacks (clients/attack.h has the list and the contract).
// Settings and ranges:
//   sign_flip:     scale > 0, default 1: sends -scale v
//   scaled:        factor, finite, default 10: sends factor v (the "scaling" or
//                  model-replacement boost of Bagdasaryan et al. 2020 on an honest update)
//   gaussian:      std > 0, default 1; replace false: sends v + N(0, std^2 I); replace true:
//                  N(0, std^2 I) alone (the Gaussian Byzantine worker of Blanchard et al. 2017)
//   constant_vote: vote +1 or -1, default 1; fedvote only: every latent weight is sent as
//                  +-1e30, so tanh(k h) = +-1 and every vote is `vote`
//   label_flip:    no settings
#include <cmath>
#include <limits>

#include "clients/attack.h"
#include "clients/client.h"

namespace fedsim {
namespace {

double finite(const Config& cfg, const std::string& key, double fallback, double min) {
  const double v = cfg.get_double(key, fallback, min, std::numeric_limits<double>::max());
  return v;
}

class SignFlip final : public Attack {
 public:
  explicit SignFlip(double scale) : scale_(static_cast<float>(scale)) {}
  void corrupt(arma::fvec& message, const ColluderStatistics*, Rng&) const override { message *= -scale_; }

 private:
  float scale_;
};

class Scaled final : public Attack {
 public:
  explicit Scaled(double factor) : factor_(static_cast<float>(factor)) {}
  void corrupt(arma::fvec& message, const ColluderStatistics*, Rng&) const override { message *= factor_; }

 private:
  float factor_;
};

class Gaussian final : public Attack {
 public:
  Gaussian(double stddev, bool replace) : stddev_(stddev), replace_(replace) {}
  void corrupt(arma::fvec& message, const ColluderStatistics*, Rng& rng) const override {
    for (float& x : message) x = static_cast<float>((replace_ ? 0.0 : static_cast<double>(x)) + stddev_ * rng.normal());
  }

 private:
  double stddev_;
  bool replace_;
};

class ConstantVote final : public Attack {
 public:
  explicit ConstantVote(int vote) : latent_(vote > 0 ? 1e30f : -1e30f) {}
  void corrupt(arma::fvec& message, const ColluderStatistics*, Rng&) const override { message.fill(latent_); }
  std::string needs(UpdateContent content) const override {
    return content == UpdateContent::kWeights ? "" : "algorithm fedvote (whose clients send votes)";
  }

 private:
  float latent_;
};

class LabelFlip final : public Attack {
 public:
  void corrupt(arma::fvec&, const ColluderStatistics*, Rng&) const override {}
  bool flips_labels() const override { return true; }
};

FEDSIM_REGISTER(AttackRegistry, "sign_flip",
                [](const Config& cfg) -> std::unique_ptr<Attack> {
                  const double scale = finite(cfg, "scale", 1.0, 0.0);
                  if (!(scale > 0.0)) cfg.fail("scale", "a finite number > 0", "'0'");
                  return std::make_unique<SignFlip>(scale);
                },
                "sends -scale x its honest update (under fedvote: inverted votes); setting scale 1");
FEDSIM_REGISTER(AttackRegistry, "scaled",
                [](const Config& cfg) -> std::unique_ptr<Attack> {
                  return std::make_unique<Scaled>(cfg.get_double("factor", 10.0, -1e30, 1e30));
                },
                "sends factor x its honest update; setting factor 10");
FEDSIM_REGISTER(AttackRegistry, "gaussian",
                [](const Config& cfg) -> std::unique_ptr<Attack> {
                  const double stddev = finite(cfg, "std", 1.0, 0.0);
                  if (!(stddev > 0.0)) cfg.fail("std", "a finite number > 0", "'0'");
                  return std::make_unique<Gaussian>(stddev, cfg.get_bool("replace", false));
                },
                "adds N(0, std^2) noise to every coordinate (replace: true sends the noise alone); settings std 1, "
                "replace false");
FEDSIM_REGISTER(AttackRegistry, "constant_vote",
                [](const Config& cfg) -> std::unique_ptr<Attack> {
                  const auto vote = cfg.get_int("vote", 1, -1, 1);
                  if (vote == 0) cfg.fail("vote", "1 or -1", "'0'");
                  return std::make_unique<ConstantVote>(static_cast<int>(vote));
                },
                "fedvote: votes `vote` (1 or -1, default 1) on every weight");
FEDSIM_REGISTER(AttackRegistry, "label_flip",
                [](const Config&) -> std::unique_ptr<Attack> { return std::make_unique<LabelFlip>(); },
                "trains on its data with labels l -> C-1-l and sends that update");

}  // namespace
}  // namespace fedsim
