// A Model whose math runs on LibTorch (PyTorch 1.13's C++ library).
#pragma once

#include <armadillo>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/models/model.h"

namespace fedsim {

class TorchNetwork;  // core/models/torch/torch_network.h

// Turns a TorchNetwork into a Model: the parameters stay fedsim's flat float
// vector (layers() lists one Layer per parameter tensor, named after it, so
// per-layer compression works), and every call wraps slices of it as tensors
// without copying.
//  - loss_and_gradient: softmax cross-entropy, mean over the batch; the
//    gradient by autograd, in chunks of kTorchChunk samples.
//  - evaluate: mean cross-entropy and accuracy (argmax, first on ties) over
//    the data set in chunks, in inference mode.
//
// Determinism (same bits whatever `threads` is): every client worker thread
// runs its own forward and backward passes, so LibTorch's own parallelism is
// turned off: intra-op threads 1 (at::set_num_threads(1), applied to each
// calling thread's OpenMP setting before its first pass) and inter-op threads
// 1, once per process, plus at::globalContext().setDeterministicAlgorithms.
// A single-threaded pass depends only on its inputs; kernels are chosen for
// the CPU (oneDNN's JIT convolutions, ATen's AVX2 / AVX-512 loops), so
// results may differ across CPU types, never across runs or thread counts.
//
// Contract: as Model (immutable after construction, const, thread-safe).
class TorchModel final : public Model {
 public:
  // Samples per forward/backward call: bounds the activations' memory
  // (about 0.3 MB per sample for McMahan et al.'s CNN).
  static constexpr std::size_t kTorchChunk = 256;

  explicit TorchModel(std::unique_ptr<const TorchNetwork> network);
  ~TorchModel() override;

  std::size_t num_params() const override { return num_params_; }
  std::vector<Layer> layers() const override { return layers_; }
  void init(arma::fvec& params, Rng& rng) const override;
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           arma::fvec& grad) const override;
  Evaluation evaluate(const arma::fvec& params, const Dataset& data) const override;
  double macs_per_sample() const override;

  const TorchNetwork& network() const { return *network_; }

 private:
  std::unique_ptr<const TorchNetwork> network_;
  std::vector<Layer> layers_;
  std::size_t num_params_ = 0;
  std::size_t sample_dim_ = 0;
};

// Sets LibTorch's thread counts for fedsim's one-pass-per-worker-thread use
// (see TorchModel). Idempotent; TorchModel calls it.
void use_single_threaded_torch();

}  // namespace fedsim
