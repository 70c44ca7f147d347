#include "core/models/torch/torchscript_model.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <string>

#include "core/base/errors.h"
#include "core/models/torch/torch_model.h"
#include "core/models/torch/torch_network.h"

namespace fedsim {

namespace {

namespace fs = std::filesystem;
using torch::jit::Node;

// LibTorch's message without its C++ backtrace.
std::string torch_message(const std::exception& e) {
  const auto* error = dynamic_cast<const c10::Error*>(&e);
  std::string text = error ? error->what_without_backtrace() : e.what();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

// PyTorch's name of a dtype, as the user wrote it in Python.
std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    default: return c10::toString(t);
  }
}

std::string shape_text(at::IntArrayRef shape) {
  std::string out;
  for (std::size_t d = 0; d < shape.size(); ++d) out += (d ? " x " : "") + std::to_string(shape[d]);
  return out;
}

// What can be checked before LibTorch reads the file: it exists, is a regular
// file, and is a zip archive (torch.jit.save writes one; so does torch.save
// since PyTorch 1.6, which LibTorch then refuses with its own message).
void check_file(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) throw InputError(path + ": TorchScript file not found (model.path)");
  if (!fs::is_regular_file(status)) throw InputError(path + ": expected a TorchScript file, found a directory or special file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open TorchScript file");
  unsigned char head[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(head), 4);
  const std::streamsize got = in.gcount();
  if (got == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) return;
  std::string found;
  if (got == 0) {
    found = "an empty file";
  } else if (head[0] == 0x80) {
    found = "a Python pickle (torch.save's legacy format, not a TorchScript module)";
  } else {
    std::ostringstream bytes;
    bytes << "a file starting with bytes";
    for (std::streamsize i = 0; i < got; ++i) bytes << " 0x" << std::hex << static_cast<int>(head[i]);
    found = bytes.str();
  }
  throw InputError(path + ": expected a TorchScript module (a zip archive, as torch.jit.script(model).save(path) "
                          "writes), found " + found);
}

// Operators that draw from LibTorch's global generator: their results would
// depend on thread timing, not on fedsim's seeded streams.
const std::set<std::string>& random_operators() {
  static const std::set<std::string> ops = {
      "aten::rand",      "aten::rand_like", "aten::randn",       "aten::randn_like", "aten::randint",
      "aten::randint_like", "aten::randperm", "aten::bernoulli", "aten::bernoulli_", "aten::normal",
      "aten::normal_",   "aten::uniform_",  "aten::multinomial", "aten::exponential_", "aten::poisson",
      "aten::rrelu",     "aten::rrelu_",    "aten::geometric_",  "aten::cauchy_",    "aten::log_normal_"};
  return ops;
}
// Counted multiply-add operators (input, weight, bias first; the generic
// convolutions, which torch.jit.trace records, only when not transposed),
// and ones fedsim cannot count.
const std::set<std::string>& counted_operators() {
  static const std::set<std::string> ops = {"aten::conv1d",     "aten::conv2d",      "aten::conv3d",
                                            "aten::linear",     "aten::_convolution", "aten::convolution"};
  return ops;
}
bool is_transposed_convolution(const Node* n) {
  const std::string kind = n->kind().toQualString();
  if (kind != "aten::_convolution" && kind != "aten::convolution") return false;
  const c10::optional<bool> transposed = torch::jit::constant_as<bool>(n->inputs().at(6));
  return !transposed || *transposed;
}
const std::set<std::string>& uncounted_operators() {
  static const std::set<std::string> ops = {
      "aten::matmul", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::einsum",
      "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d",
      "aten::conv_tbc", "aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu",
      "aten::lstm_cell", "aten::gru_cell", "aten::bilinear", "aten::tensordot", "aten::dot", "aten::mv",
      "aten::addmv", "aten::chain_matmul", "aten::_native_multi_head_attention", "aten::addbmm"};
  return ops;
}

void visit_nodes(torch::jit::Block* block, int depth, const std::function<void(Node*, int)>& f) {
  for (Node* n : block->nodes()) {
    f(n, depth);
    for (torch::jit::Block* sub : n->blocks()) visit_nodes(sub, depth + 1, f);
  }
}

