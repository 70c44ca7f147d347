// FedVote's latent-weight reparametrisation (Yue, Jin, Wong, Dai 2021).
//
// The trainable parameters are latent real weights h; the network sees the
// normalised weights w = c tanh(k h), c a fixed per-layer scale (sqrt(3) times
// the rms of the inner model's initial weights of that layer, so that the
// votes' +-1 range maps onto the layer's natural weight range; c = 1 for a
// model initialised at zero). Clients train h with the chain
// rule dL/dh = dL/dw * c k (1 - tanh^2(k h)) and upload votes drawn from tanh(k h)
// (core/compression/fedvote_quantizer.h); the server's "vote" aggregator maps the soft
// vote back to h. The deployed model uses binary weights sign(h).
#pragma once

#include <memory>

#include "core/models/model.h"

namespace fedsim {

// Contract: as Model (immutable, const, thread-safe). Owns the inner model,
// which is evaluated at w = c tanh(k h). Not registered in ModelRegistry: the
// scenario's `algorithm: fedvote` wraps the configured model in one.
class TanhLatentModel final : public Model {
 public:
  static constexpr float kDefaultK = 1.5f;  // the reference code's k

  // k > 0; inner must not be null.
  explicit TanhLatentModel(std::unique_ptr<Model> inner, float k = kDefaultK);

  std::size_t num_params() const override { return inner_->num_params(); }
  std::vector<Layer> layers() const override { return inner_->layers(); }
  // The inner model's initial weights w, mapped to h = atanh(clamp(w)) / k with
  // |w| clamped to 1 - 1e-4 (the server's soft-vote clamp) so h stays finite.
  void init(arma::fvec& params, Rng& rng) const override;
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override;
  // The inner model at w = c tanh(k h) (the "soft" model clients train).
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override;
  // The inner model's cost plus the tanh and chain-rule work (a few operations
  // per parameter per batch), amortised over a nominal batch of
  // kNominalBatch samples.
  double macs_per_sample() const override;

  // The deployed model of FedVote: binary weights c sign(h), with sign(0) = +1
  // so that every weight is +-c.
  Evaluation evaluate_binarized(const arma::fvec& params, const Dataset& data) const;

  // w = c tanh(k h), c the per-layer scale.
  arma::fvec weights(const arma::fvec& params) const;
  arma::fvec binarized_weights(const arma::fvec& params) const;

  float k() const { return k_; }
  const arma::fvec& scale() const { return scale_; }
  const Model& inner() const { return *inner_; }

  static constexpr double kNominalBatch = 32.0;
  static constexpr float kClamp = 1.0f - 1e-4f;

 private:
  std::unique_ptr<Model> inner_;
  float k_;
  arma::fvec scale_;  // c per parameter
};

}  // namespace fedsim
