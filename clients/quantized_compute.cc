#include "clients/quantized_compute.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/models/mlp.h"
#include "core/models/model_kernels.h"
#include "core/models/softmax_regression.h"

namespace fedsim {

namespace {

// Elements per block of the rounding kernel: the uniforms of a block are drawn
// first, so that the arithmetic loop has no dependency on the generator and
// vectorises (fixed trip count, local buffers that cannot alias x or out).
constexpr std::size_t kBlock = 256;
// Independent min/max accumulators (breaks the dependency chain; vectorises).
constexpr std::size_t kLanes = 8;

}  // namespace

UniformGrid uniform_grid(std::span<const float> x, int bits) {
  assert(!x.empty() && bits >= 1 && bits <= 16);
  // v * 0 is 0 for finite v and NaN for NaN or infinity: `poison` flags a
  // non-finite block without a branch in the loop.
  float lo[kLanes], hi[kLanes], poison[kLanes];
  for (std::size_t l = 0; l < kLanes; ++l) {
    lo[l] = hi[l] = x[0];
    poison[l] = 0.0f;
  }
  std::size_t i = 0;
  for (; i + kLanes <= x.size(); i += kLanes) {
    for (std::size_t l = 0; l < kLanes; ++l) {
      const float v = x[i + l];
      lo[l] = v < lo[l] ? v : lo[l];
      hi[l] = v > hi[l] ? v : hi[l];
      poison[l] += v * 0.0f;
    }
  }
  for (; i < x.size(); ++i) {
    lo[0] = std::min(lo[0], x[i]);
    hi[0] = std::max(hi[0], x[i]);
    poison[0] += x[i] * 0.0f;
  }
  for (std::size_t l = 1; l < kLanes; ++l) {
    lo[0] = std::min(lo[0], lo[l]);
    hi[0] = std::max(hi[0], hi[l]);
    poison[0] += poison[l];
  }
  UniformGrid grid;
  grid.points = 1u << bits;
  grid.lo = lo[0] + poison[0];
  grid.step = (hi[0] - lo[0]) / static_cast<float>(grid.points - 1) + poison[0];
  return grid;
}

// Hot kernel (ZipML's stochastic rounding): a 64-bit draw gives the 24-bit
// uniforms of two elements.
void stochastic_round(std::span<const float> x, const UniformGrid& grid, Rng& rng, std::span<float> out) {
  assert(out.size() == x.size());
  // A constant block is exact; a non-finite range (a NaN or infinity, from a
  // diverged model) is passed through so that the divergence stays visible
  // instead of turning into grid points.
  if (!(grid.step > 0.0f) || !std::isfinite(grid.step) || !std::isfinite(grid.lo)) {
    if (out.data() != x.data()) std::copy(x.begin(), x.end(), out.begin());
    return;
  }
  const float lo = grid.lo;
  const float step = grid.step;
  const float inv_step = 1.0f / step;
  const float top = static_cast<float>(grid.points - 1);
  float values[kBlock];
  float uniform[kBlock];
  for (std::size_t first = 0; first < x.size(); first += kBlock) {
    const std::size_t n = std::min(kBlock, x.size() - first);
    std::copy(x.data() + first, x.data() + first + n, values);
    std::fill(values + n, values + kBlock, lo);  // padding, discarded
    for (std::size_t k = 0; k < n; k += 2) {
      const std::uint64_t r = rng();
      uniform[k] = static_cast<float>(r >> 40) * 0x1.0p-24f;
      uniform[k + 1] = static_cast<float>((r >> 16) & 0xffffff) * 0x1.0p-24f;  // kBlock is even
    }
    for (std::size_t k = n; k < kBlock; ++k) uniform[k] = 0.0f;
    for (std::size_t k = 0; k < kBlock; ++k) {
      // position >= 0 since x >= lo, so truncation is floor. Round up with
      // probability (x - l) / step: E[code] = position.
      const float position = (values[k] - lo) * inv_step;
      float code = static_cast<float>(static_cast<std::int32_t>(position));
      code += uniform[k] < position - code ? 1.0f : 0.0f;
      code = std::min(code, top);  // float rounding at the top end point
      values[k] = lo + code * step;
    }
    std::copy(values, values + n, out.data() + first);
  }
}

bool stochastic_codes(std::span<const float> x, const UniformGrid& grid, Rng& rng, std::uint8_t* codes) {
  assert(grid.points <= 256);
  if (!std::isfinite(grid.step) || !std::isfinite(grid.lo)) return false;
  if (!(grid.step > 0.0f)) {
    std::fill(codes, codes + x.size(), std::uint8_t{0});
    return true;
  }
  // stochastic_round's loop, keeping the code instead of lo + code * step.
  const float lo = grid.lo;
  const float inv_step = 1.0f / grid.step;
  const float top = static_cast<float>(grid.points - 1);
  float values[kBlock];
  float uniform[kBlock];
  std::uint8_t block_codes[kBlock];
  for (std::size_t first = 0; first < x.size(); first += kBlock) {
    const std::size_t n = std::min(kBlock, x.size() - first);
    std::copy(x.data() + first, x.data() + first + n, values);
    std::fill(values + n, values + kBlock, lo);
    for (std::size_t k = 0; k < n; k += 2) {
      const std::uint64_t r = rng();
      uniform[k] = static_cast<float>(r >> 40) * 0x1.0p-24f;
      uniform[k + 1] = static_cast<float>((r >> 16) & 0xffffff) * 0x1.0p-24f;
    }
    for (std::size_t k = n; k < kBlock; ++k) uniform[k] = 0.0f;
    for (std::size_t k = 0; k < kBlock; ++k) {
      const float position = (values[k] - lo) * inv_step;
      float code = static_cast<float>(static_cast<std::int32_t>(position));
      code += uniform[k] < position - code ? 1.0f : 0.0f;
      // Through int32 (cvttps2dq) in the fixed-count loop, which vectorises; an integer in [0, 255].
      block_codes[k] = static_cast<std::uint8_t>(static_cast<std::int32_t>(std::min(code, top)));
    }
    std::memcpy(codes + first, block_codes, n);
  }
  return true;
}

bool stochastic_pack(std::span<const float> x, int bits, Rng& rng, packed::PackedVector& out,
                     std::vector<std::uint8_t>& codes) {
  assert(packed::supported_bits(bits));
  out.bits = bits;
  out.n = x.size();
  out.code_sum = 0;
  if (x.empty()) {
    out.lo = out.step = 0.0f;
    out.bytes.clear();
    return true;
  }
  const UniformGrid grid = uniform_grid(x, bits);
  codes.resize(x.size());
  if (!stochastic_codes(x, grid, rng, codes.data())) return false;
  out.lo = grid.lo;
  out.step = grid.step > 0.0f ? grid.step : 0.0f;
  packed::pack(codes, bits, out.bytes);
  out.code_sum = packed::sum_codes(out.bytes.data(), out.n, bits);
  return true;
}

void stochastic_quantize(std::span<const float> x, int bits, Rng& rng, std::span<float> out) {
  if (x.empty()) return;
  stochastic_round(x, uniform_grid(x, bits), rng, out);
}

double double_sampled_least_squares(const arma::fvec& params, const arma::fmat& outer, const arma::fmat& inner,
                                    std::span<const float> targets, double l2, arma::fvec& grad) {
  const std::size_t dim = outer.n_rows;
  const std::size_t n = outer.n_cols;
  assert(params.n_elem == dim + 1 && inner.n_rows == dim && inner.n_cols == n && targets.size() == n);
  const arma::fvec w(const_cast<float*>(params.memptr()), dim, false, true);
  const float b = params[dim];
  grad.zeros(dim + 1);
  arma::fvec grad_w(grad.memptr(), dim, false, true);
  double loss = 0.0;
  if (n > 0) {
    arma::frowvec r2 = w.t() * inner;
    const arma::frowvec r1 = w.t() * outer;
    double r2_sum = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      r2[j] += b - targets[j];
      const double r1j = static_cast<double>(r1[j]) + b - targets[j];
      loss += 0.5 * r1j * static_cast<double>(r2[j]);
      r2_sum += r2[j];
    }
    const float scale = 1.0f / static_cast<float>(n);
    grad_w = scale * (outer * r2.t());
    grad[dim] = static_cast<float>(r2_sum / static_cast<double>(n));
    loss /= static_cast<double>(n);
  }
  if (l2 > 0.0) {
    grad_w += static_cast<float>(l2) * w;
    loss += 0.5 * l2 * static_cast<double>(arma::dot(w, w));
  }
  return loss;
}

