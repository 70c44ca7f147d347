// AdaGrad (Duchi, Hazan, Singer, JMLR 2011), diagonal, with an optional
// L1 term lambda ||x||_1 handled exactly (proximal / dual-averaging step).
//
// G <- G + g*g; H = delta + sqrt(G) (elementwise), then
//   form cmd (composite mirror descent, the default):
//     z = x - lr g / H;  x_i <- sign(z_i) max(|z_i| - lambda lr / H_i, 0)
//     (lambda = 0: plain AdaGrad, x <- x - lr g / H);
//   form rda (regularized dual averaging, t = steps so far, gbar = mean of
//   the t gradients, prox centre 0 as in the paper):
//     x_i <- -sign(gbar_i) (lr t / H_i) max(|gbar_i| - lambda, 0),
//     an exact zero wherever |gbar_i| <= lambda. The iterate does not depend
//     on the current x (only on the gradients), so RDA forgets the model's
//     initial values: start it from zeros.
// Applied to quantized gradients (QCMD / QRDA AdaGrad), G is built from the
// quantized gradients the optimizer sees.
//
// Keys: `form` cmd/rda (cmd), `l1` lambda >= 0 (0), `delta` > 0 (1e-8),
// `initial_accumulator` G_0 >= 0 (0).
#include <cmath>

#include "clients/optimizer.h"

namespace fedsim {
namespace {

class AdaGrad final : public Optimizer {
 public:
  AdaGrad(bool rda, double l1, double delta, double initial)
      : rda_(rda), l1_(l1), delta_(delta), initial_(initial) {}

  void step(arma::fvec& params, const arma::fvec& grad, double lr) override {
    const std::size_t n = grad.n_elem;
    if (G_.n_elem != n) {
      G_.set_size(n);
      G_.fill(static_cast<float>(initial_));
      if (rda_) sum_.zeros(n);
      t_ = 0;
    }
    ++t_;
    G_ += grad % grad;
    const float delta = static_cast<float>(delta_);
    const float lambda = static_cast<float>(l1_);
    const float step = static_cast<float>(lr);
    float* x = params.memptr();
    const float* g = grad.memptr();
    const float* G = G_.memptr();
    if (rda_) {
      const double t = static_cast<double>(t_);
      for (std::size_t i = 0; i < n; ++i) {
        sum_[i] += static_cast<double>(g[i]);
        const double gbar = sum_[i] / t;
        const double h = static_cast<double>(delta + std::sqrt(G[i]));
        const double shrunk = std::abs(gbar) - static_cast<double>(lambda);
        x[i] = shrunk > 0.0 ? static_cast<float>(-std::copysign(1.0, gbar) * (static_cast<double>(lr) * t / h) * shrunk)
                            : 0.0f;
      }
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const float h = delta + std::sqrt(G[i]);
      const float z = x[i] - step * g[i] / h;
      if (lambda == 0.0f) {
        x[i] = z;
        continue;
      }
      const float shrunk = std::abs(z) - lambda * step / h;
      x[i] = shrunk > 0.0f ? std::copysign(shrunk, z) : 0.0f;
    }
  }
  std::unique_ptr<Optimizer> fresh() const override {
    return std::make_unique<AdaGrad>(rda_, l1_, delta_, initial_);
  }
  void save(StateWriter& out) const override {
    out.begin(rda_ ? "adagrad_rda" : "adagrad");
    out.vec(G_);
    out.vec(sum_);
    out.put(t_);
  }
  void restore(StateReader& in) override {
    in.begin(rda_ ? "adagrad_rda" : "adagrad");
    G_ = in.col<float>();
    sum_ = in.col<double>();
    t_ = in.get<std::uint64_t>();
    if (rda_ && sum_.n_elem != G_.n_elem)
      throw DecodeError("adagrad: " + std::to_string(sum_.n_elem) + " gradient sums for " +
                        std::to_string(G_.n_elem) + " accumulators");
  }

 private:
  bool rda_;
  double l1_;
  double delta_;
  double initial_;
  arma::fvec G_;
  arma::vec sum_;  // RDA: sum of the gradients (double: it grows with t)
  std::uint64_t t_ = 0;
};

std::unique_ptr<Optimizer> make_adagrad(const Config& c) {
  const bool rda = c.get_choice("form", "cmd", {"cmd", "rda"}) == "rda";
  const double l1 = c.get_double("l1", 0.0, 0.0, 1e6);
  const double delta = c.get_double("delta", 1e-8, 0.0, 1e6);
  if (!(delta > 0.0)) c.fail("delta", "a number > 0 (H = delta + sqrt(G) divides the step)", "0");
  const double initial = c.get_double("initial_accumulator", 0.0, 0.0, 1e12);
  return std::make_unique<AdaGrad>(rda, l1, delta, initial);
}

FEDSIM_REGISTER(OptimizerRegistry, "adagrad", make_adagrad,
                "AdaGrad (Duchi et al. 2011), diagonal; form cmd (composite mirror descent) or rda (dual "
                "averaging), l1 for exact zeros; delta 1e-8");

}  // namespace
}  // namespace fedsim
