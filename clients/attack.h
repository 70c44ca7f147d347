// Byzantine clients: what an attacker client does to the message it sends.
//
// An attacker is an ordinary SimClient (clients/client.h) that trains as an
// honest one would and then lies in its UpdateUp: the Attack turns the honest
// message (the model difference under fedpaq, the latent weights under
// fedvote, before the uplink pipeline) into the one it sends. The server
// cannot tell an attacker from an honest client; it learns only the decoded
// bytes. A population class (or a fraction of it) is marked as attackers in
// the scenario (server/population.h: `attack:`).
//
// Registered attacks (clients/attacks.cc, clients/attack_little_is_enough.cc):
//   sign_flip           sends -scale v (under fedvote: inverted votes; see below)
//   scaled              sends factor v
//   gaussian            sends v + N(0, std^2) per coordinate, or N(0, std^2) alone (replace: true)
//   constant_vote       fedvote only: always votes `vote` (+1 or -1) on every weight
//   label_flip          trains on its data with labels l -> C - 1 - l, then sends honestly
//   little_is_enough    colluding: every colluder sends mu - z sigma (Baruch et al. 2019)
//
// Under fedvote the message is the latent weights h and the vote quantizer
// draws +1 with probability (1 + tanh(k h)) / 2; sending -h draws +1 with
// probability (1 - tanh(k h)) / 2, which is exactly the distribution of the
// honest vote inverted.
//
// Randomness: an attack's draws come from Rng::derive(seed, Stream::kAttack,
// {client, round}), so they depend on neither threads nor timing, and an
// honest client's streams are the same whether or not others attack.
#pragma once

#include <armadillo>
#include <cstddef>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/registry.h"
#include "core/base/rng.h"
#include "core/data/dataset.h"

namespace fedsim {

enum class UpdateContent;  // clients/client.h

// What colluding attackers know of each other in one dispatch: the
// coordinate-wise mean and standard deviation of their own honest messages
// (the colluders' side channel, outside the federated protocol: the server
// never sees these). "A little is enough" computes its statistics this way,
// from the corrupted workers' own gradients, not from the benign clients'.
struct ColluderStatistics {
  arma::fvec mean;      // coordinate-wise mean over the colluders' honest messages
  arma::fvec stddev;    // sample standard deviation (divide by m - 1); 0 when m = 1
  std::size_t colluders = 0;  // m: colluders dispatched in the batch
  std::size_t batch = 0;      // n: clients dispatched in the batch, colluders included

  // From the colluders' honest messages (all of one length), in a fixed
  // order (client id), accumulated in double.
  static ColluderStatistics of(const std::vector<const arma::fvec*>& honest, std::size_t batch);
};

// Contract: immutable after construction (the factory reads and validates
// its keys, throwing InputError with file:line: key); corrupt() is const and
// thread-safe (different clients call it concurrently). One instance per
// population class, owned by the Population.
class Attack {
 public:
  virtual ~Attack() = default;
  // Turns the honest `message` into the one the client sends, in place.
  // `colluders` is non-null exactly when colludes() is true.
  virtual void corrupt(arma::fvec& message, const ColluderStatistics* colluders, Rng& rng) const = 0;
  // Label flipping: the client trains on its data with flipped labels.
  virtual bool flips_labels() const { return false; }
  // Colluding attacks need the colluders' statistics of the dispatch.
  virtual bool colludes() const { return false; }
  // Whether the attack makes sense for messages of this kind; when not, the
  // text saying what it needs ("algorithm fedvote (votes)").
  virtual std::string needs(UpdateContent content) const {
    (void)content;
    return "";
  }
};

using AttackRegistry = Registry<Attack, const Config&>;

// Label flipping (Tolpegin et al. 2020; Fang et al. 2020): l -> C - 1 - l.
// The copy shares the features of `train` (no second copy of the samples):
// `train` must outlive it and must not be resized.
Dataset label_flipped(const Dataset& train);

// Baruch, Baruch, Goldberg, "A little is enough" (NeurIPS 2019): with n
// workers of which m collude, s = floor(n/2 + 1) - m honest workers must be
// won over; z_max = Phi^-1((n - s) / n). s is clamped to at least 1 (when
// colluders are a majority the formula has no finite value).
double little_is_enough_z(std::size_t n, std::size_t m);

// Phi^-1(p) for p in (0, 1), by bisection on erfc (exact to ~1e-15).
double inverse_normal_cdf(double p);

}  // namespace fedsim