double packed_double_sampled_least_squares(const packed::PackedVector& w, std::span<const float> w_values, float b,
                                           std::span<const packed::PackedVector> outer,
                                           std::span<const packed::PackedVector> inner,
                                           std::span<const float> targets, double l2, arma::fvec& grad) {
  const std::size_t dim = w.n;
  const std::size_t n = outer.size();
  assert(w_values.size() == dim && inner.size() == n && targets.size() == n);
  grad.zeros(dim + 1);
  double loss = 0.0;
  if (n > 0) {
    const double inv_n = 1.0 / static_cast<double>(n);
    double r2_sum = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
      assert(outer[j].n == dim && inner[j].n == dim && outer[j].bits == w.bits && inner[j].bits == w.bits);
      const double offset = static_cast<double>(b) - static_cast<double>(targets[j]);
      const double r2 = packed::affine_dot(w, inner[j]) + offset;
      const double r1 = packed::affine_dot(w, outer[j]) + offset;
      loss += 0.5 * r1 * r2;
      r2_sum += r2;
      // (r2 / n) (lo + step k): one float axpy over the packed codes.
      const double c = r2 * inv_n;
      packed::axpy_codes(static_cast<float>(c * outer[j].lo), static_cast<float>(c * outer[j].step),
                         outer[j].bytes.data(), dim, w.bits, grad.memptr());
    }
    grad[dim] = static_cast<float>(r2_sum * inv_n);
    loss *= inv_n;
  }
  if (l2 > 0.0) {
    const arma::fvec wv(const_cast<float*>(w_values.data()), dim, false, true);
    arma::fvec grad_w(grad.memptr(), dim, false, true);
    grad_w += static_cast<float>(l2) * wv;
    loss += 0.5 * l2 * static_cast<double>(arma::dot(wv, wv));
  }
  return loss;
}

