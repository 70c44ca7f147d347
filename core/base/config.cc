#include "core/base/config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/base/errors.h"

namespace fedsim {

Config::Config(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)),
      file_(std::move(file)),
      path_(std::move(path)),
      used_(std::make_shared<std::set<std::string>>()),
      visited_children_(std::make_shared<std::vector<Config>>()) {}

Config Config::load_file(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw InputError(file + ": cannot open scenario file (does it exist?)");
  std::stringstream text;
  text << in.rdbuf();
  return parse_string(text.str(), file);
}

namespace {
void check_keys_are_scalars(const YAML::Node& node, const std::string& file);
// yaml-cpp recurses once per nesting level; bound the depth before parsing so
// that hostile input cannot exhaust the stack.
void check_nesting(const std::string& text, const std::string& file) {
  constexpr int kMaxDepth = 64;
  int depth = 0;
  int line = 1;
  int dashes = 0;  // "- - - x" nests one sequence per dash
  bool line_start = true;
  for (char c : text) {
    if (c == '\n') {
      ++line;
      dashes = 0;
      line_start = true;
      continue;
    }
    if (line_start && c == '-') {
      if (++dashes > kMaxDepth)
        throw InputError(file + ":" + std::to_string(line) + ": invalid YAML: nested deeper than " +
                         std::to_string(kMaxDepth) + " levels");
    } else if (c != ' ' && c != '\t') {
      line_start = false;
    }
    if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        throw InputError(file + ":" + std::to_string(line) + ": invalid YAML: nested deeper than " +
                         std::to_string(kMaxDepth) + " levels");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}
}  // namespace

Config Config::parse_string(const std::string& text, const std::string& file) {
  check_nesting(text, file);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(file + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw InputError(file + ":1: expected a mapping of scenario keys at the top level");
  check_keys_are_scalars(root, file);
  return Config(root, file);
}

namespace {

// Mapping keys must be plain scalars ("? [a, b]: 1" is valid YAML but not a
// scenario key). Depth is bounded by check_nesting.
void check_keys_are_scalars(const YAML::Node& node, const std::string& file) {
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar())
        throw InputError(file + ":" + std::to_string(it->first.Mark().line + 1) +
                         ": expected a plain key, found a " + (it->first.IsNull() ? "missing" : "complex") + " key");
      check_keys_are_scalars(it->second, file);
    }
  } else if (node.IsSequence()) {
    for (const YAML::Node& item : node) check_keys_are_scalars(item, file);
  }
}

}  // namespace

std::string Config::key_path(const std::string& key) const {
  if (key.empty()) return path_;
  return path_.empty() ? key : path_ + "." + key;
}

namespace {

// A node that came from a --set override has no line in the file (its mark
// points into the override's own text, or nowhere), so messages name the
// option instead. yaml-cpp keeps no other per-node annotation than the tag:
// apply_override tags every value it adds with kOverrideTag + the assignment.
const std::string kOverrideTag = "!fedsim-set:";

void tag_as_override(YAML::Node node, const std::string& assignment) {
  node.SetTag(kOverrideTag + assignment);
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) tag_as_override(it->second, assignment);
  } else if (node.IsSequence()) {
    for (YAML::Node item : node) tag_as_override(item, assignment);
  }
}

// "--set a.b=1" for a value tagged by apply_override, else "".
std::string override_origin(const YAML::Node& node) {
  const std::string& tag = node.Tag();
  return tag.starts_with(kOverrideTag) ? "--set " + tag.substr(kOverrideTag.size()) : "";
}

}  // namespace

std::string Config::where(const std::string& key) const {
  int line = node_.Mark().line;
  std::string origin;  // the --set option the value came from, if any
  if (!key.empty() && node_.IsMap()) {
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      if (it->first.as<std::string>() == key) {
        line = it->first.Mark().line;
        origin = override_origin(it->second);
        break;
      }
    }
  }
  if (origin.empty()) origin = override_origin(node_);
  std::string out = origin.empty() ? file_ : origin;
  if (origin.empty() && line >= 0) out += ":" + std::to_string(line + 1);
  const std::string k = key_path(key);
  if (!k.empty()) out += ": " + k;
  return out;
}

