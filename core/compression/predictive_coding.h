// Predictive coding for FL (Yue, Jin, Wong, Dai, "Communication-efficient
// federated learning via predictive coding", 2021/22): both ends keep the
// history of reconstructed updates and the same prediction functions; the
// sender transmits only the quantized, entropy-coded residual between its
// update and the prediction.
//
// Per round and per layer (StageContext::layers; a layer is a contiguous
// segment), the encoder
//   1. picks the predictor whose residual x - p has the lowest energy;
//   2. picks the residual quantizer among uniform scalar quantizers with
//      step = max|r| / (2^(b-1) - 1), b in `bits`, by the cost
//        J(b) = E||r - Q_b(r)||^2 / ||x||^2 + lambda * R(b) / n,
//      i.e. distortion relative to the energy of the layer's update (||r||^2
//      when the update is 0) plus lambda times bits per coordinate. Both terms
//      are dimensionless, so lambda is scale-free: scaling the update by c
//      changes no choice. Normalising by the update rather than the residual
//      is what lets a good prediction earn a coarser quantizer. The expected
//      distortion and the rate R (the adaptive model's ideal code length from
//      the expected symbol counts, AdaptiveModel::ideal_bits, plus the header)
//      are computed in closed form from r, never from the rounding draws, so
//      the choice does not depend on them (on large layers only for the
//      candidates that a lower bound of J from a histogram of r cannot rule
//      out against an exactly computed J: the same choice, less work);
//   3. quantizes r with unbiased stochastic rounding, q_i in [-L, L];
//   4. sends predictor id, quantizer id, step (float32) and the symbols
//      q > 0 -> 2q - 1, q <= 0 -> -2q through one adaptive arithmetic coder
//      (a fresh AdaptiveModel over 2^b - 1 symbols per layer). Header fields
//      are coded as equiprobable bits in the same stream, so a payload is one
//      arithmetic-coded stream ending in its 32-bit flush.
// Reconstruction = prediction + q * step; both ends append it to the history
// (encoder in encode(), decoder in decode(), which commits only after the
// whole payload decoded cleanly).
//
// Unbiased: given the history, the prediction and the choice of quantizer are
// deterministic and stochastic rounding is unbiased, so E[reconstruction] = x
// (up to float rounding). A residual that is exactly 0 is sent as step 0
// with no symbols.
//
// Predictors (the reference code's "previous update", delta/extrapolation and
// adaptive linear predictors):
//   zero    0
//   last    x_{t-1}
//   mean    running mean of all reconstructed updates so far
//   linear  2 x_{t-1} - x_{t-2} (x_{t-1} while only one update is known)
//   lms     w1 x_{t-1} + w2 x_{t-2}, per-layer weights adapted after every
//           round by block-normalised LMS with step `lms_step`, starting at
//           w = (1, 0)
// Missing history entries are zero.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

enum class Predictor : std::uint8_t { kZero, kLast, kMean, kLinear, kLms };
inline constexpr std::array<Predictor, 5> kAllPredictors{Predictor::kZero, Predictor::kLast, Predictor::kMean,
                                                         Predictor::kLinear, Predictor::kLms};
const char* predictor_name(Predictor p);

// Settings of the "predictive_coding" stage:
//   predictors  list of names (default all: zero, last, mean, linear, lms)
//   bits        candidate quantizers, list of distinct b in [2, 12]
//               (default [2, 3, 4, 6, 8])
//   lambda      rate weight >= 0 (default 0.1, as in the reference code)
//   lms_step    NLMS step in (0, 2) (default 0.5)
struct PredictiveCodingOptions {
  std::vector<Predictor> predictors{kAllPredictors.begin(), kAllPredictors.end()};
  std::vector<int> bits{2, 3, 4, 6, 8};
  double lambda = 0.1;
  double lms_step = 0.5;

  // Reads every key above; InputError ("file:line: key: expected X, found Y")
  // for unknown or repeated predictor names, out-of-range values, empty lists.
  static PredictiveCodingOptions from_config(const Config& cfg);
};

// What was chosen for one layer in the last encode()/decode().
struct LayerChoice {
  Predictor predictor = Predictor::kZero;
  int bits = 0;
  float step = 0.0f;  // 0: the residual was exactly 0 and no symbols were sent
};

class PredictiveCoder final : public Compressor {
 public:
  // `layers` must tile [0, dim) (in any order); empty means one layer.
  PredictiveCoder(PredictiveCodingOptions options, std::size_t dim, std::vector<Layer> layers);

  // Throws std::invalid_argument for a wrong size or non-finite residuals
  // (caller errors), never for the data's values otherwise.
  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return true; }
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

  const std::vector<LayerChoice>& last_choices() const { return choices_; }
  std::uint64_t rounds() const { return rounds_; }
  const PredictiveCodingOptions& options() const { return options_; }

 private:
  void predict(Predictor p, std::size_t layer, std::span<float> out) const;
  // ||x - p||^2 of every predictor on `layer`, indexed by Predictor, each
  // summed in coordinate order as a loop over predict()'s output would.
  std::array<double, kAllPredictors.size()> residual_energies(std::size_t layer, std::span<const float> x) const;
  void commit(std::span<const float> recon);

  PredictiveCodingOptions options_;
  std::size_t dim_;
  std::vector<Layer> layers_;
  int predictor_bits_;
  int quantizer_bits_;

  // History, identical on both ends.
  std::vector<float> prev1_;  // x_{t-1}
  std::vector<float> prev2_;  // x_{t-2}
  std::vector<float> mean_;
  std::vector<std::array<double, 2>> lms_weights_;  // per layer
  std::uint64_t rounds_ = 0;

  std::vector<LayerChoice> choices_;
  std::vector<float> scratch_;  // decode target, committed at the end
  // Per-layer work buffers, kept so that encode()/decode() allocate only once.
  std::vector<float> prediction_;
  std::vector<float> residual_;
  std::vector<double> counts_;
  std::vector<std::uint64_t> bound_hist_;  // residual histogram and level caps of
  std::vector<double> bound_caps_;         // the candidates' cost bounds
};

}  // namespace fedsim
