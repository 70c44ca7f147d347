#include "tools/bench_kernels.h"

#include <array>
#include <cassert>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <numeric>
#include <string>

#include "clients/quantized_compute.h"
#include "core/base/blas_threads.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "core/data/fashion_mnist.h"

namespace fedsim {

namespace {

constexpr std::size_t kBatch = 32;
constexpr float kLearningRate = 1e-4f;
constexpr float kModelLearningRate = 0.01f;  // softmax regression and the MLP: small enough not to diverge
constexpr std::uint32_t kClasses = 10;
constexpr int kRepeats = 3;

using Clock = std::chrono::steady_clock;
using PrecisionRows = std::array<EpochMeasurement, kNumPrecisions>;

// Calls run() (which returns the samples it processed) once to warm up, then
// until `seconds` have passed; fills samples_per_s, seconds and epochs.
template <typename Run>
void time_runs(double seconds, double samples_per_epoch, Run run, EpochMeasurement& m) {
  run();  // warm-up (first-call allocations, caches)
  const auto start = Clock::now();
  double samples = 0.0, elapsed = 0.0;
  do {
    samples += run();
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  m.seconds = elapsed;
  m.epochs = samples / samples_per_epoch;
  m.samples_per_s = samples / elapsed;
}

// Best of kRepeats runs of seconds / kRepeats each, the precisions
// interleaved, so that a shared machine's load spreads over all rows.
template <typename Measure>
PrecisionRows best_interleaved(double seconds, Measure measure) {
  PrecisionRows best{};
  for (int r = 0; r < kRepeats; ++r) {
    for (Precision p : kAllPrecisions) {
      const EpochMeasurement m = measure(p, seconds / kRepeats);
      auto& b = best[static_cast<std::size_t>(p)];
      if (m.samples_per_s > b.samples_per_s) b = m;
    }
  }
  return best;
}

void print_header(std::ostream& out, const std::string& first, int width) {
  out << std::left << std::setw(width) << first << std::setw(11) << "precision" << std::right << std::setw(14)
      << "MB / epoch" << std::setw(10) << "vs fp32" << std::setw(14) << "samples/s" << std::setw(10) << "vs fp32"
      << std::setw(14) << "GMAC/s" << "\n";
}

// One row per precision, the ratios to the fp32 row of the same run.
void print_rows(std::ostream& out, const std::string& label, int width, const PrecisionRows& best) {
  const EpochMeasurement& fp32 = best[0];
  for (Precision p : kAllPrecisions) {
    const EpochMeasurement& m = best[static_cast<std::size_t>(p)];
    out << std::left << std::setw(width) << label << std::setw(11) << precision_name(p) << std::right << std::fixed
        << std::setprecision(2) << std::setw(14) << m.bytes_per_epoch / 1e6 << std::setw(9)
        << fp32.bytes_per_epoch / m.bytes_per_epoch << "x" << std::setprecision(0) << std::setw(14) << m.samples_per_s
        << std::setprecision(2) << std::setw(9) << m.samples_per_s / fp32.samples_per_s << "x" << std::setw(14)
        << m.samples_per_s * m.macs_per_sample / 1e9 << "\n";
  }
}

int bits_index(int bits) { return bits == 8 ? 0 : bits == 4 ? 1 : 2; }

// One epoch; returns a value that depends on the result (kept alive).
double epoch(const KernelBenchData& data, Precision precision, simd::Isa isa, std::vector<float>& w, float& b,
             std::vector<float>& grad, Rng& rng, packed::PackedVector& pw, std::vector<std::uint8_t>& scratch) {
  const std::size_t dim = data.dim;
  double loss = 0.0;
  for (std::size_t first = 0; first < data.n; first += kBatch) {
    const std::size_t m = std::min(kBatch, data.n - first);
    std::fill(grad.begin(), grad.end(), 0.0f);
    double grad_b = 0.0;
    if (precision == Precision::kFp32) {
      for (std::size_t j = first; j < first + m; ++j) {
        const float* x = data.features.data() + j * dim;
        const float r = packed::dot_f32(w.data(), x, dim, isa) + b - data.targets[j];
        loss += 0.5 * static_cast<double>(r) * r;
        grad_b += r;
        packed::axpy_f32(r / static_cast<float>(m), x, dim, grad.data(), isa);
      }
    } else {
      const int bits = precision_bits(precision);
      const auto& outer = data.outer[bits_index(bits)];
      const auto& inner = data.inner[bits_index(bits)];
      if (!stochastic_pack(w, bits, rng, pw, scratch)) throw std::runtime_error("bench kernels: the model diverged");
      for (std::size_t j = first; j < first + m; ++j) {
        const double offset = static_cast<double>(b) - data.targets[j];
        const double r2 = packed::affine_dot(pw, inner[j], isa) + offset;
        const double r1 = packed::affine_dot(pw, outer[j], isa) + offset;
        loss += 0.5 * r1 * r2;
        grad_b += r2;
        const double c = r2 / static_cast<double>(m);
        packed::axpy_codes(static_cast<float>(c * outer[j].lo), static_cast<float>(c * outer[j].step),
                           outer[j].bytes.data(), dim, bits, grad.data(), isa);
      }
    }
    packed::axpy_f32(-kLearningRate, grad.data(), dim, w.data(), isa);
    b -= kLearningRate * static_cast<float>(grad_b / static_cast<double>(m));
  }
  return loss;
}

}  // namespace

KernelBenchData make_kernel_bench_data(std::size_t samples) {
  KernelBenchData data;
  data.dim = 784;
  try {
    const DataSplit split = load_fashion_mnist(kFashionMnistDefaultPath, samples, 1);
    data.n = split.train.size();
    data.features.assign(split.train.features.begin(), split.train.features.end());
    data.targets.resize(data.n);
    for (std::size_t j = 0; j < data.n; ++j) data.targets[j] = static_cast<float>(split.train.labels[j]) / 9.0f;
    data.labels = split.train.labels;
    data.fashion_mnist = true;
  } catch (const InputError&) {
    Rng rng(7);
    data.n = samples;
    data.features.resize(data.dim * data.n);
    for (float& x : data.features) x = rng.uniform_float();
    data.targets.resize(data.n);
    for (float& t : data.targets) t = rng.uniform_float();
    data.labels.resize(data.n);
    for (std::uint32_t& y : data.labels) y = static_cast<std::uint32_t>(rng.below(kClasses));
  }
  Rng rng(11);
  std::vector<std::uint8_t> scratch;
  for (int bits : {8, 4, 2}) {
    auto& outer = data.outer[bits_index(bits)];
    auto& inner = data.inner[bits_index(bits)];
    outer.resize(data.n);
    inner.resize(data.n);
    for (std::size_t j = 0; j < data.n; ++j) {
      const std::span<const float> x(data.features.data() + j * data.dim, data.dim);
      stochastic_pack(x, bits, rng, outer[j], scratch);
      stochastic_pack(x, bits, rng, inner[j], scratch);
    }
  }
  return data;
}

Dataset kernel_bench_dataset(const KernelBenchData& data) {
  Dataset d;
  d.name = "bench kernels";
  d.num_classes = kClasses;
  d.features = arma::fmat(data.features.data(), data.dim, data.n);
  d.labels = data.labels;
  return d;
}

EpochMeasurement measure_epochs(const KernelBenchData& data, Precision precision, simd::Isa isa, double seconds) {
  EpochMeasurement m;
  const double d = static_cast<double>(data.dim);
  const double n = static_cast<double>(data.n);
  if (precision == Precision::kFp32) {
    m.bytes_per_epoch = n * (d * sizeof(float) + sizeof(float));
    m.macs_per_sample = 2.0 * (d + 1.0);
  } else {
    const int bits = precision_bits(precision);
    // Two packed samples, each with its grid (lo, step) and code sum, and the target.
    m.bytes_per_epoch = n * (2.0 * (static_cast<double>(packed::packed_bytes(data.dim, bits)) + 2 * sizeof(float) +
                                    sizeof(std::uint64_t)) +
                             sizeof(float));
    m.macs_per_sample = 3.0 * (d + 1.0);
  }
  std::vector<float> w(data.dim, 0.0f), grad(data.dim);
  float b = 0.0f;
  Rng rng(3);
  packed::PackedVector pw;
  std::vector<std::uint8_t> scratch;
  volatile double sink = 0.0;
  time_runs(
      seconds, n,
      [&] {
        sink = sink + epoch(data, precision, isa, w, b, grad, rng, pw, scratch);
        return n;
      },
      m);
  return m;
}

EpochMeasurement measure_model_epochs(const Model& model, const Dataset& data, Precision precision, double seconds) {
  const std::vector<Layer> layers = model.layers();
  assert(data.size() > 0 && !layers.empty() && layers[0].rows == data.dim());
  EpochMeasurement m;
  const double n = static_cast<double>(data.size());
  const double params_bytes = static_cast<double>(model.num_params()) * sizeof(float);
  const double steps = std::ceil(n / static_cast<double>(kBatch));
  m.macs_per_sample = model.macs_per_sample();
  if (precision == Precision::kFp32) {
    m.bytes_per_epoch = n * (static_cast<double>(data.dim()) * sizeof(float) + sizeof(std::uint32_t)) +
                        steps * params_bytes;
  } else {
    // A packed vector: codes, grid (lo, step) and code sum; one per sample and
    // one per output unit of the first layer (its rows), the rest of the model in float.
    const int bits = precision_bits(precision);
    const auto packed_vector = [bits](std::size_t codes) {
      return static_cast<double>(packed::packed_bytes(codes, bits) + 2 * sizeof(float) + sizeof(std::uint64_t));
    };
    const Layer& first = layers[0];
    m.bytes_per_epoch =
        n * (packed_vector(data.dim()) + sizeof(std::uint32_t)) +
        steps * (static_cast<double>(first.cols) * packed_vector(first.rows) +
                 params_bytes - static_cast<double>(first.size) * sizeof(float));
  }
  QuantizedCompute compute(model, precision);
  Rng init_rng(5), rng(3);
  arma::fvec params, grad;
  model.init(params, init_rng);
  std::vector<std::uint32_t> batch;
  std::size_t next = 0;
  volatile double sink = 0.0;
  time_runs(
      seconds, n,
      [&] {
        batch.resize(std::min(kBatch, data.size() - next));
        std::iota(batch.begin(), batch.end(), static_cast<std::uint32_t>(next));
        next = next + batch.size() == data.size() ? 0 : next + batch.size();
        sink = sink + compute.loss_and_gradient(params, data, batch, rng, grad);
        params -= kModelLearningRate * grad;
        return static_cast<double>(batch.size());
      },
      m);
  // A non-finite model would have left the packed path (QuantizedCompute falls back to floats).
  if (!params.is_finite()) throw std::runtime_error("bench kernels: the model diverged");
  return m;
}

int run_kernel_bench(std::ostream& out, const KernelBenchSettings& settings) {
  const KernelBenchData data = make_kernel_bench_data(settings.samples);
  const std::string source =
      data.fashion_mnist ? "Fashion-MNIST" : "uniform [0, 1]: Fashion-MNIST not installed";
  out << "fedsim bench kernels: least-squares minibatch SGD epochs (batch " << kBatch << ") over " << data.n
      << " samples x " << data.dim << " features (" << source
      << "); below fp32 ZipML double sampling on packed samples; best of " << kRepeats << " runs of "
      << settings.seconds / kRepeats << " s per row, interleaved; CPU: " << simd::isa_name(simd::cpu_isa()) << "\n";
  print_header(out, "path", 12);
  for (simd::Isa isa : {simd::Isa::kBaseline, simd::Isa::kAvx2, simd::Isa::kAvx512}) {
    if (isa > simd::cpu_isa()) continue;
    print_rows(out, packed::dot_kernel_name(isa), 12, best_interleaved(settings.seconds, [&](Precision p, double s) {
                 return measure_epochs(data, p, isa, s);
               }));
  }
  out << "MB / epoch: bytes of the samples read per epoch (fp32 features, or two packed quantizations with their "
         "grids); GMAC/s: multiply-adds as the device model bills them (2 (d + 1) per sample at fp32, 3 (d + 1) "
         "with double sampling) per second.\n";

  // Softmax regression and the MLP as a client trains them, on one thread
  // (the simulation's BLAS setting) and the path a client runs.
  use_single_threaded_blas();
  const Dataset dataset = kernel_bench_dataset(data);
  const double model_seconds = settings.seconds / kRepeats;
  out << "\nfedsim bench kernels: softmax regression and MLP minibatch gradient steps (batch " << kBatch
      << ", then SGD) over the same " << data.n << " samples and their " << kClasses << " classes, as a client of "
      << "each precision computes them: fp32 the model's float kernels; below, samples and model stochastically "
         "quantized every step, the first layer on the packed kernels; best of "
      << kRepeats << " runs of " << model_seconds / kRepeats << " s per row, interleaved; path "
      << simd::isa_name(simd::best_isa()) << "\n";
  constexpr int kModelWidth = 18;
  print_header(out, "model", kModelWidth);
  const ModelInput input{data.dim, kClasses};
  for (const char* yaml : {"name: softmax_regression\n", "name: mlp\n"}) {
    const Config config = Config::parse_string(yaml, "bench kernels");
    const std::string name = config.get_string("name");
    const auto model = ModelRegistry::instance().create("bench kernels", name, config, input);
    // "softmax 784-10", "mlp 784-200-10": the widths of the weight layers.
    std::string label = name == "mlp" ? "mlp" : "softmax";
    bool first = true;
    for (const Layer& layer : model->layers()) {
      if (layer.rows == 0) continue;
      if (first) label += " " + std::to_string(layer.rows);
      label += "-" + std::to_string(layer.cols);
      first = false;
    }
    print_rows(out, label, kModelWidth, best_interleaved(model_seconds, [&](Precision p, double s) {
                 return measure_model_epochs(*model, dataset, p, s);
               }));
  }
  out << "MB / epoch: bytes of the operands the gradient kernels read per epoch: fp32 samples and labels and the "
         "fp32 model at every step, or one packed quantization of every sample with its grid and the packed first "
         "layer (one packed row per unit) with the rest of the model in float at every step; samples/s below fp32 "
         "also pays for quantizing the fp32 samples, the model and the gradient every step, as the client does; "
         "GMAC/s: the model's multiply-adds per sample as the device model bills them, per second.\n";
  return 0;
}

}  // namespace fedsim