void Config::fail(const std::string& key, const std::string& expected, const std::string& found) const {
  throw InputError(where(key) + ": expected " + expected + ", found " + found);
}

std::string Config::found_text(const YAML::Node& n) const {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  return "a mapping";
}

bool Config::has(const std::string& key) const {
  return node_.IsMap() && node_[key].IsDefined() && !node_[key].IsNull();
}

YAML::Node Config::value(const std::string& key) const {
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  used_->insert(key);
  YAML::Node v = node_[key];
  return v;
}

namespace {
template <class T>
bool parse_scalar(const YAML::Node& n, T& out) {
  if (!n.IsScalar()) return false;
  try {
    out = n.as<T>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

std::string range_text(double min, double max) {
  std::ostringstream s;
  if (max == std::numeric_limits<double>::infinity()) {
    s << ">= " << min;
  } else {
    s << "in [" << min << ", " << max << "]";
  }
  return s.str();
}
}  // namespace

double Config::get_double(const std::string& key, double min, double max) const {
  YAML::Node v = value(key);
  if (!v.IsDefined() || v.IsNull()) fail(key, "a number " + range_text(min, max) + " (required)", "nothing");
  double d;
  if (!parse_scalar(v, d)) fail(key, "a number", found_text(v));
  if (!(d >= min && d <= max)) fail(key, "a number " + range_text(min, max), found_text(v));
  return d;
}

double Config::get_double(const std::string& key, double fallback, double min, double max) const {
  if (!has(key)) {
    used_->insert(key);
    return fallback;
  }
  return get_double(key, min, max);
}

std::int64_t Config::get_int(const std::string& key, std::int64_t min, std::int64_t max) const {
  YAML::Node v = value(key);
  auto range = [&] {
    std::string r = "an integer >= " + std::to_string(min);
    if (max != std::numeric_limits<std::int64_t>::max()) r = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    return r;
  };
  if (!v.IsDefined() || v.IsNull()) fail(key, range() + " (required)", "nothing");
  std::int64_t i;
  if (!parse_scalar(v, i)) fail(key, "an integer", found_text(v));
  if (i < min || i > max) fail(key, range(), found_text(v));
  return i;
}

std::int64_t Config::get_int(const std::string& key, std::int64_t fallback, std::int64_t min, std::int64_t max) const {
  if (!has(key)) {
    used_->insert(key);
    return fallback;
  }
  return get_int(key, min, max);
}

std::string Config::get_string(const std::string& key) const {
  YAML::Node v = value(key);
  if (!v.IsDefined() || v.IsNull()) fail(key, "a string (required)", "nothing");
  if (!v.IsScalar()) fail(key, "a string", found_text(v));
  return v.Scalar();
}

std::string Config::get_string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) {
    used_->insert(key);
    return fallback;
  }
  return get_string(key);
}

std::string Config::get_path(const std::string& key) const {
  const std::string text = get_string(key);
  if (text.empty()) fail(key, "a file path", "an empty string");
  const std::filesystem::path path(text);
  if (path.is_absolute() || !override_origin(value(key)).empty()) return text;
  return (std::filesystem::path(file_).parent_path() / path).string();
}

bool Config::get_bool(const std::string& key, bool fallback) const {
  if (!has(key)) {
    used_->insert(key);
    return fallback;
  }
  YAML::Node v = value(key);
  bool b;
  if (!parse_scalar(v, b)) fail(key, "true or false", found_text(v));
  return b;
}

std::string Config::get_choice(const std::string& key, const std::string& fallback,
                               const std::vector<std::string>& allowed) const {
  const std::string s = get_string(key, fallback);
  for (const auto& a : allowed)
    if (a == s) return s;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  fail(key, "one of: " + list, "'" + s + "'");
}

std::vector<double> Config::get_double_list(const std::string& key, double min, double max) const {
  YAML::Node v = value(key);
  if (!v.IsSequence()) fail(key, "a list of numbers", found_text(v));
  std::vector<double> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    double d;
    if (!parse_scalar(v[i], d) || !(d >= min && d <= max))
      fail(key, "a list of numbers " + range_text(min, max), found_text(v[i]) + " at position " + std::to_string(i));
    out.push_back(d);
  }
  return out;
}

