// `fedsim tune`: the energy-budget study. Searches the study's `tune:` space
// for the setting that minimises a metric to reach a target accuracy, under
// limits on simulated time and energy, with the simulator as the oracle:
//
//   tune:
//     minimise: energy_j        # energy_j | sim_time_s | bytes_up (to reach the target)
//     target: 0.80              # test accuracy in [0, 1]
//     max_sim_time_s: 3600      # optional: every seed must reach the target within it
//     max_energy_j: 500         # optional: likewise
//     search:                   # scenario key -> candidate values (any YAML)
//       local_steps: [1, 5, 10]
//       batch_size: [16, 64]
//     samples: 0                # 0 = the whole grid; N = N grid points drawn at random (seeded)
//     eta: 3                    # successive halving: 1/eta of the unfinished go on per rung
//     min_rounds: 10            # the first rung's rounds; x eta per rung up to the scenario's rounds
//     budget_runs: 200          # at most this many runs (candidate x seed x rung), base excluded
//     budget_wall_s: 0          # stop promoting after this much wall time (0 = no limit)
//
// Successive halving over rounds (Jamieson & Talwalkar 2016): every alive
// candidate runs every seed for the rung's rounds. A candidate whose every
// seed reached the target is finished (more rounds cannot change what it took
// to get there); one whose seeds cannot meet a limit any more is infeasible;
// one whose spending so far already exceeds the best finished candidate's is
// pruned (the metric only grows with rounds); of the rest, the 1/eta with the
// highest mean accuracy go on. The base scenario's own setting is run on
// every seed for the full rounds, and the saving is the paired difference
// per seed. Runs live in DIR/runs/ like a sweep's, so a killed tune resumes.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "tools/study.h"
#include "tools/sweep.h"

namespace fedsim {

struct TuneSpec {
  std::string metric = "energy_j";
  double target = 0.0;
  double max_sim_time_s = 0.0;  // 0 = no limit
  double max_energy_j = 0.0;    // 0 = no limit
  std::vector<std::string> keys;                         // searched keys, in file order
  std::vector<std::vector<std::string>> values;          // per key: the --set assignments
  std::vector<std::vector<std::string>> value_labels;    // per key: the value as YAML flow text
  std::size_t samples = 0;
  std::size_t eta = 3;
  std::size_t min_rounds = 10;
  std::size_t budget_runs = 200;
  double budget_wall_s = 0.0;
  std::size_t max_rounds = 0;  // the base scenario's rounds
  std::size_t eval_every = 1;  // and its evaluation period
};

// Reads and checks the study's `tune:` section (then every key of the file).
TuneSpec parse_tune(const Study& study);

// Runs the search; writes DIR/tune.csv, DIR/plots/tune_frontier.*, DIR/report.html;
// prints the chosen setting, its saving and the frontier to `out`.
void run_tune(const Study& study, const TuneSpec& spec, const SweepOptions& options, std::ostream& out);

}  // namespace fedsim