class TorchScriptNetwork final : public TorchNetwork {
 public:
  TorchScriptNetwork(const Config& settings, const ModelInput& input);

  void init(arma::fvec& params, Rng& rng) const override;
  at::Tensor logits(const at::Tensor& inputs, const std::vector<at::Tensor>& params) const override;
  double macs_per_sample() const override { return macs_; }

 private:
  // A copy of the module for one thread at a time, with the slot of each
  // parameter in the object that owns it, in parameters() order.
  struct Replica {
    torch::jit::Module module;
    std::vector<std::pair<c10::intrusive_ptr<c10::ivalue::Object>, std::size_t>> slots;
  };
  std::unique_ptr<Replica> make_replica() const;
  std::unique_ptr<Replica> acquire() const;
  void release(std::unique_ptr<Replica> replica) const;

  // The graph's inspection: refuses random operators; returns the counted
  // multiply-adds, or throws when they cannot be counted and `required`.
  double count_macs(bool required) const;
  void check_output(std::uint32_t classes) const;

  std::string path_;
  torch::jit::Module module_;  // as loaded, in eval mode; never changed afterwards
  double macs_ = 0.0;
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<Replica>> pool_;
};

TorchScriptNetwork::TorchScriptNetwork(const Config& settings, const ModelInput& input)
    : path_(settings.get_path("path")) {
  use_single_threaded_torch();
  std::vector<std::int64_t> shape;
  if (settings.has("input_shape")) {
    shape = settings.get_int_list("input_shape", 1, std::int64_t{1} << 32);
    std::int64_t product = 1;
    for (std::int64_t d : shape) product *= d;
    if (shape.empty() || product != static_cast<std::int64_t>(input.dim))
      settings.fail("input_shape", "a shape whose product is the data's dimension " + std::to_string(input.dim),
                    shape.empty() ? "an empty list" : "product " + std::to_string(product));
  } else {
    const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(input.dim))));
    shape = side * side == static_cast<std::int64_t>(input.dim) ? std::vector<std::int64_t>{1, side, side}
                                                               : std::vector<std::int64_t>{static_cast<std::int64_t>(input.dim)};
  }
  const double given_macs = settings.get_double("macs_per_sample", 0.0, 0.0, 1e18);
  if (settings.has("macs_per_sample") && given_macs <= 0.0)
    settings.fail("macs_per_sample", "a positive number of multiply-adds", "0");
  if (input.num_classes < 2)
    throw InputError(settings.where() + ": torchscript needs a classification data set (>= 2 classes), found " +
                     (input.num_classes == 0 ? std::string("a regression data set") : std::string("1 class")));
  sample_shape_ = shape;
  num_classes_ = input.num_classes;

  check_file(path_);
  try {
    module_ = torch::jit::load(path_);
  } catch (const std::exception& e) {
    throw InputError(path_ + ": LibTorch cannot load this TorchScript file: " +
                     torch_message(e) + "\n(fedsim needs a module saved with torch.jit.script(model).save(path) "
                     "or torch.jit.trace; LibTorch 1.13 reads files of PyTorch <= 1.13 and of later versions that "
                     "use no newer operator)");
  }
  module_.eval();
  if (!module_.find_method("forward")) throw InputError(path_ + ": the TorchScript module has no forward method");

  std::string buffers;
  for (const auto& b : module_.named_buffers(/*recurse=*/true)) buffers += (buffers.empty() ? "" : ", ") + b.name;
  if (!buffers.empty())
    throw InputError(path_ + ": the module has buffers (" + buffers +
                     "); fedsim federates parameters only, and buffers such as BatchNorm's running statistics "
                     "would be per-client state: use GroupNorm or LayerNorm, or register them as parameters");
  for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
    if (p.value.scalar_type() != at::kFloat)
      throw InputError(path_ + ": parameter '" + p.name + "' is " + dtype_name(p.value.scalar_type()) +
                       ", fedsim trains float32 parameters (call model.float() before saving)");
    if (p.value.numel() == 0) throw InputError(path_ + ": parameter '" + p.name + "' has no elements");
    parameters_.push_back(ParameterSpec{p.name, p.value.sizes().vec(), static_cast<std::size_t>(p.value.numel())});
  }
  if (parameters_.empty()) throw InputError(path_ + ": the module has no parameters to train");

  const double counted = count_macs(/*required=*/given_macs <= 0.0);
  macs_ = given_macs > 0.0 ? given_macs : counted;
  check_output(input.num_classes);
}

