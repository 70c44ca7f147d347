// Plain SGD and heavy ball.
//
// sgd:      x <- x - lr g. The expression the client has always used, so the
//           default stays bit-identical.
// momentum: Polyak's heavy ball, x_{t+1} = x_t - lr g_t + beta (x_t - x_{t-1}),
//           kept as m <- beta m + g; x <- x - lr m (the same iterates for a
//           constant lr). Keys: `beta` in [0, 1), default 0.9.
#include "clients/optimizer.h"

namespace fedsim {
namespace {

class Sgd final : public Optimizer {
 public:
  void step(arma::fvec& params, const arma::fvec& grad, double lr) override {
    params -= static_cast<float>(lr) * grad;
  }
  std::unique_ptr<Optimizer> fresh() const override { return std::make_unique<Sgd>(); }
  void save(StateWriter& out) const override { out.begin("sgd"); }
  void restore(StateReader& in) override { in.begin("sgd"); }
};

class Momentum final : public Optimizer {
 public:
  explicit Momentum(double beta) : beta_(beta) {}
  void step(arma::fvec& params, const arma::fvec& grad, double lr) override {
    if (m_.n_elem != grad.n_elem) m_.zeros(grad.n_elem);
    m_ = static_cast<float>(beta_) * m_ + grad;
    params -= static_cast<float>(lr) * m_;
  }
  std::unique_ptr<Optimizer> fresh() const override { return std::make_unique<Momentum>(beta_); }
  void save(StateWriter& out) const override {
    out.begin("momentum");
    out.vec(m_);
  }
  void restore(StateReader& in) override {
    in.begin("momentum");
    m_ = in.col<float>();
  }

 private:
  double beta_;
  arma::fvec m_;
};

FEDSIM_REGISTER(
    OptimizerRegistry, "sgd", [](const Config&) -> std::unique_ptr<Optimizer> { return std::make_unique<Sgd>(); },
    "x <- x - lr g (the default)");
FEDSIM_REGISTER(
    OptimizerRegistry, "momentum",
    [](const Config& c) -> std::unique_ptr<Optimizer> { return std::make_unique<Momentum>(get_decay(c, "beta", 0.9)); },
    "heavy ball (Polyak): m <- beta m + g; x <- x - lr m; beta 0.9");

}  // namespace
}  // namespace fedsim
