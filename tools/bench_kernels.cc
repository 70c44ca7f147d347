#include "tools/bench_kernels.h"

#include <array>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <string>

#include "clients/quantized_compute.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "core/data/fashion_mnist.h"

namespace fedsim {

namespace {

constexpr std::size_t kBatch = 32;
constexpr float kLearningRate = 1e-4f;

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
    data.fashion_mnist = true;
  } catch (const InputError&) {
    Rng rng(7);
    data.n = samples;
    data.features.resize(data.dim * data.n);
    for (float& x : data.features) x = rng.uniform_float();
    data.targets.resize(data.n);
    for (float& t : data.targets) t = rng.uniform_float();
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
  volatile double sink = epoch(data, precision, isa, w, b, grad, rng, pw, scratch);  // warm-up
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  double elapsed = 0.0;
  do {
    sink = sink + epoch(data, precision, isa, w, b, grad, rng, pw, scratch);
    m.epochs += 1.0;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  m.seconds = elapsed;
  m.samples_per_s = m.epochs * n / elapsed;
  return m;
}

int run_kernel_bench(std::ostream& out, const KernelBenchSettings& settings) {
  const KernelBenchData data = make_kernel_bench_data(settings.samples);
  out << "fedsim bench kernels: least-squares minibatch SGD epochs (batch " << kBatch << ") over " << data.n
      << " samples x " << data.dim << " features ("
      << (data.fashion_mnist ? "Fashion-MNIST" : "uniform [0, 1]: Fashion-MNIST not installed")
      << "); below fp32 ZipML double sampling on packed samples; best of 3 runs of " << settings.seconds / 3
      << " s per row, interleaved; CPU: " << simd::isa_name(simd::cpu_isa()) << "\n";
  out << std::left << std::setw(10) << "path" << std::setw(11) << "precision" << std::right << std::setw(14)
      << "MB / epoch" << std::setw(10) << "vs fp32" << std::setw(14) << "samples/s" << std::setw(10) << "vs fp32"
      << std::setw(14) << "GMAC/s" << "\n";
  for (simd::Isa isa : {simd::Isa::kBaseline, simd::Isa::kAvx2, simd::Isa::kAvx512}) {
    if (isa > simd::cpu_isa()) continue;
    // Best of kRepeats runs of seconds / kRepeats each, the precisions
    // interleaved, so that a shared machine's load spreads over all rows.
    constexpr int kRepeats = 3;
    std::array<EpochMeasurement, kNumPrecisions> best{};
    for (int r = 0; r < kRepeats; ++r) {
      for (Precision p : kAllPrecisions) {
        const EpochMeasurement m = measure_epochs(data, p, isa, settings.seconds / kRepeats);
        auto& b = best[static_cast<std::size_t>(p)];
        if (m.samples_per_s > b.samples_per_s) b = m;
      }
    }
    const EpochMeasurement fp32 = best[0];
    for (Precision p : kAllPrecisions) {
      const EpochMeasurement& m = best[static_cast<std::size_t>(p)];
      out << std::left << std::setw(10) << simd::isa_name(isa) << std::setw(11) << precision_name(p) << std::right
          << std::fixed << std::setprecision(2) << std::setw(14) << m.bytes_per_epoch / 1e6 << std::setw(9)
          << fp32.bytes_per_epoch / m.bytes_per_epoch << "x" << std::setprecision(0) << std::setw(14)
          << m.samples_per_s << std::setprecision(2) << std::setw(9) << m.samples_per_s / fp32.samples_per_s << "x"
          << std::setw(14) << m.samples_per_s * m.macs_per_sample / 1e9 << "\n";
    }
  }
  out << "MB / epoch: bytes of the samples read per epoch (fp32 features, or two packed quantizations with their "
         "grids); GMAC/s: multiply-adds as the device model bills them (2 (d + 1) per sample at fp32, 3 (d + 1) "
         "with double sampling) per second.\n";
  return 0;
}

}  // namespace fedsim
