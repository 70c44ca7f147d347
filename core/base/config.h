// Typed, validated access to one node of a scenario file.
//
// Every component reads its settings through a Config: a value of the wrong
// type, out of its range, or a key nobody read (a typo) is an InputError that
// names the file, the line, the key, what was expected and what was found.
// Reading a key marks it as used; finish() reports the keys left unread.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace fedsim {

class Config {
 public:
  // `file` is used in messages only; `path` is the dotted key path of `node`.
  Config(YAML::Node node, std::string file, std::string path = "");
  // An empty map (every key takes its default).
  Config() : Config(YAML::Node(YAML::NodeType::Map), "<defaults>") {}

  // Parses a YAML file. Throws InputError (missing file, bad YAML).
  static Config load_file(const std::string& file);
  static Config parse_string(const std::string& text, const std::string& file = "<string>");

  bool has(const std::string& key) const;
  bool is_map() const { return node_.IsMap(); }
  bool is_scalar() const { return node_.IsScalar(); }
  bool is_sequence() const { return node_.IsSequence(); }

  // Required values (InputError if missing) ...
  double get_double(const std::string& key, double min, double max) const;
  std::int64_t get_int(const std::string& key, std::int64_t min, std::int64_t max) const;
  std::string get_string(const std::string& key) const;
  // ... and values with a documented default.
  double get_double(const std::string& key, double fallback, double min, double max) const;
  std::int64_t get_int(const std::string& key, std::int64_t fallback, std::int64_t min, std::int64_t max) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  // A file path (required, non-empty): kept if absolute; a relative one is
  // taken relative to the directory of the scenario file it was written in,
  // or to the working directory when it came from a --set override (as a
  // shell argument would be).
  std::string get_path(const std::string& key) const;
  bool get_bool(const std::string& key, bool fallback) const;
  // One of `allowed`.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& allowed) const;
  std::vector<double> get_double_list(const std::string& key, double min, double max) const;
  std::vector<std::int64_t> get_int_list(const std::string& key, std::int64_t min, std::int64_t max) const;

  // A nested map or list; child() of a missing key is an empty map.
  Config child(const std::string& key) const;
  std::vector<Config> children(const std::string& key) const;  // a sequence
  std::vector<Config> elements() const;                         // this node's sequence items
  std::vector<std::string> keys() const;                        // this map's keys, in file order

  // The value of `key` as it is (any YAML; Undefined if absent), marked read;
  // checking what is inside is the caller's job (study overrides, say).
  YAML::Node raw(const std::string& key) const { return value(key); }

  // This node as a scalar (for sequence elements).
  std::string as_string() const;
  double as_double(double min, double max) const;

  // Throws InputError naming the first key of this map (recursively for
  // children obtained through child()/children()) that was never read.
  void finish() const;

  // "file:line: key" for messages about this node or one of its keys;
  // "--set a.b=v: key" when the value came from that override (no line).
  std::string where(const std::string& key = "") const;
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const std::string& found) const;

  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }

  // Applies a command-line override `a.b.c=value` (value parsed as YAML).
  // The nodes it adds remember the assignment, for where().
  static void apply_override(YAML::Node root, const std::string& assignment);

 private:
  YAML::Node value(const std::string& key) const;  // marks used; Undefined if absent
  std::string key_path(const std::string& key) const;
  std::string found_text(const YAML::Node& n) const;

  YAML::Node node_;
  std::string file_;
  std::string path_;
  // Shared across every Config of one file: which key paths were read.
  std::shared_ptr<std::set<std::string>> used_;
  std::shared_ptr<std::vector<Config>> visited_children_;
};

}  // namespace fedsim