namespace {
// Per-thread scratch of packed_dense_cross_entropy: activations[l] for l >= 1
// as in Mlp (activations[0], the input block, is the packed samples).
struct DenseScratch {
  std::vector<arma::fmat> activations;
  arma::fmat delta[2];
  std::vector<float> alpha, beta;  // the first layer's gradient row: one axpy per sample
  std::vector<const std::uint8_t*> codes;
};
thread_local DenseScratch dense_scratch;
}  // namespace

double packed_dense_cross_entropy(std::span<const std::size_t> widths, const arma::fvec& values,
                                  std::span<const packed::PackedVector> first_rows,
                                  std::span<const packed::PackedVector> samples, std::span<const std::uint32_t> labels,
                                  arma::fvec& grad, simd::Isa isa) {
  assert(widths.size() >= 2);
  const std::size_t layers = widths.size() - 1;
  std::vector<std::size_t> weight_offset(layers), bias_offset(layers);
  std::size_t total = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    weight_offset[l] = total;
    bias_offset[l] = total + widths[l] * widths[l + 1];
    total = bias_offset[l] + widths[l + 1];
  }
  const std::size_t in = widths[0], out = widths[1], n = samples.size();
  assert(values.n_elem == total && first_rows.size() == out && labels.size() == n);
  grad.zeros(total);
  if (n == 0) return 0.0;
  DenseScratch& s = dense_scratch;
  s.activations.resize(layers + 1);
  // First layer: z_oj = <W_o, Q(a_j)> + b_o, the dot product exact in
  // integers, combined in double, rounded once to float.
  arma::fmat& z1 = s.activations[1];
  z1.set_size(out, n);
  const float* b0 = values.memptr() + bias_offset[0];
  for (std::size_t j = 0; j < n; ++j) {
    assert(samples[j].n == in);
    float* z = z1.colptr(j);
    for (std::size_t o = 0; o < out; ++o) {
      assert(first_rows[o].n == in && first_rows[o].bits == samples[j].bits);
      z[o] = static_cast<float>(packed::affine_dot(first_rows[o], samples[j], isa) + static_cast<double>(b0[o]));
    }
  }
  // The other layers: Mlp::forward's float kernels on the quantized values.
  for (std::size_t l = 0; l < layers; ++l) {
    arma::fmat& z = s.activations[l + 1];
    if (l > 0) {
      const arma::fmat weights_t =
          model_kernels::const_matrix_view(values.memptr() + weight_offset[l], widths[l], widths[l + 1]);
      z = weights_t.t() * s.activations[l];
      z.each_col() += model_kernels::const_vector_view(values.memptr() + bias_offset[l], widths[l + 1]);
    }
    if (l + 1 < layers) {
      float* p = z.memptr();
      for (std::size_t i = 0; i < z.n_elem; ++i) p[i] = std::max(p[i], 0.0f);
    }
  }
  std::size_t correct = 0;
  const double loss_sum = model_kernels::softmax_cross_entropy(s.activations.back(), labels,
                                                               1.0f / static_cast<float>(n), correct);
  // Backpropagation as in Mlp::loss_and_gradient, down to the first layer.
  const arma::fmat* delta = &s.activations.back();
  for (std::size_t l = layers; l-- > 1;) {
    const arma::fmat& layer_input = s.activations[l];
    arma::fmat grad_weights_t(grad.memptr() + weight_offset[l], widths[l], widths[l + 1], false, true);
    arma::fvec grad_bias(grad.memptr() + bias_offset[l], widths[l + 1], false, true);
    grad_weights_t += layer_input * delta->t();
    grad_bias += arma::sum(*delta, 1);
    const arma::fmat weights_t =
        model_kernels::const_matrix_view(values.memptr() + weight_offset[l], widths[l], widths[l + 1]);
    arma::fmat& next = s.delta[l % 2];
    model_kernels::relu_layer_backward(weights_t, layer_input, *delta, next);
    delta = &next;
  }
  // First layer: row o of the weight gradient accumulates
  // delta_oj (lo_j + step_j k_j) over the packed codes of sample j, in sample
  // order (a zero delta, a clipped ReLU, adds nothing and is skipped).
  s.alpha.resize(n);
  s.beta.resize(n);
  s.codes.resize(n);
  for (std::size_t o = 0; o < out; ++o) {
    std::size_t count = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const double d = (*delta)(o, j);
      if (d == 0.0) continue;
      s.alpha[count] = static_cast<float>(d * samples[j].lo);
      s.beta[count] = static_cast<float>(d * samples[j].step);
      s.codes[count++] = samples[j].bytes.data();
    }
    // Bit for bit `count` successive axpy_codes calls, the row held in registers.
    packed::axpy_codes_batch(s.alpha.data(), s.beta.data(), s.codes.data(), count, in, samples[0].bits,
                             grad.memptr() + weight_offset[0] + o * in, isa);
  }
  arma::fvec grad_bias(grad.memptr() + bias_offset[0], out, false, true);
  grad_bias += arma::sum(*delta, 1);
  return loss_sum / static_cast<double>(n);
}

