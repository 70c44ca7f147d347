#include "core/models/torch/cnn.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/relu.h>

#include <cmath>
#include <string>

#include "core/base/errors.h"
#include "core/models/torch/torch_model.h"
#include "core/models/torch/torch_network.h"

namespace fedsim {

namespace {

constexpr std::int64_t kKernel = 5;

class Cnn final : public TorchNetwork {
 public:
  Cnn(const Config& settings, const ModelInput& input);

  void init(arma::fvec& params, Rng& rng) const override;
  at::Tensor logits(const at::Tensor& inputs, const std::vector<at::Tensor>& params) const override;
  double macs_per_sample() const override { return macs_; }

 private:
  void add_parameter(const std::string& name, std::vector<std::int64_t> shape) {
    std::size_t size = 1;
    for (std::int64_t d : shape) size *= static_cast<std::size_t>(d);
    parameters_.push_back(ParameterSpec{name, std::move(shape), size});
  }

  std::int64_t conv2_padding_ = 2;
  std::size_t dense_layers_ = 0;
  double macs_ = 0.0;
};

Cnn::Cnn(const Config& settings, const ModelInput& input) {
  const std::string arch = settings.get_choice("arch", "fedavg", {"fedavg", "lenet5"});
  const bool fedavg = arch == "fedavg";
  std::vector<std::int64_t> channels = fedavg ? std::vector<std::int64_t>{32, 64} : std::vector<std::int64_t>{6, 16};
  std::vector<std::int64_t> hidden = fedavg ? std::vector<std::int64_t>{512} : std::vector<std::int64_t>{120, 84};
  if (settings.has("channels")) {
    channels = settings.get_int_list("channels", 1, 4096);
    if (channels.size() != 2)
      settings.fail("channels", "two filter counts (conv1, conv2)", std::to_string(channels.size()) + " values");
  }
  if (settings.has("hidden")) {
    hidden = settings.get_int_list("hidden", 1, 100000);
    if (hidden.empty()) settings.fail("hidden", "a non-empty list of layer widths", "an empty list");
  }
  const std::int64_t in_channels = settings.get_int("in_channels", 1, 1, 4096);
  if (input.num_classes < 2)
    throw InputError(settings.where() + ": cnn needs a classification data set (>= 2 classes), found " +
                     (input.num_classes == 0 ? std::string("a regression data set") : std::string("1 class")));
  const auto pixels = static_cast<std::int64_t>(input.dim) / in_channels;
  const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(pixels))));
  if (pixels * in_channels != static_cast<std::int64_t>(input.dim) || side * side != pixels)
    throw InputError(settings.where() + ": cnn needs square images: the data's " + std::to_string(input.dim) +
                     " features are not in_channels (" + std::to_string(in_channels) +
                     ") x s x s for any integer s");
  conv2_padding_ = fedavg ? 2 : 0;
  // Feature map sides: conv1 keeps s (padding 2), pool halves, conv2 changes
  // it by 2 * padding - 4, pool halves.
  const std::int64_t side1 = side / 2;
  const std::int64_t side2 = side1 + 2 * conv2_padding_ - (kKernel - 1);
  const std::int64_t side3 = side2 / 2;
  if (side1 < 1 || side3 < 1)
    throw InputError(settings.where() + ": " + arch + " needs larger images: " + std::to_string(side) + "x" +
                     std::to_string(side) + " leaves no feature map after the second pooling");

  sample_shape_ = {in_channels, side, side};
  num_classes_ = input.num_classes;
  add_parameter("conv1.weight", {channels[0], in_channels, kKernel, kKernel});
  add_parameter("conv1.bias", {channels[0]});
  add_parameter("conv2.weight", {channels[1], channels[0], kKernel, kKernel});
  add_parameter("conv2.bias", {channels[1]});
  macs_ = layer_macs(double(channels[0] * side * side), double(in_channels * kKernel * kKernel), true, true) +
          layer_macs(double(channels[1] * side2 * side2), double(channels[0] * kKernel * kKernel), false, true);
  std::vector<std::int64_t> widths{channels[1] * side3 * side3};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(input.num_classes);
  dense_layers_ = widths.size() - 1;
  for (std::size_t l = 0; l < dense_layers_; ++l) {
    const std::string name = "fc" + std::to_string(l + 1);
    add_parameter(name + ".weight", {widths[l + 1], widths[l]});
    add_parameter(name + ".bias", {widths[l + 1]});
    macs_ += layer_macs(double(widths[l + 1]), double(widths[l]), false, true);
  }
}

void Cnn::init(arma::fvec& params, Rng& rng) const {
  float* p = params.memptr();
  for (const ParameterSpec& spec : parameters_) {
    if (spec.shape.size() > 1) {  // a weight: fan_in is everything but the output dimension
      const double fan_in = static_cast<double>(spec.size) / static_cast<double>(spec.shape[0]);
      const double stddev = std::sqrt(2.0 / fan_in);
      for (std::size_t i = 0; i < spec.size; ++i) p[i] = static_cast<float>(stddev * rng.normal());
    }
    p += spec.size;
  }
}

at::Tensor Cnn::logits(const at::Tensor& inputs, const std::vector<at::Tensor>& params) const {
  at::Tensor x = at::conv2d(inputs, params[0], params[1], /*stride=*/1, /*padding=*/2);
  x = at::max_pool2d(at::relu(x), {2, 2});
  x = at::conv2d(x, params[2], params[3], /*stride=*/1, /*padding=*/conv2_padding_);
  x = at::max_pool2d(at::relu(x), {2, 2});
  x = x.flatten(1);
  for (std::size_t l = 0; l < dense_layers_; ++l) {
    x = at::linear(x, params[4 + 2 * l], params[5 + 2 * l]);
    if (l + 1 < dense_layers_) x = at::relu(x);
  }
  return x;
}

}  // namespace

std::unique_ptr<Model> make_cnn(const Config& settings, const ModelInput& input) {
  return std::make_unique<TorchModel>(std::make_unique<Cnn>(settings, input));
}

namespace {
FEDSIM_REGISTER(ModelRegistry, "cnn", make_cnn,
                "convolutional network on LibTorch; settings: arch (fedavg|lenet5), channels, hidden, in_channels");
}  // namespace

}  // namespace fedsim
