#include "core/compression/predictive_coding.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/coding/arithmetic_coder.h"
#include "core/base/errors.h"

namespace fedsim {

namespace {

constexpr int kMinBits = 2;
constexpr int kMaxBits = 12;  // alphabet 2^12 - 1 <= AdaptiveModel::kMaxSize
static_assert((1u << kMaxBits) - 1 <= AdaptiveModel::kMaxSize);

int bits_for(std::size_t count) { return count <= 1 ? 0 : std::bit_width(count - 1); }

std::int32_t levels(int bits) { return (std::int32_t{1} << (bits - 1)) - 1; }

std::uint32_t to_symbol(std::int32_t q) {
  return q > 0 ? static_cast<std::uint32_t>(2 * q - 1) : static_cast<std::uint32_t>(-2 * q);
}
std::int32_t from_symbol(std::uint32_t s) {
  return (s & 1) ? static_cast<std::int32_t>((s + 1) / 2) : -static_cast<std::int32_t>(s / 2);
}

// The one place where a reconstruction is formed, so that both ends compute
// it with the same operations (no contraction into an FMA across them).
float reconstruct(float prediction, std::int32_t q, float step) {
  const float delta = static_cast<float>(q) * step;
  return prediction + delta;
}

}  // namespace

const char* predictor_name(Predictor p) {
  switch (p) {
    case Predictor::kZero: return "zero";
    case Predictor::kLast: return "last";
    case Predictor::kMean: return "mean";
    case Predictor::kLinear: return "linear";
    case Predictor::kLms: return "lms";
  }
  return "?";
}

PredictiveCodingOptions PredictiveCodingOptions::from_config(const Config& cfg) {
  PredictiveCodingOptions o;
  std::string all_names;
  for (Predictor p : kAllPredictors) all_names += (all_names.empty() ? "" : ", ") + std::string(predictor_name(p));

  const bool have_predictors = cfg.has("predictors");
  const std::vector<Config> names = cfg.children("predictors");
  if (have_predictors) {
    if (names.empty()) cfg.fail("predictors", "a non-empty list of predictor names (" + all_names + ")", "an empty list");
    o.predictors.clear();
    for (const Config& item : names) {
      const std::string name = item.as_string();
      auto it = std::find_if(kAllPredictors.begin(), kAllPredictors.end(),
                             [&](Predictor p) { return name == predictor_name(p); });
      if (it == kAllPredictors.end()) item.fail("", "a predictor name (one of: " + all_names + ")", "'" + name + "'");
      if (std::find(o.predictors.begin(), o.predictors.end(), *it) != o.predictors.end())
        item.fail("", "each predictor at most once", "'" + name + "' again");
      o.predictors.push_back(*it);
    }
  }

  if (cfg.has("bits")) {
    const auto list = cfg.get_int_list("bits", kMinBits, kMaxBits);
    if (list.empty()) cfg.fail("bits", "a non-empty list of integers in [2, 12]", "an empty list");
    o.bits.clear();
    for (auto b : list) {
      if (std::find(o.bits.begin(), o.bits.end(), static_cast<int>(b)) != o.bits.end())
        cfg.fail("bits", "distinct values", std::to_string(b) + " twice");
      o.bits.push_back(static_cast<int>(b));
    }
  } else {
    cfg.get_string("bits", "");  // marks the key as read
  }

  o.lambda = cfg.get_double("lambda", 0.1, 0.0, 1e9);
  o.lms_step = cfg.get_double("lms_step", 0.5, 1e-6, 1.999);
  return o;
}

PredictiveCoder::PredictiveCoder(PredictiveCodingOptions options, std::size_t dim, std::vector<Layer> layers)
    : options_(std::move(options)), dim_(dim), layers_(std::move(layers)) {
  if (options_.predictors.empty() || options_.bits.empty())
    throw std::invalid_argument("predictive_coding: needs at least one predictor and one quantizer");
  for (int b : options_.bits)
    if (b < kMinBits || b > kMaxBits) throw std::invalid_argument("predictive_coding: bits outside [2, 12]");
  if (layers_.empty()) layers_.push_back(Layer{"all", 0, dim_});
  // The layers must tile [0, dim).
  std::vector<Layer> sorted = layers_;
  std::sort(sorted.begin(), sorted.end(), [](const Layer& a, const Layer& b) { return a.offset < b.offset; });
  std::size_t covered = 0;
  for (const Layer& l : sorted) {
    if (l.offset != covered || l.size > dim_ - covered)
      throw std::invalid_argument("predictive_coding: layers do not tile [0, " + std::to_string(dim_) + ")");
    covered += l.size;
  }
  if (covered != dim_) throw std::invalid_argument("predictive_coding: layers do not cover the vector");

  predictor_bits_ = bits_for(options_.predictors.size());
  quantizer_bits_ = bits_for(options_.bits.size());
  prev1_.assign(dim_, 0.0f);
  prev2_.assign(dim_, 0.0f);
  mean_.assign(dim_, 0.0f);
  lms_weights_.assign(layers_.size(), {1.0, 0.0});
  choices_.assign(layers_.size(), LayerChoice{});
  scratch_.assign(dim_, 0.0f);
}

void PredictiveCoder::predict(Predictor p, std::size_t layer, std::span<float> out) const {
  const std::size_t off = layers_[layer].offset;
  const std::size_t n = layers_[layer].size;
  switch (p) {
    case Predictor::kZero:
      std::fill(out.begin(), out.end(), 0.0f);
      break;
    case Predictor::kLast:
      std::copy_n(prev1_.begin() + static_cast<std::ptrdiff_t>(off), n, out.begin());
      break;
    case Predictor::kMean:
      std::copy_n(mean_.begin() + static_cast<std::ptrdiff_t>(off), n, out.begin());
      break;
    case Predictor::kLinear:
      if (rounds_ < 2) {
        std::copy_n(prev1_.begin() + static_cast<std::ptrdiff_t>(off), n, out.begin());
      } else {
        for (std::size_t i = 0; i < n; ++i) {
          const float twice = 2.0f * prev1_[off + i];
          out[i] = twice - prev2_[off + i];
        }
      }
      break;
    case Predictor::kLms: {
      const auto [w1, w2] = lms_weights_[layer];
      for (std::size_t i = 0; i < n; ++i) {
        const double a = w1 * prev1_[off + i];
        const double b = w2 * prev2_[off + i];
        out[i] = static_cast<float>(a + b);
      }
      break;
    }
  }
}

void PredictiveCoder::commit(std::span<const float> recon) {
  // Block-normalised LMS (per layer) on the reconstruction just formed, with
  // the inputs its prediction used: w += mu * sum_i e_i u_i / sum_i |u_i|^2.
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::size_t off = layers_[l].offset;
    auto& w = lms_weights_[l];
    double g1 = 0.0, g2 = 0.0, power = 0.0;
    for (std::size_t i = off; i < off + layers_[l].size; ++i) {
      const double a = prev1_[i];
      const double b = prev2_[i];
      const double e = static_cast<double>(recon[i]) - (w[0] * a + w[1] * b);
      g1 += e * a;
      g2 += e * b;
      power += a * a + b * b;
    }
    if (power > 0.0 && std::isfinite(power) && std::isfinite(g1) && std::isfinite(g2)) {
      w[0] += options_.lms_step * g1 / power;
      w[1] += options_.lms_step * g2 / power;
    }
  }
  ++rounds_;
  const float count = static_cast<float>(rounds_);
  for (std::size_t i = 0; i < dim_; ++i) {
    const float diff = recon[i] - mean_[i];
    mean_[i] += diff / count;
  }
  prev2_.swap(prev1_);
  std::copy(recon.begin(), recon.end(), prev1_.begin());
}