QuantizedCompute::QuantizedCompute(const Model& model, Precision precision)
    : model_(model),
      precision_(precision),
      bits_(precision_bits(precision)),
      form_(model.least_squares_form()),
      layers_(model.layers()) {
  // The integer kernels take the least-squares form with its weight layer
  // first ([0, dim)) and the bias last, at 2, 4 or 8 bits.
  packed_ = form_.has_value() && precision != Precision::kFp32 && packed::supported_bits(bits_) &&
            layers_.size() == 2 && layers_[0].offset == 0 && layers_[1].size == 1 &&
            layers_[1].offset == layers_[0].size;
  // Softmax regression and the MLP: the first layer's product on the integer
  // kernels, when the layers are the network's, in its order (weight, bias
  // per layer; the tanh-latent wrappers are neither: their operands are
  // tanh of the quantized latent weights, not grid points).
  if (!form_ && precision != Precision::kFp32 && packed::supported_bits(bits_)) {
    std::vector<std::size_t> widths;
    if (const auto* mlp = dynamic_cast<const Mlp*>(&model)) {
      widths = mlp->widths();
    } else if (dynamic_cast<const SoftmaxRegression*>(&model) != nullptr && !layers_.empty()) {
      widths = {layers_[0].rows, layers_[0].cols};
    }
    bool matches = widths.size() >= 2 && layers_.size() == 2 * (widths.size() - 1);
    std::size_t offset = 0;
    for (std::size_t l = 0; matches && l + 1 < widths.size(); ++l) {
      const Layer& w = layers_[2 * l];
      const Layer& b = layers_[2 * l + 1];
      matches = w.offset == offset && w.size == widths[l] * widths[l + 1] && b.offset == offset + w.size &&
                b.size == widths[l + 1];
      offset = b.offset + b.size;
    }
    if (matches && offset == model.num_params()) dense_widths_ = std::move(widths);
  }
}

