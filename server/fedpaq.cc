// FedPAQ (Reisizadeh et al. 2020): periodic averaging of quantized model
// differences with partial participation. Clients run tau local SGD steps
// from the global model and send x_local - x_received through the uplink
// pipeline; the server averages the decoded differences (sample-weighted by
// default) and adds them, scaled by the server learning rate.
#include "server/algorithm.h"

namespace fedsim {
namespace {

class FedPaq final : public Algorithm {
 public:
  UpdateContent update_content() const override { return UpdateContent::kDifference; }
  std::string describe_updates() const override { return "model differences"; }
  std::string default_aggregator() const override { return "mean"; }
};

FEDSIM_REGISTER(
    AlgorithmRegistry, "fedpaq", [](const Config&) -> std::unique_ptr<Algorithm> { return std::make_unique<FedPaq>(); },
    "FedPAQ: local SGD, quantized model differences, averaged (Reisizadeh et al. 2020)");

}  // namespace
}  // namespace fedsim
