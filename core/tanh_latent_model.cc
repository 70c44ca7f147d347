#include "core/tanh_latent_model.h"

#include <cassert>
#include <cmath>

namespace fedsim {

TanhLatentModel::TanhLatentModel(std::unique_ptr<Model> inner, float k) : inner_(std::move(inner)), k_(k) {
  assert(inner_ != nullptr);
  assert(k_ > 0.0f && std::isfinite(k_));
}

arma::fvec TanhLatentModel::weights(const arma::fvec& params) const { return arma::tanh(k_ * params); }

arma::fvec TanhLatentModel::binarized_weights(const arma::fvec& params) const {
  arma::fvec w(params.n_elem);
  for (std::size_t i = 0; i < params.n_elem; ++i) w[i] = params[i] < 0.0f ? -1.0f : 1.0f;
  return w;
}

void TanhLatentModel::init(arma::fvec& params, Rng& rng) const {
  inner_->init(params, rng);
  params = arma::atanh(arma::clamp(params, -kClamp, kClamp)) / k_;
}

double TanhLatentModel::loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                          std::span<const std::uint32_t> batch, arma::fvec& grad) const {
  const arma::fvec w = weights(params);
  arma::fvec grad_w;
  const double loss = inner_->loss_and_gradient(w, data, batch, grad_w);
  // d tanh(k h) / dh = k (1 - tanh^2(k h)).
  grad = grad_w % (k_ * (1.0f - arma::square(w)));
  return loss;
}

Evaluation TanhLatentModel::evaluate(const arma::fvec& params, const Dataset& data) const {
  return inner_->evaluate(weights(params), data);
}

Evaluation TanhLatentModel::evaluate_binarized(const arma::fvec& params, const Dataset& data) const {
  return inner_->evaluate(binarized_weights(params), data);
}

double TanhLatentModel::macs_per_sample() const {
  // tanh, 1 - w^2 and the product with dL/dw: about 4 operations per parameter per batch.
  return inner_->macs_per_sample() + 4.0 * static_cast<double>(num_params()) / kNominalBatch;
}

}  // namespace fedsim
