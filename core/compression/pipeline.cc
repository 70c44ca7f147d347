#include "core/compression/pipeline.h"

#include <mutex>

#include "core/base/errors.h"

namespace fedsim {

PipelineSpec PipelineSpec::float32() { return PipelineSpec(); }

PipelineSpec PipelineSpec::parse(const Config& parent, const std::string& key) {
  PipelineSpec spec;
  if (!parent.has(key)) {
    parent.get_string(key, "");  // mark as read
    return spec;
  }
  std::vector<Config> items = parent.children(key);
  bool have_quantizer = false;
  std::string first_coder;  // empty until a coder is listed
  for (const Config& item : items) {
    std::string name;
    Config settings(YAML::Node(YAML::NodeType::Map), item.file(), item.path());
    if (item.is_scalar()) {
      name = item.as_string();
    } else if (item.is_map() && item.keys().size() == 1) {
      name = item.keys()[0];
      settings = item.child(name);
    } else {
      item.fail("", "a stage name or {name: {settings}}", "something else");
    }
    const StageRegistry::Entry* entry = StageRegistry::instance().find(name);
    if (!entry)
      throw InputError(item.where() + ": unknown compression stage '" + name +
                       "', expected one of: " + StageRegistry::instance().known_names());
    const StageKind kind = entry->meta;
    if (kind == StageKind::kTransform && (have_quantizer || !first_coder.empty()))
      throw InputError(item.where() + ": transform stage '" + name + "' must come before the quantizer");
    if (kind == StageKind::kQuantizer) {
      if (have_quantizer) throw InputError(item.where() + ": a second quantizer '" + name + "'; a pipeline has exactly one");
      if (!first_coder.empty())
        throw InputError(item.where() + ": quantizer '" + name + "' must come before coder '" + first_coder +
                         "' (order: transforms, one quantizer, coders)");
      have_quantizer = true;
    }
    if (kind == StageKind::kCoder && first_coder.empty()) first_coder = name;
    spec.stages_.push_back(Stage{name, settings, entry});
  }
  if (!spec.stages_.empty() && !have_quantizer) {
    // Transforms or coders alone wrap a float32 quantizer.
    std::size_t pos = 0;
    while (pos < spec.stages_.size() && spec.stages_[pos].kind() == StageKind::kTransform) ++pos;
    const StageRegistry::Entry* f32 = StageRegistry::instance().find("float32");
    spec.stages_.insert(spec.stages_.begin() + static_cast<long>(pos),
                        Stage{"float32", Config(YAML::Node(YAML::NodeType::Map), parent.file(), parent.path()), f32});
  }
  // Build one instance now so that every stage validates its settings at load.
  spec.make(16, {Layer{"all", 0, 16}}, 0);
  for (const Stage& s : spec.stages_) s.settings.finish();
  return spec;
}

std::unique_ptr<Compressor> PipelineSpec::make(std::size_t dim, const std::vector<Layer>& layers,
                                               std::uint64_t shared_seed) const {
  // Stage factories read their settings through Config, whose reads mark keys
  // as used in state shared by every copy; clients build their pipeline ends
  // from worker threads, so one make() runs at a time.
  static std::mutex config_reads;
  const std::lock_guard<std::mutex> lock(config_reads);
  if (stages_.empty()) {
    const StageRegistry::Entry* f32 = StageRegistry::instance().find("float32");
    StageContext ctx{dim, layers, shared_seed, nullptr};
    return f32->factory(Config(YAML::Node(YAML::NodeType::Map), "<default>"), ctx);
  }
  // Build inside out: quantizer, then coders (first listed innermost), then
  // transforms (last listed innermost).
  std::size_t q = 0;
  while (stages_[q].kind() != StageKind::kQuantizer) ++q;
  std::unique_ptr<Compressor> current;
  auto build = [&](const Stage& s) {
    StageContext ctx{dim, layers, shared_seed, std::move(current)};
    current = s.entry->factory(s.settings, ctx);
  };
  build(stages_[q]);
  for (std::size_t i = q + 1; i < stages_.size(); ++i) build(stages_[i]);
  for (std::size_t i = q; i-- > 0;) build(stages_[i]);
  return current;
}

std::string PipelineSpec::quantizer_name() const {
  for (const auto& s : stages_)
    if (s.kind() == StageKind::kQuantizer) return s.name;
  return "float32";
}

const Config* PipelineSpec::quantizer_settings() const {
  for (const auto& s : stages_)
    if (s.kind() == StageKind::kQuantizer) return &s.settings;
  return nullptr;
}

std::vector<std::string> PipelineSpec::stage_names() const {
  std::vector<std::string> names;
  for (const auto& s : stages_) names.push_back(s.name);
  return names;
}

std::string PipelineSpec::describe() const {
  if (stages_.empty()) return "float32";
  std::string out;
  for (const auto& s : stages_) out += (out.empty() ? "" : " > ") + s.name;
  return out;
}

}  // namespace fedsim
