// Adam and its variants, elementwise, with m, v (and vhat) in float32.
//
// adam (Kingma & Ba 2015): m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g*g;
//   x <- x - lr mhat / (sqrt(vhat) + eps), mhat = m / (1 - b1^t),
//   vhat = v / (1 - b2^t) with `bias_correction: true` (the default), else
//   m and v themselves (FedOpt's server Adam, Reddi et al. 2021).
// amsgrad (Reddi, Kale, Kumar 2018; the update of communication-compressed
//   AMSGrad with error feedback): as adam without bias correction, with
//   vhat <- max(vhat, v) and x <- x - lr m / (sqrt(vhat) + eps).
// yogi (Zaheer et al. 2018; FedYogi): v <- v - (1-b2) g*g sign(v - g*g);
//   x <- x - lr m / (sqrt(v) + eps), no bias correction.
//
// Keys: `beta1` in [0, 1) (0.9), `beta2` in [0, 1) (0.999), `eps` > 0
// (1e-8; FedOpt uses 1e-3 on the server), adam's `bias_correction` (true).
#include <algorithm>
#include <cmath>

#include "clients/optimizer.h"

namespace fedsim {
namespace {

enum class Variant { kAdam, kAmsgrad, kYogi };

struct AdamSettings {
  Variant variant = Variant::kAdam;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool bias_correction = false;
};

class Adam final : public Optimizer {
 public:
  explicit Adam(const AdamSettings& s) : s_(s) {}

  void step(arma::fvec& params, const arma::fvec& grad, double lr) override {
    const std::size_t n = grad.n_elem;
    if (m_.n_elem != n) {
      m_.zeros(n);
      v_.zeros(n);
      if (s_.variant == Variant::kAmsgrad) vmax_.zeros(n);
      t_ = 0;
    }
    ++t_;
    const float b1 = static_cast<float>(s_.beta1);
    const float b2 = static_cast<float>(s_.beta2);
    const float eps = static_cast<float>(s_.eps);
    // 1 - beta in double: 1.0f - 0.999f is off by 1e-5 relative (0.999 is not a float).
    const float c1 = static_cast<float>(1.0 - s_.beta1);
    const float c2 = static_cast<float>(1.0 - s_.beta2);
    float step = static_cast<float>(lr);
    float v_scale = 1.0f;
    if (s_.bias_correction) {
      step = static_cast<float>(lr / (1.0 - std::pow(s_.beta1, static_cast<double>(t_))));
      v_scale = static_cast<float>(1.0 / (1.0 - std::pow(s_.beta2, static_cast<double>(t_))));
    }
    float* x = params.memptr();
    const float* g = grad.memptr();
    float* m = m_.memptr();
    float* v = v_.memptr();
    for (std::size_t i = 0; i < n; ++i) {
      const float g2 = g[i] * g[i];
      m[i] = b1 * m[i] + c1 * g[i];
      float denominator = 1.0f;
      switch (s_.variant) {
        case Variant::kAdam:
          v[i] = b2 * v[i] + c2 * g2;
          denominator = std::sqrt(v_scale * v[i]) + eps;
          break;
        case Variant::kAmsgrad:
          v[i] = b2 * v[i] + c2 * g2;
          vmax_[i] = std::max(vmax_[i], v[i]);
          denominator = std::sqrt(vmax_[i]) + eps;
          break;
        case Variant::kYogi: {
          const float diff = v[i] - g2;
          const float sign = diff > 0.0f ? 1.0f : (diff < 0.0f ? -1.0f : 0.0f);
          v[i] = v[i] - c2 * g2 * sign;
          denominator = std::sqrt(v[i]) + eps;
          break;
        }
      }
      x[i] -= step * m[i] / denominator;
    }
  }
  std::unique_ptr<Optimizer> fresh() const override { return std::make_unique<Adam>(s_); }
  void save(StateWriter& out) const override {
    out.begin(name());
    out.vec(m_);
    out.vec(v_);
    out.vec(vmax_);
    out.put(t_);
  }
  void restore(StateReader& in) override {
    in.begin(name());
    m_ = in.col<float>();
    v_ = in.col<float>();
    vmax_ = in.col<float>();
    t_ = in.get<std::uint64_t>();
    const std::size_t want_max = s_.variant == Variant::kAmsgrad && m_.n_elem ? m_.n_elem : 0;
    if (v_.n_elem != m_.n_elem || vmax_.n_elem != want_max)
      throw DecodeError(std::string(name()) + ": state vectors of inconsistent lengths");
  }

 private:
  const char* name() const {
    return s_.variant == Variant::kAdam ? "adam" : s_.variant == Variant::kAmsgrad ? "amsgrad" : "yogi";
  }

  AdamSettings s_;
  arma::fvec m_, v_, vmax_;
  std::uint64_t t_ = 0;
};

template <Variant variant>
std::unique_ptr<Optimizer> make_adam(const Config& c) {
  AdamSettings s;
  s.variant = variant;
  s.beta1 = get_decay(c, "beta1", 0.9);
  s.beta2 = get_decay(c, "beta2", 0.999);
  s.eps = c.get_double("eps", 1e-8, 0.0, 1e6);
  if (!(s.eps > 0.0)) c.fail("eps", "a number > 0 (it keeps the step's denominator positive)", "0");
  if (variant == Variant::kAdam) s.bias_correction = c.get_bool("bias_correction", true);
  return std::make_unique<Adam>(s);
}

FEDSIM_REGISTER(OptimizerRegistry, "adam", make_adam<Variant::kAdam>,
                "Adam (Kingma & Ba 2015): beta1 0.9, beta2 0.999, eps 1e-8, bias_correction true");
FEDSIM_REGISTER(OptimizerRegistry, "amsgrad", make_adam<Variant::kAmsgrad>,
                "AMSGrad (Reddi et al. 2018): Adam with vhat = max(vhat, v), no bias correction");
FEDSIM_REGISTER(OptimizerRegistry, "yogi", make_adam<Variant::kYogi>,
                "Yogi (Zaheer et al. 2018): v <- v - (1-beta2) g^2 sign(v - g^2)");

}  // namespace
}  // namespace fedsim
