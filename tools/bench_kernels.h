// `fedsim bench kernels`: the packed low-precision kernels
// (clients/packed_kernels.h) against fp32 on the same data in the same run:
// least-squares SGD on every SIMD path this CPU has (the measurements
// `fedsim calibrate` turns into a device profile), and softmax regression's
// and the MLP's gradient steps as a client of each precision computes them
// (clients/quantized_compute.h), on the path a client runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <vector>

#include "clients/device_profile.h"
#include "clients/packed_kernels.h"
#include "core/base/simd.h"
#include "core/data/dataset.h"
#include "core/models/model.h"

namespace fedsim {

struct KernelBenchSettings {
  std::size_t samples = 10000;  // Fashion-MNIST training samples (784 features)
  double seconds = 3.0;         // per precision and path (best of 3 thirds, each after a warm-up epoch);
                                // a third of it per precision and model for the softmax regression and MLP rows
};

// The samples of the benchmark: fp32 features (dim x n, column-major) and
// targets, the class labels, and at each of 8, 4 and 2 bits two independent stochastic
// quantizations of every sample, packed (ZipML stores both samples of double
// sampling), made once, outside the timing.
struct KernelBenchData {
  std::size_t dim = 0, n = 0;
  std::vector<float> features;
  std::vector<float> targets;
  std::vector<std::uint32_t> labels;                    // 10 classes
  std::vector<packed::PackedVector> outer[3], inner[3];  // index: 8, 4, 2 bits
  bool fashion_mnist = false;                           // else uniform [0, 1] samples
};

// Fashion-MNIST's first `samples` training images (pixels in [0, 1], label /
// 9 as the target) when the Debian package is installed, else as many uniform
// [0, 1] samples of 784 features with uniform labels; seeded.
KernelBenchData make_kernel_bench_data(std::size_t samples);

// The fp32 samples and labels as the classification Dataset a client trains on (a copy).
Dataset kernel_bench_dataset(const KernelBenchData& data);

struct EpochMeasurement {
  double bytes_per_epoch = 0.0;   // sample bytes the epoch reads (features or packed codes, grids, targets),
                                  // and the model's at every step in the model rows
  double samples_per_s = 0.0;
  double macs_per_sample = 0.0;   // as the device model bills them (least squares: 2 (d + 1) fp32, 3 (d + 1) below)
  double seconds = 0.0;           // measured wall time
  double epochs = 0.0;
};

// Epochs of least-squares minibatch SGD (batch 32) over the data, for at
// least `seconds`: at fp32, r = w.x + b - t and g += r x with the fp32
// kernels; below, ZipML double sampling on the packed samples with the model
// stochastically quantized per minibatch: r1, r2 = affine_dot(w, Q1 / Q2),
// g += (r2 / B) Q1 with axpy_codes, as clients/quantized_compute.cc computes.
EpochMeasurement measure_epochs(const KernelBenchData& data, Precision precision, simd::Isa isa, double seconds);

// Minibatch gradient steps (batch 32, the samples in order, cycling) of a
// classifier over `data`, each as a client of `precision` computes it
// (QuantizedCompute::loss_and_gradient, then an SGD step on the fp32 master
// copy), for at least `seconds` after a warm-up step. At fp32 that is the
// model's own float kernels; below, for softmax regression and the MLP, the
// samples and the model are stochastically quantized each step and the first
// layer runs on the packed kernels (packed_dense_cross_entropy) on
// simd::best_isa(). bytes_per_epoch counts the operands the gradient kernels
// read (fp32 samples and model, or the packed samples with their grids, the
// packed first layer and the rest of the model in float), not the fp32 samples
// the quantization reads first; samples_per_s includes that quantization.
// macs_per_sample is model.macs_per_sample().
EpochMeasurement measure_model_epochs(const Model& model, const Dataset& data, Precision precision, double seconds);

int run_kernel_bench(std::ostream& out, const KernelBenchSettings& settings);

}  // namespace fedsim
