#include "tools/study.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/base/errors.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

bool is_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '+' || c == '-';
}

void check_label(const Config& at, const std::string& key, const std::string& label, const char* what) {
  bool ok = !label.empty();
  for (char c : label) ok = ok && is_label_char(c);
  if (!ok) at.fail(key, std::string(what) + " made of letters, digits and . _ + - (it names folders)", "'" + label + "'");
}

std::string resolve(const std::string& study_file, const std::string& path) {
  const fs::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (fs::path(study_file).parent_path() / p).lexically_normal().string();
}

// A map of dotted keys to YAML values (the `set:` section, an axis value).
// `scenario` (when allowed) names another base file instead.
void read_overrides(const Config& map, const std::string& study_file, bool allow_scenario, std::string* scenario,
                    std::vector<std::string>* overrides) {
  if (!map.is_map()) map.fail("", "a map of scenario keys to values", "something else");
  for (const std::string& key : map.keys()) {
    if (allow_scenario && key == "scenario") {
      *scenario = resolve(study_file, map.get_string("scenario"));
      continue;
    }
    overrides->push_back(override_assignment(key, map.raw(key)));  // the scenario's parser checks it
  }
}

StudyAxis read_axis(const Config& axes, const std::string& name, const std::string& study_file) {
  check_label(axes, name, name, "an axis name");
  StudyAxis axis{name, {}};
  const Config spec = axes.child(name);
  if (!spec.is_map() || spec.keys().empty())
    axes.fail(name, "a map of value labels to overrides, or {key: K, values: [...]}", "something else");
  const std::vector<std::string> keys = spec.keys();
  if (std::set<std::string>(keys.begin(), keys.end()) == std::set<std::string>{"key", "values"}) {
    const std::string key = spec.get_string("key");
    const std::vector<Config> values = spec.children("values");
    if (values.empty()) spec.fail("values", "a non-empty list", "an empty list");
    for (const Config& v : values) {
      if (!v.is_scalar()) v.fail("", "a scalar value", "a list or a map");
      const std::string label = v.as_string();
      check_label(v, "", label, "a value");
      axis.values.push_back({label, "", {override_assignment(key, v.node())}});
    }
  } else {
    for (const std::string& label : keys) {
      check_label(spec, label, label, "a value label");
      AxisValue value{label, "", {}};
      read_overrides(spec.child(label), study_file, true, &value.scenario, &value.overrides);
      axis.values.push_back(std::move(value));
    }
  }
  std::set<std::string> seen;
  for (const AxisValue& v : axis.values)
    if (!seen.insert(v.label).second) axes.fail(name, "distinct value labels", "'" + v.label + "' twice");
  return axis;
}

// The cartesian product, first axis slowest.
std::vector<StudyConfig> expand(const Study& s) {
  std::vector<StudyConfig> configs{{"", {}, s.scenario, s.overrides}};
  for (const StudyAxis& axis : s.axes) {
    std::vector<StudyConfig> next;
    for (const StudyConfig& c : configs) {
      for (const AxisValue& v : axis.values) {
        StudyConfig d = c;
        d.label += (d.label.empty() ? "" : ";") + axis.name + "=" + v.label;
        d.axis_labels.push_back(v.label);
        if (!v.scenario.empty()) d.scenario = v.scenario;
        d.overrides.insert(d.overrides.end(), v.overrides.begin(), v.overrides.end());
        next.push_back(std::move(d));
      }
    }
    configs = std::move(next);
  }
  if (s.axes.empty()) configs[0].label = "base";
  return configs;
}

}  // namespace

std::string override_assignment(const std::string& key, const YAML::Node& value) {
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << value;
  return key + "=" + out.c_str();
}

std::vector<std::string> Study::run_overrides(const StudyRun& run) const {
  std::vector<std::string> o = configs[run.config].overrides;
  o.push_back("seed=" + std::to_string(run.seed));
  return o;
}

Study parse_study(const std::string& yaml_text, const std::string& file, const std::vector<std::string>& cli_overrides) {
  const Config root = Config::parse_string(yaml_text, file);
  if (!root.is_map()) root.fail("", "a study (a map with scenario, seeds, axes, ...)", "something else");
  Study s;
  s.file = file;
  s.name = root.get_string("name", fs::path(file).stem().string());
  check_label(root, "name", s.name, "a name");
  s.description = root.get_string("description", "");
  s.scenario = resolve(file, root.get_string("scenario"));
  std::string unused;
  if (root.has("set")) read_overrides(root.child("set"), file, false, &unused, &s.overrides);
  s.overrides.insert(s.overrides.end(), cli_overrides.begin(), cli_overrides.end());

  if (!root.has("seeds")) root.fail("seeds", "a list of seeds or a count", "nothing");
  if (root.raw("seeds").IsScalar()) {
    const std::int64_t n = root.get_int("seeds", 1, 1000);
    for (std::int64_t i = 1; i <= n; ++i) s.seeds.push_back(static_cast<std::uint64_t>(i));
  } else {
    for (std::int64_t v : root.get_int_list("seeds", 0, std::numeric_limits<std::int64_t>::max()))
      s.seeds.push_back(static_cast<std::uint64_t>(v));
    if (s.seeds.empty()) root.fail("seeds", "at least one seed", "an empty list");
    if (std::set<std::uint64_t>(s.seeds.begin(), s.seeds.end()).size() != s.seeds.size())
      root.fail("seeds", "distinct seeds", "a repeated seed");
  }
  if (root.has("targets")) s.targets = root.get_double_list("targets", 0.0, 1.0);
  if (root.has("axes")) {
    const Config axes = root.child("axes");
    if (!axes.is_map()) root.fail("axes", "a map of axis names to values", "something else");
    for (const std::string& name : axes.keys()) s.axes.push_back(read_axis(axes, name, file));
  }
  s.root = root;
  s.configs = expand(s);
  for (std::size_t c = 0; c < s.configs.size(); ++c)
    for (std::uint64_t seed : s.seeds)
      s.runs.push_back({c, seed, s.configs[c].label + ";seed=" + std::to_string(seed)});
  // The `tune:` section's keys are checked by tools/tune.cc; everything else here.
  if (!root.has("tune")) root.finish();
  return s;
}

Study load_study(const std::string& file, const std::vector<std::string>& cli_overrides) {
  std::ifstream in(file);
  if (!in) throw InputError(file + ": cannot open study file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_study(text.str(), file, cli_overrides);
}

void validate_study(const Study& study) {
  const std::uint64_t seed = study.seeds.front();
  auto build = [&](const std::string& scenario, std::vector<std::string> overrides) {
    overrides.push_back("seed=" + std::to_string(seed));
    const Scenario sc = load_scenario(scenario, overrides);
    const Simulation sim(sc);
  };
  for (const StudyConfig& c : study.configs) {
    try {
      build(c.scenario, c.overrides);
    } catch (const InputError& e) {
      // Name the axis value that fails on its own, if one does.
      for (std::size_t a = 0; a < study.axes.size(); ++a) {
        for (const AxisValue& v : study.axes[a].values) {
          if (v.label != c.axis_labels[a]) continue;
          std::vector<std::string> alone = study.overrides;
          alone.insert(alone.end(), v.overrides.begin(), v.overrides.end());
          try {
            build(v.scenario.empty() ? study.scenario : v.scenario, alone);
          } catch (const InputError& inner) {
            throw InputError(study.file + ": axis '" + study.axes[a].name + "', value '" + v.label +
                             "': " + inner.what());
          }
        }
      }
      throw InputError(study.file + ": configuration '" + c.label + "': " + e.what());
    }
  }
}

}  // namespace fedsim