void PredictiveCoder::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("predictive_coding: vector of size " + std::to_string(v.size()) + ", coder built for " +
                                std::to_string(dim_));
  ArithmeticEncoder coder(out);
  std::vector<float> best_prediction, candidate, residual;
  std::vector<double> counts;
  const double header_bits = predictor_bits_ + quantizer_bits_ + 32;

  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::size_t off = layers_[l].offset;
    const std::size_t n = layers_[l].size;
    const std::span<const float> x = v.subspan(off, n);
    const std::span<float> recon = reconstructed.subspan(off, n);

    // 1. Predictor with the lowest residual energy (ties: the first listed).
    best_prediction.resize(n);
    candidate.resize(n);
    std::size_t best_id = 0;
    double best_energy = 0.0;
    for (std::size_t id = 0; id < options_.predictors.size(); ++id) {
      predict(options_.predictors[id], l, candidate);
      double energy = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        const double r = static_cast<double>(x[i]) - static_cast<double>(candidate[i]);
        energy += r * r;
      }
      if (id == 0 || energy < best_energy) {
        best_id = id;
        best_energy = energy;
        best_prediction.swap(candidate);
      }
    }

    residual.resize(n);
    float max_abs = 0.0f;
    double update_energy = 0.0, residual_energy = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      residual[i] = x[i] - best_prediction[i];
      max_abs = std::max(max_abs, std::fabs(residual[i]));
      update_energy += static_cast<double>(x[i]) * x[i];
      residual_energy += static_cast<double>(residual[i]) * residual[i];
    }
    if (!std::isfinite(max_abs) || !std::isfinite(update_energy))
      throw std::invalid_argument("predictive_coding: non-finite value in layer '" + layers_[l].name + "'");
    const double norm = update_energy > 0.0 ? update_energy : residual_energy;

    // 2. Quantizer by expected distortion + lambda * rate (closed form in r).
    std::size_t best_q = 0;
    double best_cost = 0.0;
    float best_step = 0.0f;
    bool any_step = false;
    for (std::size_t qid = 0; qid < options_.bits.size(); ++qid) {
      const std::int32_t L = levels(options_.bits[qid]);
      const float step = max_abs / static_cast<float>(L);
      if (!(step > 0.0f)) continue;
      counts.assign(2 * static_cast<std::size_t>(L) + 1, 0.0);
      const double s = step;
      double distortion = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        const double y = std::clamp(static_cast<double>(residual[i]) / s, -double(L), double(L));
        const double lo = std::floor(y);
        const double p = y - lo;
        const auto q = static_cast<std::int32_t>(lo);
        counts[to_symbol(q)] += 1.0 - p;
        if (p > 0.0) counts[to_symbol(q + 1)] += p;
        distortion += p * (1.0 - p);  // stochastic rounding variance, in units of step^2
      }
      distortion *= s * s;
      const double rate = header_bits + AdaptiveModel::ideal_bits(counts);
      const double cost = distortion / norm + options_.lambda * rate / static_cast<double>(n);
      if (!any_step || cost < best_cost) {
        best_q = qid;
        best_cost = cost;
        best_step = step;
        any_step = true;
      }
    }

    // 3-4. Header, then the stochastically rounded residual.
    if (predictor_bits_ > 0) coder.encode_bits(static_cast<std::uint32_t>(best_id), predictor_bits_);
    if (quantizer_bits_ > 0) coder.encode_bits(static_cast<std::uint32_t>(best_q), quantizer_bits_);
    const float step = any_step ? best_step : 0.0f;
    const std::uint32_t step_bits = std::bit_cast<std::uint32_t>(step);
    coder.encode_bits(step_bits >> 16, 16);
    coder.encode_bits(step_bits & 0xFFFFu, 16);
    choices_[l] = LayerChoice{options_.predictors[best_id], options_.bits[best_q], step};

    if (step == 0.0f) {
      std::copy(best_prediction.begin(), best_prediction.end(), recon.begin());
      continue;
    }
    const std::int32_t L = levels(options_.bits[best_q]);
    AdaptiveModel model(2 * static_cast<std::uint32_t>(L) + 1);
    const double s = step;
    for (std::size_t i = 0; i < n; ++i) {
      const double y = std::clamp(static_cast<double>(residual[i]) / s, -double(L), double(L));
      const double lo = std::floor(y);
      auto q = static_cast<std::int32_t>(lo);
      if (static_cast<double>(rng.uniform_float()) < y - lo) ++q;
      coder.encode(to_symbol(q), model);
      recon[i] = reconstruct(best_prediction[i], q, step);
      // decode() rejects what overflows; only inputs near the float limit get here.
      if (!std::isfinite(recon[i]))
        throw std::invalid_argument("predictive_coding: reconstruction in layer '" + layers_[l].name +
                                    "' overflows float");
    }
  }
  coder.finish();
  commit(reconstructed);
}