void TorchScriptNetwork::check_output(std::uint32_t classes) const {
  std::vector<std::int64_t> shape{2};
  shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
  c10::InferenceMode inference;
  torch::jit::GraphOptimizerEnabledGuard no_fusion(false);
  c10::IValue out;
  try {
    torch::jit::Module module = module_;  // a handle: forward is not const
    out = module.forward({at::zeros(shape)});
  } catch (const std::exception& e) {
    throw InputError(path_ + ": forward on a " + shape_text(shape) +
                     " batch of zeros failed (one sample's shape is model.input_shape): " + torch_message(e));
  }
  if (!out.isTensor())
    throw InputError(path_ + ": forward returned a " + out.type()->repr_str() + ", expected a tensor of logits");
  const at::Tensor logits = out.toTensor();
  if (logits.dim() != 2 || logits.size(0) != 2 || logits.size(1) != static_cast<std::int64_t>(classes))
    throw InputError(path_ + ": forward on a batch of 2 returned " + shape_text(logits.sizes()) +
                     " outputs, expected 2 x " + std::to_string(classes) + " (the data set has " +
                     std::to_string(classes) + " classes)");
  if (logits.scalar_type() != at::kFloat)
    throw InputError(path_ + ": forward returned " + dtype_name(logits.scalar_type()) +
                     " logits, expected float32");
}

double TorchScriptNetwork::count_macs(bool required) const {
  std::shared_ptr<torch::jit::Graph> graph = module_.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  torch::jit::ConstantPropagation(graph);
  torch::jit::EliminateDeadCode(graph);
  std::string uncountable;  // why the count is impossible, if it is
  std::vector<Node*> counted;
  visit_nodes(graph->block(), 0, [&](Node* n, int depth) {
    const std::string kind = n->kind().toQualString();
    if (random_operators().count(kind))
      throw InputError(path_ + ": forward draws random numbers (" + kind +
                       "); fedsim's results must depend only on its seeded streams, remove it");
    if (!uncountable.empty()) return;
    if (uncounted_operators().count(kind)) {
      uncountable = "its forward uses " + kind + ", whose multiply-adds fedsim does not count";
    } else if (counted_operators().count(kind)) {
      if (is_transposed_convolution(n))
        uncountable = "its forward uses a transposed convolution, whose multiply-adds fedsim does not count";
      else if (depth > 0)
        uncountable = "its forward runs " + kind + " inside a loop or branch";
      else
        counted.push_back(n);
    }
  });
  if (!uncountable.empty() || counted.empty()) {
    if (!required) return 0.0;
    throw InputError(path_ + ": cannot count the module's multiply-adds: " +
                     (uncountable.empty() ? std::string("it has no convolution or linear layer") : uncountable) +
                     "; set model.macs_per_sample (forward + backward multiply-adds per sample)");
  }
  // Run the graph once on two zero samples with each counted layer's weight,
  // bias and output as extra outputs, to read their shapes.
  const std::size_t first_extra = graph->outputs().size();
  for (Node* n : counted) {
    graph->registerOutput(n->inputs()[1]);
    graph->registerOutput(n->inputs()[2]);
    graph->registerOutput(n->output());
  }
  std::vector<std::int64_t> shape{2};
  shape.insert(shape.end(), sample_shape_.begin(), sample_shape_.end());
  torch::jit::Stack stack{module_._ivalue(), at::zeros(shape)};
  try {
    c10::InferenceMode inference;
    torch::jit::GraphOptimizerEnabledGuard no_fusion(false);
    torch::jit::GraphExecutor executor(graph, "fedsim_count_macs");
    executor.run(stack);
  } catch (const std::exception& e) {
    throw InputError(path_ + ": forward on a " + shape_text(shape) +
                     " batch of zeros failed (one sample's shape is model.input_shape): " + torch_message(e));
  }
  double macs = 0.0;
  for (std::size_t i = 0; i < counted.size(); ++i) {
    const c10::IValue& weight = stack.at(first_extra + 3 * i);
    const c10::IValue& bias = stack.at(first_extra + 3 * i + 1);
    const c10::IValue& output = stack.at(first_extra + 3 * i + 2);
    if (!weight.isTensor() || !output.isTensor() || weight.toTensor().dim() < 2) {
      if (!required) return 0.0;
      throw InputError(path_ + ": cannot count the module's multiply-adds (unexpected operands of " +
                       std::string(counted[i]->kind().toQualString()) + "); set model.macs_per_sample");
    }
    const at::Tensor& w = weight.toTensor();
    const double outputs = static_cast<double>(output.toTensor().numel()) / 2.0;
    const double fan_in = static_cast<double>(w.numel()) / static_cast<double>(w.size(0));
    macs += layer_macs(outputs, fan_in, i == 0, bias.isTensor());
  }
  return macs;
}