std::vector<std::int64_t> Config::get_int_list(const std::string& key, std::int64_t min, std::int64_t max) const {
  YAML::Node v = value(key);
  if (!v.IsSequence()) fail(key, "a list of integers", found_text(v));
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::int64_t d;
    if (!parse_scalar(v[i], d) || d < min || d > max)
      fail(key, "a list of integers in [" + std::to_string(min) + ", " + std::to_string(max) + "]",
           found_text(v[i]) + " at position " + std::to_string(i));
    out.push_back(d);
  }
  return out;
}

Config Config::child(const std::string& key) const {
  YAML::Node v = value(key);
  if (!v.IsDefined() || v.IsNull()) {
    Config c(YAML::Node(YAML::NodeType::Map), file_, key_path(key));
    return c;
  }
  if (!v.IsMap()) fail(key, "a mapping of keys", found_text(v));
  Config c(v, file_, key_path(key));
  visited_children_->push_back(c);
  return c;
}

std::vector<Config> Config::children(const std::string& key) const {
  YAML::Node v = value(key);
  if (!v.IsDefined() || v.IsNull()) return {};
  if (!v.IsSequence()) fail(key, "a list", found_text(v));
  std::vector<Config> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    Config c(v[i], file_, key_path(key) + "[" + std::to_string(i) + "]");
    visited_children_->push_back(c);
    out.push_back(c);
  }
  return out;
}

std::vector<Config> Config::elements() const {
  std::vector<Config> out;
  if (!node_.IsSequence()) return out;
  for (std::size_t i = 0; i < node_.size(); ++i) {
    Config c(node_[i], file_, path_ + "[" + std::to_string(i) + "]");
    visited_children_->push_back(c);
    out.push_back(c);
  }
  return out;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (auto it = node_.begin(); it != node_.end(); ++it) out.push_back(it->first.as<std::string>());
  return out;
}

std::string Config::as_string() const {
  if (!node_.IsScalar()) fail("", "a name", found_text(node_));
  return node_.Scalar();
}

double Config::as_double(double min, double max) const {
  double d;
  if (!parse_scalar(node_, d) || !(d >= min && d <= max)) fail("", "a number " + range_text(min, max), found_text(node_));
  return d;
}

void Config::finish() const {
  if (node_.IsMap()) {
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string k = it->first.as<std::string>();
      if (!used_->count(k))
        throw InputError(where(k) + ": unknown key (not part of the schema; see the README's scenario table)");
    }
  }
  for (const auto& c : *visited_children_) c.finish();
}

void Config::apply_override(YAML::Node root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError("--set " + assignment + ": expected key=value (for example --set rounds=10)");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError("--set " + assignment + ": invalid YAML value: " + e.msg);
  }
  check_keys_are_scalars(value, "--set " + assignment);
  tag_as_override(value, assignment);
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  // A part that names an item of a list is its index: population.1.battery_j.
  auto list_item = [&](const YAML::Node& list, const std::string& part) {
    const bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || part.size() > 9)
      throw InputError("--set " + assignment + ": '" + part + "': expected a list index (0, 1, ...), the value there is a list");
    const std::size_t index = std::stoul(part);
    if (index >= list.size())
      throw InputError("--set " + assignment + ": index " + part + " out of range (the list has " +
                       std::to_string(list.size()) + " item(s))");
    return index;
  };
  // yaml-cpp nodes are handles: walk down by reassigning copies.
  std::vector<YAML::Node> chain{root};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next;
    if (chain.back().IsSequence()) {
      next = chain.back()[list_item(chain.back(), parts[i])];
    } else {
      next = chain.back()[parts[i]];
      if (!next.IsDefined() || next.IsNull()) {
        YAML::Node created(YAML::NodeType::Map);
        tag_as_override(created, assignment);
        chain.back()[parts[i]] = created;
        next = chain.back()[parts[i]];
      }
    }
    if (!next.IsMap() && !next.IsSequence())
      throw InputError("--set " + assignment + ": '" + parts[i] + "' is not a mapping or a list");
    chain.push_back(next);
  }
  if (chain.back().IsSequence())
    chain.back()[list_item(chain.back(), parts.back())] = value;
  else
    chain.back()[parts.back()] = value;
}

}  // namespace fedsim