void PredictiveCoder::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_)
    throw std::invalid_argument("predictive_coding: output of size " + std::to_string(out.size()) +
                                ", coder built for " + std::to_string(dim_));
  ArithmeticDecoder coder(payload);
  std::vector<LayerChoice> choices(layers_.size());
  std::vector<float> prediction;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::size_t off = layers_[l].offset;
    const std::size_t n = layers_[l].size;
    const std::uint32_t pid = predictor_bits_ > 0 ? coder.decode_bits(predictor_bits_) : 0;
    if (pid >= options_.predictors.size())
      throw DecodeError("predictive_coding: predictor id " + std::to_string(pid) + " in layer " + std::to_string(l) +
                        ", only " + std::to_string(options_.predictors.size()) + " configured");
    const std::uint32_t qid = quantizer_bits_ > 0 ? coder.decode_bits(quantizer_bits_) : 0;
    if (qid >= options_.bits.size())
      throw DecodeError("predictive_coding: quantizer id " + std::to_string(qid) + " in layer " + std::to_string(l) +
                        ", only " + std::to_string(options_.bits.size()) + " configured");
    std::uint32_t step_bits = coder.decode_bits(16) << 16;
    step_bits |= coder.decode_bits(16);
    const float step = std::bit_cast<float>(step_bits);
    if (!std::isfinite(step) || std::signbit(step))
      throw DecodeError("predictive_coding: step in layer " + std::to_string(l) + " is not a finite value >= 0");
    choices[l] = LayerChoice{options_.predictors[pid], options_.bits[qid], step};

    prediction.resize(n);
    predict(options_.predictors[pid], l, prediction);
    const std::span<float> recon = std::span<float>(scratch_).subspan(off, n);
    if (step == 0.0f) {
      std::copy(prediction.begin(), prediction.end(), recon.begin());
      continue;
    }
    // Symbol values are bounded by the model's alphabet: |q| <= L by construction.
    AdaptiveModel model(2 * static_cast<std::uint32_t>(levels(options_.bits[qid])) + 1);
    for (std::size_t i = 0; i < n; ++i) recon[i] = reconstruct(prediction[i], from_symbol(coder.decode(model)), step);
    // A well-formed stream can still carry a step so large that q * step overflows.
    if (!std::all_of(recon.begin(), recon.end(), [](float x) { return std::isfinite(x); }))
      throw DecodeError("predictive_coding: layer " + std::to_string(l) + " reconstructs to values beyond float range");
  }
  coder.finish();
  choices_ = std::move(choices);
  std::copy(scratch_.begin(), scratch_.end(), out.begin());
  commit(scratch_);
}

