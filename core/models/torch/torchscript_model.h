// The user's own network: a TorchScript module exported from Python
// (torch.jit.script(module).save("my_model.pt")), trained by fedsim like any
// other model (scenario `model: {name: torchscript, path: my_model.pt}`).
#pragma once

#include <memory>

#include "core/base/config.h"
#include "core/models/model.h"

namespace fedsim {

// Settings:
//   path             the .pt file (required); a relative path is relative to
//                    the scenario file's directory (Config::get_path)
//   input_shape      one sample's shape as the module's forward takes it
//                    (a batch is {n, input_shape...}); its product must be
//                    the data's dimension. Default [1, s, s] when the
//                    dimension is a square s^2 (grey images), else [dim].
//   macs_per_sample  multiply-adds per sample (forward + backward), > 0;
//                    default: counted from the module (below).
// The module's forward(x) must return n x classes float32 logits; fedsim
// applies softmax cross-entropy. Its parameters, in module.named_parameters()
// order, are the flat vector (one Layer per tensor, named after it, each
// row-major); the initial model is the file's parameters (the seed does not
// change it).
//
// Checked at load, each failure an InputError naming the file and what was
// found: the file exists and is a zip archive (what torch.jit.save writes)
// before LibTorch reads it; LibTorch's own errors (corrupt archive, a newer
// file format, unknown operators) are reported with its message; every
// parameter is float32 and non-empty; the module has no buffers (BatchNorm
// running statistics and the like would be per-client state fedsim does not
// federate: use GroupNorm or LayerNorm); forward draws no random numbers
// (aten::rand*, bernoulli, normal, ...: fedsim's randomness comes from its
// seeded streams only); forward on a batch of two zero samples returns
// 2 x classes float32 logits; and, unless macs_per_sample is given, the
// multiply-adds can be counted.
//
// Files: LibTorch 1.13 reads TorchScript file format versions 1 to 10, i.e.
// files saved by PyTorch 1.13 and earlier. Later PyTorch releases still write
// format 10 unless the module uses an operator whose semantics changed since
// (those bump the version), so most of their files load; one that needs a
// newer operator or format is refused with LibTorch's message.
//
// Multiply-adds: counted from one forward pass of the inlined graph on a
// two-sample batch: every aten::conv1d/conv2d/conv3d, aten::linear and
// (non-transposed) aten::_convolution / aten::convolution, as torch.jit.trace
// records convolutions, of the top-level graph (not inside a loop or branch)
// adds layer_macs
// (torch_network.h) with fan_in = weight elements / output channels (so
// groups count) and the first such layer in graph order counted as the
// input layer. A module with other multiply-add operators (matmul, mm,
// addmm, bmm, einsum, transposed or generic convolutions, recurrent layers)
// or with a counted operator inside a loop or branch needs macs_per_sample.
//
// The module runs in eval mode throughout (dropout off) with LibTorch's graph
// optimizer off (no fusion), so its arithmetic is that of its operators one
// by one, the same as the built-in cnn's for the same architecture. Each
// thread running it uses its own copy of the module, whose parameter
// attributes are pointed at the flat vector's slices for each call.
std::unique_ptr<Model> make_torchscript_model(const Config& settings, const ModelInput& input);

}  // namespace fedsim
