// Low-precision local computation, ZipML style (Zhang, Li, Kara, Alistarh,
// Liu, Zhang 2017): a client of precision int8 / int4 / int2 computes its
// minibatch gradients on stochastically rounded samples, model and gradient,
// so that its accuracy pays for the bits its device profile saves.
//
// Quantizer: unbiased stochastic rounding onto a uniform grid of 2^b points
// spanning [min(x), max(x)] of the block being quantized (one sample, one
// layer of the model or of the gradient): step = (max - min) / (2^b - 1),
// value = min + k * step with the b-bit code k in [0, 2^b). A value between
// grid points l <= x <= u = l + step rounds up with probability (x - l) / step,
// so E[Q(x)] = x and Var[Q(x)] = (u - x)(x - l) <= step^2 / 4 (ZipML).
// The grid is asymmetric (affine, zero point at min) rather than symmetric
// around 0: every one of the 2^b codes is used, which doubles the resolution
// for one-signed data such as pixel intensities (int2: 4 levels on [0, max]
// instead of {0, max}), and it is never coarser than the symmetric grid
// (step <= 2 max|x| / (2^b - 1) < max|x| / (2^(b-1) - 1)). The end points are
// grid points, so there is no clipping; a constant block is exact.
//
// What is unbiased:
//  - Linear least-squares models (Model::least_squares_form: linear_regression,
//    ls_svm): the gradient a (w^T a + b - t) is quadratic in the sample a, so
//    one quantization Q(a) gives E[Q(a) Q(a)^T] w = (a a^T + diag Var Q(a)) w:
//    biased by the quantization variance. ZipML's double sampling takes two
//    independent quantizations, g = Q1(a) (Q2(a)^T w + b - t), and
//    E[Q1 Q2^T] = a a^T. The model and the gradient are stochastically rounded
//    too; the gradient is linear in the model, so the end-to-end estimate is
//    an unbiased estimate of the fp32 minibatch gradient (the guarantee).
//  - Other models (softmax_regression, mlp, tanh-latent wrappers): samples (one
//    quantization each), model (before the gradient) and gradient (after) are
//    each rounded without bias, but the gradient is non-linear in the sample
//    and in the model, so the end-to-end estimate is biased by a term of the
//    order of the quantization variance. ZipML's remedy (a polynomial
//    approximation of the loss, then double sampling) is not implemented.
//    Softmax regression and the MLP run their first layer on the packed
//    integer kernels (packed_dense_cross_entropy below): its product W Q(a)
//    is the only one whose two operands are both on b-bit grids (the hidden
//    activations are not quantized, as on the float grid).
// The master copy of the model the client updates stays fp32 (mixed precision):
// only the operands of the gradient computation are low precision.
#pragma once

#include <armadillo>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "clients/device_profile.h"
#include "clients/packed_kernels.h"
#include "clients/zipml_markers.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/base/rng.h"

