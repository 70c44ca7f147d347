// "A little is enough" (Baruch, Baruch, Goldberg, NeurIPS 2019): the
// colluders estimate the coordinate-wise mean mu and standard deviation sigma
// of the clients' updates and all send mu - z sigma, a shift small enough to
// pass for honest in every coordinate (so median, trimmed mean and Krum keep
// it) yet consistent, so that it adds up round after round.
//
// As in the paper, mu and sigma are computed from the colluders' own honest
// updates (ColluderStatistics: the colluders dispatched in the same batch,
// which share them outside the federated protocol); they never see the
// benign clients' updates. With one colluder in a batch sigma is 0 and it
// sends its honest update.
//
// Setting: z, a number >= 0; by default the paper's z_max for the batch
// (little_is_enough_z(n, m) with n the clients dispatched, m the colluders
// among them: 0.253 for n = 10, m = 2).
#include "clients/attack.h"

#include <cassert>
#include <limits>

namespace fedsim {
namespace {

class LittleIsEnough final : public Attack {
 public:
  explicit LittleIsEnough(double z) : z_(z) {}

  void corrupt(arma::fvec& message, const ColluderStatistics* colluders, Rng&) const override {
    assert(colluders && colluders->mean.n_elem == message.n_elem);
    const double z = z_ >= 0.0 ? z_ : little_is_enough_z(colluders->batch, colluders->colluders);
    message = colluders->mean - static_cast<float>(z) * colluders->stddev;
  }
  bool colludes() const override { return true; }

 private:
  double z_;  // < 0: the paper's z_max per batch
};

FEDSIM_REGISTER(AttackRegistry, "little_is_enough",
                [](const Config& cfg) -> std::unique_ptr<Attack> {
                  const double z = cfg.has("z") ? cfg.get_double("z", 0.0, 1e6) : -1.0;
                  return std::make_unique<LittleIsEnough>(z);
                },
                "colluders send mu - z sigma of their own honest updates (Baruch et al. 2019); setting z "
                "(default: the paper's z_max for the batch)");

}  // namespace
}  // namespace fedsim