void TorchScriptNetwork::init(arma::fvec& params, Rng&) const {
  float* p = params.memptr();
  for (const auto& param : module_.named_parameters(/*recurse=*/true)) {
    const at::Tensor values = param.value.detach().contiguous();
    std::memcpy(p, values.data_ptr<float>(), static_cast<std::size_t>(values.numel()) * sizeof(float));
    p += values.numel();
  }
}

std::unique_ptr<TorchScriptNetwork::Replica> TorchScriptNetwork::make_replica() const {
  auto replica = std::make_unique<Replica>();
  replica->module = module_.clone();
  for (const ParameterSpec& spec : parameters_) {
    // "conv1.weight": attribute "weight" of submodule "conv1".
    torch::jit::Module owner = replica->module;
    std::string name = spec.name;
    for (std::size_t dot; (dot = name.find('.')) != std::string::npos; name = name.substr(dot + 1))
      owner = owner.attr(name.substr(0, dot)).toModule();
    const auto slot = owner.type()->findAttributeSlot(name);
    if (!slot) throw std::logic_error(path_ + ": parameter " + spec.name + " not found in its module");
    replica->slots.emplace_back(owner._ivalue(), *slot);
  }
  return replica;
}

std::unique_ptr<TorchScriptNetwork::Replica> TorchScriptNetwork::acquire() const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (!pool_.empty()) {
    std::unique_ptr<Replica> r = std::move(pool_.back());
    pool_.pop_back();
    return r;
  }
  return make_replica();
}

void TorchScriptNetwork::release(std::unique_ptr<Replica> replica) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  pool_.push_back(std::move(replica));
}

at::Tensor TorchScriptNetwork::logits(const at::Tensor& inputs, const std::vector<at::Tensor>& params) const {
  std::unique_ptr<Replica> replica = acquire();
  for (std::size_t i = 0; i < params.size(); ++i) replica->slots[i].first->setSlot(replica->slots[i].second, params[i]);
  c10::IValue out;
  try {
    // Per thread: the graph executor's optimizer (fusion) stays off.
    torch::jit::GraphOptimizerEnabledGuard no_fusion(false);
    out = replica->module.forward({inputs});
  } catch (const std::exception& e) {
    release(std::move(replica));
    throw InputError(path_ + ": forward failed on a batch of " + shape_text(inputs.sizes()) + ": " + torch_message(e));
  }
  release(std::move(replica));
  if (!out.isTensor())
    throw InputError(path_ + ": forward returned a " + out.type()->repr_str() + ", expected a tensor of logits");
  return out.toTensor();
}

}  // namespace

std::unique_ptr<Model> make_torchscript_model(const Config& settings, const ModelInput& input) {
  return std::make_unique<TorchModel>(std::make_unique<TorchScriptNetwork>(settings, input));
}

namespace {
FEDSIM_REGISTER(ModelRegistry, "torchscript", make_torchscript_model,
                "a TorchScript module (.pt) from PyTorch, on LibTorch; settings: path, input_shape, macs_per_sample");
}  // namespace

}  // namespace fedsim
