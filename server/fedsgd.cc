// FedSGD: each sampled client sends one minibatch stochastic gradient taken
// at the model it received (no local step), through the uplink pipeline;
// the server aggregates them (sample-weighted mean by default) and applies
// its optimizer with the aggregate as the gradient: x <- x - eta_s g with
// the default sgd, or server_optimizer's step. The per-gradient methods run
// on it, so that their step sizes and thresholds mean what the papers say:
// QCMD / QRDA AdaGrad (threshold quantizer + adagrad with l1),
// communication-compressed AMSGrad (error_feedback + sign + amsgrad), CHB
// (chb_censoring + momentum). Gradients include weight_decay * x.
//
// Keys: none. Needs local_steps 1 (the default) and no client_optimizer;
// learning_rate is not used (the server's step is server_learning_rate).
#include "server/algorithm.h"

namespace fedsim {
namespace {

class FedSgd final : public Algorithm {
 public:
  UpdateContent update_content() const override { return UpdateContent::kGradient; }
  std::string describe_updates() const override { return "stochastic gradients"; }
  std::string default_aggregator() const override { return "mean"; }

  void check(const AlgorithmCheck& s) const override {
    const std::int64_t steps = s.root.get_int("local_steps", 1, 1, 1'000'000);
    if (steps != 1)
      s.root.fail("local_steps", "1 for algorithm fedsgd (a client sends one stochastic gradient)",
                  "'" + std::to_string(steps) + "'");
    const Config client = s.root.child("client_optimizer");
    const std::string name = client.get_string("name", "sgd");
    if (client.has("name") && name != "sgd")
      client.fail("name", "no client_optimizer for algorithm fedsgd (clients take no local step; give the "
                          "optimizer as server_optimizer)", "'" + name + "'");
  }
};

FEDSIM_REGISTER(
    AlgorithmRegistry, "fedsgd", [](const Config&) -> std::unique_ptr<Algorithm> { return std::make_unique<FedSgd>(); },
    "FedSGD: one stochastic gradient per client, the server's optimizer steps with their mean");

}  // namespace
}  // namespace fedsim