namespace {
FEDSIM_REGISTER_STAGE(
    "predictive_coding", StageKind::kQuantizer,
    [](const Config& cfg, StageContext& ctx) -> std::unique_ptr<Compressor> {
      return std::make_unique<PredictiveCoder>(PredictiveCodingOptions::from_config(cfg), ctx.dim, ctx.layers);
    },
    "predictive coding (Yue et al.): per-layer predictor from the history, RD-chosen unbiased residual "
    "quantizer, adaptive arithmetic coding");
}  // namespace

void PredictiveCoder::save(StateWriter& out) const {
  out.begin("predictive_coding");
  out.vec(prev1_);
  out.vec(prev2_);
  out.vec(mean_);
  for (const auto& w : lms_weights_) out.put(w[0]), out.put(w[1]);
  out.put(rounds_);
  for (const LayerChoice& c : choices_) {
    out.put(static_cast<std::uint8_t>(c.predictor));
    out.put(static_cast<std::int32_t>(c.bits));
    out.put(c.step);
  }
}

void PredictiveCoder::restore(StateReader& in) {
  in.begin("predictive_coding");
  in.into(std::span<float>(prev1_));
  in.into(std::span<float>(prev2_));
  in.into(std::span<float>(mean_));
  for (auto& w : lms_weights_) w[0] = in.get<double>(), w[1] = in.get<double>();
  rounds_ = in.get<std::uint64_t>();
  for (LayerChoice& c : choices_) {
    const std::uint8_t p = in.get<std::uint8_t>();
    if (p > static_cast<std::uint8_t>(Predictor::kLms))
      throw DecodeError("predictive_coding: predictor " + std::to_string(p) + " in the state");
    c.predictor = static_cast<Predictor>(p);
    c.bits = in.get<std::int32_t>();
    c.step = in.get<float>();
  }
}

}  // namespace fedsim