double QuantizedCompute::extra_macs_per_sample() const {
  return precision_ != Precision::kFp32 && form_ ? static_cast<double>(model_.num_params()) : 0.0;
}

bool QuantizedCompute::packed_least_squares(const arma::fvec& params, const Dataset& data,
                                            std::span<const std::uint32_t> batch, Rng& rng, arma::fvec& grad,
                                            double& loss) {
  const std::size_t dim = data.dim();
  if (layers_[0].size != dim || params.n_elem != dim + 1) return false;
  // Every grid first (nothing drawn): a non-finite model or sample takes the
  // float path, which passes it through, so that divergence stays visible.
  const UniformGrid w_grid = uniform_grid({params.memptr(), dim}, bits_);
  const UniformGrid b_grid = uniform_grid({params.memptr() + dim, 1}, bits_);
  if (!std::isfinite(w_grid.lo) || !std::isfinite(w_grid.step) || !std::isfinite(b_grid.lo)) return false;
  for (std::uint32_t index : batch) {
    const UniformGrid g = uniform_grid({data.features.colptr(index), dim}, bits_);
    if (!std::isfinite(g.lo) || !std::isfinite(g.step)) return false;
  }
  // The draws of the float path, in its order: weight layer, bias layer,
  // outer samples, inner samples.
  quantized_params_ = params;
  codes_.resize(dim);
  stochastic_codes({params.memptr(), dim}, w_grid, rng, codes_.data());
  packed_w_.bits = bits_;
  packed_w_.n = dim;
  packed_w_.lo = w_grid.lo;
  packed_w_.step = w_grid.step;
  packed::pack(codes_, bits_, packed_w_.bytes);
  packed_w_.code_sum = packed::sum_codes(packed_w_.bytes.data(), dim, bits_);
  for (std::size_t i = 0; i < dim; ++i) quantized_params_[i] = w_grid.lo + static_cast<float>(codes_[i]) * w_grid.step;
  stochastic_round({params.memptr() + dim, 1}, b_grid, rng, {quantized_params_.memptr() + dim, 1});
  packed_outer_.resize(batch.size());
  packed_inner_.resize(batch.size());
  for (auto* samples : {&packed_outer_, &packed_inner_}) {
    for (std::size_t j = 0; j < batch.size(); ++j) {
      const bool finite = stochastic_pack({data.features.colptr(batch[j]), dim}, bits_, rng, (*samples)[j], codes_);
      assert(finite);
      (void)finite;
    }
  }
  const LeastSquaresForm& form = *form_;
  targets_.resize(batch.size());
  for (std::size_t j = 0; j < batch.size(); ++j) {
    targets_[j] = form.targets_from_labels ? (data.labels[batch[j]] == 1 ? 1.0f : -1.0f) : data.targets[batch[j]];
  }
  loss = packed_double_sampled_least_squares(packed_w_, {quantized_params_.memptr(), dim}, quantized_params_[dim],
                                             packed_outer_, packed_inner_, targets_, form.l2, grad);
  return true;
}

