// Built-in convolutional networks on LibTorch: the two-convolution model of
// the FedAvg paper and a LeNet-5 variant (scenario `model: {name: cnn}`).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/base/config.h"
#include "core/models/model.h"

namespace fedsim {

// Architecture (images of in_channels x s x s, s = sqrt(dim / in_channels)):
//   conv1 5x5, channels[0] filters, padding 2 - ReLU - max-pool 2x2
//   conv2 5x5, channels[1] filters, padding p2 - ReLU - max-pool 2x2
//   flatten - dense hidden[0] - ReLU - ... - dense hidden[k-1] - ReLU - dense classes
// arch fedavg: McMahan, Moore, Ramage, Hampson, Aguera y Arcas 2017 ("CNN"
//   of the FedAvg paper: 5x5 convolutions of 32 and 64 channels with 'same'
//   padding, p2 = 2, dense 512; 1,663,370 parameters on 28x28 with 10
//   classes). Defaults channels [32, 64], hidden [512].
// arch lenet5: LeCun et al. 1998's LeNet-5 on 28x28 as it is usually run on
//   MNIST (the 32x32 input as padding 2, p2 = 0, 16 x 5 x 5 features), with
//   ReLU and max-pooling instead of tanh and subsampling. Defaults channels
//   [6, 16], hidden [120, 84]; 61,706 parameters.
// Settings: arch (fedavg|lenet5, default fedavg), channels (two counts in
// [1, 4096]), hidden (non-empty list of widths in [1, 100000]), in_channels
// (default 1; dim / in_channels must be a square, and s large enough that the
// last feature map is at least 1x1).
// Parameter layout: PyTorch's, in order conv1.weight (out x in x 5 x 5),
// conv1.bias, conv2.weight, conv2.bias, fc1.weight (out x in), fc1.bias, ...,
// fc<k+1>.weight, fc<k+1>.bias; each row-major; one Layer each, so a
// TorchScript module with these attribute names (tools/make_example_torchscript.py)
// has the same flat vector.
// Init: He et al. 2015, weights ~ N(0, 2 / fan_in) (fan_in = in x 25 for a
// convolution), biases 0, as Mlp.
// macs_per_sample: layer_macs (torch_network.h) summed over the convolutions
// and dense layers (conv1 is the first layer); pooling and ReLU are not
// multiply-adds.
std::unique_ptr<Model> make_cnn(const Config& settings, const ModelInput& input);

}  // namespace fedsim
