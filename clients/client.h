// A simulated client: its data view, its end of the compression pipelines,
// and one round of local work from a serialized ModelDown to a serialized
// UpdateUp.
#pragma once

#include <armadillo>
#include <cstdint>
#include <memory>
#include <string>

#include "clients/local_training.h"
#include "core/compression/pipeline.h"
#include "core/data/dataset.h"
#include "core/models/model.h"

namespace fedsim {

// What the client sends back.
enum class UpdateContent {
  kDifference,  // x_local - x_received (FedPAQ)
  kWeights,     // x_local itself (FedVote: the stage binarizes tanh(k x))
};

// Read-only context shared by all clients during a run.
struct ClientContext {
  const Model* model = nullptr;
  const Dataset* train = nullptr;
  LocalTrainingSettings training;
  const PipelineSpec* uplink = nullptr;
  std::vector<Layer> layers;
  UpdateContent content = UpdateContent::kDifference;
  std::uint64_t seed = 0;
};

struct ClientRoundResult {
  std::string update_bytes;  // serialized wire::UpdateUp
  double macs = 0.0;         // multiply-adds of the local steps
  double train_loss = 0.0;
};

// Contract: run_round() of different clients may run concurrently; one
// client runs one round at a time. The result depends only on the inputs
// and (seed, client id, round): never on timing or thread count.
class SimClient {
 public:
  // `precision`: the arithmetic of its local training (its population class's
  // precision); overrides ClientContext::training.precision.
  SimClient(std::uint32_t id, IndexView data, Precision precision = Precision::kFp32)
      : id_(id), data_(std::move(data)), precision_(precision) {}

  // `start_model` is the model decoded from the round's ModelDown.
  ClientRoundResult run_round(const ClientContext& ctx, std::uint32_t round, std::uint64_t model_version,
                              const arma::fvec& start_model);

  std::uint32_t id() const { return id_; }
  std::size_t num_samples() const { return data_.size(); }
  Precision precision() const { return precision_; }

 private:
  std::uint32_t id_;
  IndexView data_;
  Precision precision_;
  std::unique_ptr<Compressor> uplink_encoder_;  // created on first use; keeps stage memory
};

}  // namespace fedsim