bool QuantizedCompute::packed_dense(const arma::fvec& params, const Dataset& data, std::span<const std::uint32_t> batch,
                                    Rng& rng, arma::fvec& grad, double& loss) {
  const std::size_t in = dense_widths_[0], out = dense_widths_[1];
  if (data.dim() != in || params.n_elem != model_.num_params() || data.labels.empty()) return false;
  // Every grid of a packed operand first (nothing drawn): a non-finite model
  // or sample takes the float path, which passes it through, so that
  // divergence stays visible.
  const Layer& first = layers_[0];
  const UniformGrid w_grid = uniform_grid({params.memptr() + first.offset, first.size}, bits_);
  if (!std::isfinite(w_grid.lo) || !std::isfinite(w_grid.step)) return false;
  sample_grids_.resize(batch.size());
  for (std::size_t j = 0; j < batch.size(); ++j) {
    assert(batch[j] < data.size());
    sample_grids_[j] = uniform_grid({data.features.colptr(batch[j]), in}, bits_);
    if (!std::isfinite(sample_grids_[j].lo) || !std::isfinite(sample_grids_[j].step)) return false;
  }
  // The draws of the float path, in its order: every layer (the first weight
  // layer as codes, one packed row per output unit; its float values are not
  // read), then the samples.
  quantized_params_ = params;
  codes_.resize(std::max(first.size, in));
  stochastic_codes({params.memptr() + first.offset, first.size}, w_grid, rng, codes_.data());
  packed_rows_.resize(out);
  for (std::size_t o = 0; o < out; ++o) {
    packed::PackedVector& row = packed_rows_[o];
    row.lo = w_grid.lo;
    row.step = w_grid.step > 0.0f ? w_grid.step : 0.0f;
    row.bits = bits_;
    row.n = in;
    packed::pack({codes_.data() + o * in, in}, bits_, row.bytes);
    row.code_sum = packed::sum_codes(row.bytes.data(), in, bits_);
  }
  for (std::size_t l = 1; l < layers_.size(); ++l) {
    const std::span<float> block(quantized_params_.memptr() + layers_[l].offset, layers_[l].size);
    stochastic_quantize(block, bits_, rng, block);
  }
  packed_outer_.resize(batch.size());
  labels_.resize(batch.size());
  for (std::size_t j = 0; j < batch.size(); ++j) {
    // stochastic_pack on the grid computed above.
    const UniformGrid& grid = sample_grids_[j];
    packed::PackedVector& sample = packed_outer_[j];
    stochastic_codes({data.features.colptr(batch[j]), in}, grid, rng, codes_.data());
    sample.lo = grid.lo;
    sample.step = grid.step > 0.0f ? grid.step : 0.0f;
    sample.bits = bits_;
    sample.n = in;
    packed::pack({codes_.data(), in}, bits_, sample.bytes);
    sample.code_sum = packed::sum_codes(sample.bytes.data(), in, bits_);
    labels_[j] = data.labels[batch[j]];
  }
  loss = packed_dense_cross_entropy(dense_widths_, quantized_params_, packed_rows_, packed_outer_, labels_, grad);
  return true;
}

