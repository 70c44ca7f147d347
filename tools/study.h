// A study file: a base scenario, named axes of scenario overrides, seeds and
// target accuracies. Every combination of axis values is a configuration;
// every configuration x seed is one run of `fedsim run`.
//
//   name: compression                 # default: the file's stem
//   description: "..."                # free text for the report
//   scenario: ../compression/float32.yaml   # relative to the study file
//   set: {rounds: 100}                # overrides applied to every run
//   seeds: [1, 2, 3]                  # or a count: `seeds: 5` = 1..5
//   targets: [0.80, 0.84]             # accuracies in [0, 1]
//   axes:
//     scheme:                         # label -> overrides (dotted keys -> YAML values)
//       float32: {uplink: [float32]}
//       fedvote: {scenario: ../compression/fedvote.yaml}   # another base file
//     local_steps: {key: local_steps, values: [1, 5]}      # one key, a list of values
//   tune: {...}                       # `fedsim tune` only (tools/tune.h)
//
// The first axis varies slowest. Labels (axis names and value labels) are
// limited to [A-Za-z0-9._+-] so that they name folders and CSV cells safely.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/config.h"

namespace fedsim {

struct AxisValue {
  std::string label;
  std::string scenario;                // another base scenario file, or "" = the study's
  std::vector<std::string> overrides;  // "key.path=<YAML flow text>", as --set takes them
};

struct StudyAxis {
  std::string name;
  std::vector<AxisValue> values;
};

// One point of the grid.
struct StudyConfig {
  std::string label;                     // "scheme=qsgd_4bit;local_steps=5", or "base" without axes
  std::vector<std::string> axis_labels;  // one per axis
  std::string scenario;                  // the base scenario file of this configuration
  std::vector<std::string> overrides;    // the study's `set`, then the axis values', then the command line's
};

// One configuration x seed.
struct StudyRun {
  std::size_t config = 0;  // index into Study::configs
  std::uint64_t seed = 0;
  std::string id;          // "<config label>;seed=<seed>": the run's folder name
};

struct Study {
  std::string file;
  std::string name;
  std::string description;
  std::string scenario;                // resolved path of the base scenario
  std::vector<std::string> overrides;  // `set:` then the command line's --set
  std::vector<StudyAxis> axes;
  std::vector<std::uint64_t> seeds;
  std::vector<double> targets;
  Config root;                         // the file; `tune:` is read, and finish()ed, by tools/tune.cc

  std::vector<StudyConfig> configs;    // the grid, first axis slowest
  std::vector<StudyRun> runs;          // configs x seeds, config-major

  // The overrides of one run: its configuration's, then seed=<seed>.
  std::vector<std::string> run_overrides(const StudyRun& run) const;
};

// Parses a study file and expands its grid. `cli_overrides` (from --set) go
// after the study's own. Throws InputError naming the file, line and key.
Study load_study(const std::string& file, const std::vector<std::string>& cli_overrides = {});
Study parse_study(const std::string& yaml_text, const std::string& file,
                  const std::vector<std::string>& cli_overrides = {});

// Builds every configuration's scenario (data loaded, components made) so that
// a bad override fails before any run starts; the error names the study file,
// the axis and the value. Throws InputError.
void validate_study(const Study& study);

// "key=<value as one line of YAML flow text>", the form --set takes.
std::string override_assignment(const std::string& key, const YAML::Node& value);

}  // namespace fedsim