namespace fedsim {

// The b-bit grid of one block: lo + k * step, k in [0, 2^bits).
struct UniformGrid {
  float lo = 0.0f;
  float step = 0.0f;  // 0 for a constant block (every value is lo)
  std::uint32_t points = 0;  // 2^bits
};

// The grid over [min(x), max(x)] with 2^bits points; bits in [1, 16], x not
// empty. A NaN or infinity in x makes lo and step NaN (stochastic_round then
// copies x).
UniformGrid uniform_grid(std::span<const float> x, int bits);

// out[i] = x[i] stochastically rounded to a neighbouring grid point, unbiased;
// every x[i] must lie in [grid.lo, grid.lo + (points - 1) * step]. out may alias x.
// Draws ceil(size / 2) times from rng (two 24-bit uniforms per draw) unless
// the step is 0 or not finite, in which case out = x and nothing is drawn.
void stochastic_round(std::span<const float> x, const UniformGrid& grid, Rng& rng, std::span<float> out);

// The codes of stochastic_round: the same draws and the same grid points
// (grid.lo + codes[i] * grid.step is bit for bit stochastic_round's out[i]);
// grid.points <= 256. Returns false, drawing and writing nothing, when the
// grid is not finite (stochastic_round then copies x); a constant block gives
// all-zero codes.
bool stochastic_codes(std::span<const float> x, const UniformGrid& grid, Rng& rng, std::uint8_t* codes);

// stochastic_codes onto uniform_grid(x, bits) (bits 2, 4 or 8), packed into
// out (packed_kernels.h); false (nothing drawn) when x is not finite. codes is scratch.
bool stochastic_pack(std::span<const float> x, int bits, Rng& rng, packed::PackedVector& out,
                     std::vector<std::uint8_t>& codes);

// stochastic_round onto uniform_grid(x, bits). out may alias x.
void stochastic_quantize(std::span<const float> x, int bits, Rng& rng, std::span<float> out);

// ZipML double sampling for a linear least-squares model with parameters
// params = [w (dim); b] and loss mean_j 0.5 (w^T a_j + b - t_j)^2 + 0.5 l2 ||w||^2:
// with outer = Q1(A), inner = Q2(A) (dim x n, one column per sample, two
// independent quantizations of the same samples A),
//   grad_w = (1/n) sum_j outer_j (w^T inner_j + b - t_j) + l2 w,
//   grad_b = (1/n) sum_j (w^T inner_j + b - t_j).
// Returns the unbiased loss estimate mean_j 0.5 r1_j r2_j + 0.5 l2 ||w||^2
// (r1 from outer, r2 from inner; E[r1 r2] = r^2 by independence, so it can
// be negative on a tiny batch). With outer == inner this is plain (single)
// sampling, biased by (1/n) sum_j diag(Var Q(a_j)) w.
double double_sampled_least_squares(const arma::fvec& params, const arma::fmat& outer, const arma::fmat& inner,
                                    std::span<const float> targets, double l2, arma::fvec& grad);

// double_sampled_least_squares on packed operands, the definition at int8 /
// int4 / int2 (the integer kernels of packed_kernels.h): w = the packed weight
// layer (its values w_values, for the l2 term), b the quantized bias, outer[j]
// and inner[j] the two packed quantizations of sample j. The residuals are
// exact integer dot products combined in double; the weight gradient
// accumulates (r2_j / n) outer_j with axpy_codes in float, in sample order.
// Same quantized values as the float-grid function, so the two differ by the
// float path's rounding only (bounded in tests/clients/packed_kernels_test.cc).
double packed_double_sampled_least_squares(const packed::PackedVector& w, std::span<const float> w_values, float b,
                                           std::span<const packed::PackedVector> outer,
                                           std::span<const packed::PackedVector> inner,
                                           std::span<const float> targets, double l2, arma::fvec& grad);

// The mean softmax cross-entropy of a ReLU network widths[0] -> ... ->
// widths.back() (the Mlp's function and parameter layout: per layer the
// row-major out x in weights, then the out biases; softmax regression is the
// network without hidden layers) and its gradient, the first layer on packed
// operands: the definition at int8 / int4 / int2. values holds the quantized
// parameters (the first weight layer's values are not read: its rows are
// first_rows[o], one packed row per output unit, all on the layer's grid);
// samples[j] is the packed quantization of sample j, labels[j] its class.
// The first layer's pre-activations are exact integer dot products combined
// in double (packed::affine_dot) plus the bias, rounded once to float; the
// other layers are the Mlp's float kernels on the quantized values; the first
// weight layer's gradient row o accumulates delta_oj Q(a_j) over the packed
// sample codes (packed::axpy_codes_batch, in sample order). Same quantized values
// as the float-grid function, so the two differ by the float path's rounding
// only (bounded in tests/clients/packed_kernels_test.cc); bit-identical on
// every SIMD path (isa caps the path, as in packed_kernels.h).
double packed_dense_cross_entropy(std::span<const std::size_t> widths, const arma::fvec& values,
                                  std::span<const packed::PackedVector> first_rows,
                                  std::span<const packed::PackedVector> samples, std::span<const std::uint32_t> labels,
                                  arma::fvec& grad, simd::Isa isa = simd::best_isa());

// One client's minibatch gradients at one precision. Holds scratch buffers, so
// one instance per thread (not thread-safe); the model is borrowed and must
// outlive it. Deterministic in (params, batch, rng state).
class QuantizedCompute {
 public:
  QuantizedCompute(const Model& model, Precision precision);

  // The loss and gradient of model on data[batch] at params, computed from
  // quantized operands as described at the top of this file (at kFp32 it is
  // model.loss_and_gradient itself and draws nothing from rng). Returns the
  // mean minibatch loss as computed on the quantized operands.
  double loss_and_gradient(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                           Rng& rng, arma::fvec& grad);

  // Samples are rounded onto these per-feature markers (ZipML's optimal
  // levels, clients/zipml_markers.h) instead of each sample's uniform grid;
  // null: uniform. Borrowed; the packed integer kernels are then not used.
  void set_markers(const FeatureMarkers* markers) { markers_ = markers; }

  // Whether gradients are double-sampled (the model is linear least squares).
  bool double_sampling() const { return form_.has_value(); }

  // Multiply-adds per sample beyond the model's macs_per_sample: double
  // sampling's second forward pass w^T Q2(a) + b (ZipML), num_params; 0 otherwise.
  double extra_macs_per_sample() const;

 private:
  void quantize_samples(const Dataset& data, std::span<const std::uint32_t> batch, Rng& rng, arma::fmat& out);
  void quantize_layers(arma::fvec& v, Rng& rng) const;
  // The integer path of double sampling (false: a grid is not finite, nothing drawn).
  bool packed_least_squares(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                            Rng& rng, arma::fvec& grad, double& loss);
  // The integer path of softmax regression and the MLP (false: a grid is not finite, nothing drawn).
  bool packed_dense(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch, Rng& rng,
                    arma::fvec& grad, double& loss);

  const Model& model_;
  Precision precision_;
  int bits_;
  std::optional<LeastSquaresForm> form_;  // set iff double sampling
  std::vector<Layer> layers_;
  // Scratch, reused across steps.
  arma::fvec quantized_params_;
  arma::fmat outer_;
  arma::fmat inner_;
  std::vector<float> targets_;
  Dataset batch_data_;
  std::vector<std::uint32_t> batch_order_;
  const FeatureMarkers* markers_ = nullptr;
  bool packed_ = false;  // bits 2, 4 or 8 and a least-squares form: integer kernels
  packed::PackedVector packed_w_;
  std::vector<packed::PackedVector> packed_outer_, packed_inner_;
  // The network's widths when the model is softmax regression or an MLP at 2,
  // 4 or 8 bits (packed_dense); empty otherwise.
  std::vector<std::size_t> dense_widths_;
  std::vector<packed::PackedVector> packed_rows_;
  std::vector<std::uint32_t> labels_;
  std::vector<UniformGrid> sample_grids_;
  std::vector<std::uint8_t> codes_;
};

}  // namespace fedsim