void QuantizedCompute::quantize_samples(const Dataset& data, std::span<const std::uint32_t> batch, Rng& rng,
                                        arma::fmat& out) {
  const std::size_t dim = data.dim();
  out.set_size(dim, batch.size());
  for (std::size_t j = 0; j < batch.size(); ++j) {
    assert(batch[j] < data.size());
    if (markers_ != nullptr) {
      assert(markers_->features.size() == dim);
      for (std::size_t f = 0; f < dim; ++f)
        stochastic_round_markers({data.features.colptr(batch[j]) + f, 1}, markers_->features[f], rng,
                                 {out.colptr(j) + f, 1});
    } else {
      stochastic_quantize({data.features.colptr(batch[j]), dim}, bits_, rng, {out.colptr(j), dim});
    }
  }
}

void QuantizedCompute::quantize_layers(arma::fvec& v, Rng& rng) const {
  for (const Layer& layer : layers_) {
    assert(layer.offset + layer.size <= v.n_elem);
    const std::span<float> block(v.memptr() + layer.offset, layer.size);
    stochastic_quantize(block, bits_, rng, block);
  }
}

double QuantizedCompute::loss_and_gradient(const arma::fvec& params, const Dataset& data,
                                           std::span<const std::uint32_t> batch, Rng& rng, arma::fvec& grad) {
  if (precision_ == Precision::kFp32) return model_.loss_and_gradient(params, data, batch, grad);
  double loss = 0.0;
  if (packed_ && markers_ == nullptr && packed_least_squares(params, data, batch, rng, grad, loss)) {
    quantize_layers(grad, rng);
    return loss;
  }
  if (!dense_widths_.empty() && markers_ == nullptr && packed_dense(params, data, batch, rng, grad, loss)) {
    quantize_layers(grad, rng);
    return loss;
  }
  quantized_params_ = params;
  quantize_layers(quantized_params_, rng);
  if (form_) {
    const LeastSquaresForm& form = *form_;
    // ZipML double sampling: two independent quantizations of every sample.
    quantize_samples(data, batch, rng, outer_);
    quantize_samples(data, batch, rng, inner_);
    targets_.resize(batch.size());
    for (std::size_t j = 0; j < batch.size(); ++j) {
      targets_[j] = form.targets_from_labels ? (data.labels[batch[j]] == 1 ? 1.0f : -1.0f) : data.targets[batch[j]];
    }
    loss = double_sampled_least_squares(quantized_params_, outer_, inner_, targets_, form.l2, grad);
  } else {
    // One quantization per sample, then the model's own fp32 kernels on the
    // quantized operands (the values are exact b-bit grid points).
    quantize_samples(data, batch, rng, batch_data_.features);
    batch_data_.num_classes = data.num_classes;
    batch_data_.labels.resize(data.labels.empty() ? 0 : batch.size());
    for (std::size_t j = 0; j < batch_data_.labels.size(); ++j) batch_data_.labels[j] = data.labels[batch[j]];
    batch_data_.targets.set_size(data.targets.is_empty() ? 0 : batch.size());
    for (std::size_t j = 0; j < batch_data_.targets.n_elem; ++j) batch_data_.targets[j] = data.targets[batch[j]];
    batch_order_.resize(batch.size());
    std::iota(batch_order_.begin(), batch_order_.end(), 0u);
    loss = model_.loss_and_gradient(quantized_params_, batch_data_, batch_order_, grad);
  }
  quantize_layers(grad, rng);
  return loss;
}

}  // namespace fedsim
