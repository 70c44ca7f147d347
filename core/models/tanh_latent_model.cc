#include "core/models/tanh_latent_model.h"

#include <cassert>
#include <cmath>

#include "core/base/rng.h"

namespace fedsim {

TanhLatentModel::TanhLatentModel(std::unique_ptr<Model> inner, float k) : inner_(std::move(inner)), k_(k) {
  assert(inner_ != nullptr);
  assert(k_ > 0.0f && std::isfinite(k_));
  // Per-layer scale c = sqrt(3) * rms of the inner model's initial weights
  // (a uniform law on [-c, c] has that rms), from a fixed draw so that it does
  // not depend on the scenario seed. Zero-initialised layers (biases) take the
  // scale of the layer before them, or 1 when there is none.
  arma::fvec probe(inner_->num_params());
  Rng rng(0x5ca1e);
  inner_->init(probe, rng);
  scale_.ones(probe.n_elem);
  float last = 1.0f;
  for (const Layer& l : inner_->layers()) {
    if (l.size == 0) continue;
    const arma::fvec part = probe.subvec(l.offset, l.offset + l.size - 1);
    const double rms = std::sqrt(arma::accu(arma::square(arma::conv_to<arma::vec>::from(part))) / double(l.size));
    if (rms > 0.0 && std::isfinite(rms)) last = static_cast<float>(std::sqrt(3.0) * rms);
    scale_.subvec(l.offset, l.offset + l.size - 1).fill(last);
  }
}

arma::fvec TanhLatentModel::weights(const arma::fvec& params) const { return scale_ % arma::tanh(k_ * params); }

arma::fvec TanhLatentModel::binarized_weights(const arma::fvec& params) const {
  arma::fvec w(params.n_elem);
  for (std::size_t i = 0; i < params.n_elem; ++i) w[i] = params[i] < 0.0f ? -scale_[i] : scale_[i];
  return w;
}

void TanhLatentModel::init(arma::fvec& params, Rng& rng) const {
  inner_->init(params, rng);
  params = arma::atanh(arma::clamp(params / scale_, -kClamp, kClamp)) / k_;
}

double TanhLatentModel::loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                          std::span<const std::uint32_t> batch, arma::fvec& grad) const {
  const arma::fvec t = arma::tanh(k_ * params);
  arma::fvec grad_w;
  const double loss = inner_->loss_and_gradient(scale_ % t, data, batch, grad_w);
  // d c tanh(k h) / dh = c k (1 - tanh^2(k h)).
  grad = grad_w % scale_ % (k_ * (1.0f - arma::square(t)));
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
