// `fedsim sweep`: runs every configuration x seed of a study as its own
// `fedsim run` process, N at a time, and turns the results into tables,
// figures and a report.
//
// Output folder (DIR):
//   runs/<run id>/     a finished run: metrics.csv, metrics.jsonl, clients.csv, log.txt
//   runs.csv           tidy: one row per run and round (axis columns, seed, every metrics column,
//                      cumulative uplink/downlink bytes and joules)
//   summary.csv        one row per configuration: mean and 95% CI over seeds (tools/study_stats.h)
//   summary.md         the same as the printed table, in Markdown (mean ± CI)
//   study.json         the study's name, description, axes, seeds, targets, configurations
//   plots/             figures (tools/plot_study.py, matplotlib)
//   report.html        one self-contained page
//   sweep.log          one line per run started / finished, per invocation
//
// Resumable: a run is done when runs/<id>/ exists. A run executes in
// tmp/<id>/ with `--checkpoint-every K` (server/checkpoint.h) and is
// published by one rename(2) after it exited 0, so a sweep killed at any
// moment (SIGKILL to its process group included) loses only the rounds its
// runs in flight did since their last checkpoint: the same command run again
// continues each of them with `fedsim run --resume tmp/<id>` (a run without a
// checkpoint yet starts over). A lock on DIR/.lock keeps two sweeps out of
// one folder.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

#include <vector>

#include "tools/study.h"
#include "tools/study_stats.h"

namespace fedsim {

struct SweepOptions {
  std::string out_dir;
  std::size_t jobs = 1;      // runs in parallel
  std::string fedsim_exe;    // the executable that runs one scenario (`fedsim run`)
  bool progress = false;     // a progress bar on stderr
  bool plots = true;         // figures and report (needs python3 with matplotlib)
  std::size_t checkpoint_every = 10;  // rounds between a run's checkpoints; 0: none (runs in flight start over)
};

struct SweepCounts {
  std::size_t total = 0;
  std::size_t already_done = 0;  // found finished in runs/
  std::size_t executed = 0;      // run (to completion) by this invocation
  std::size_t resumed = 0;       // of those, continued from a checkpoint of an earlier invocation
};

// Holds DIR/.lock (flock) for its lifetime; throws InputError when another
// sweep or tune holds it.
class StudyLock {
 public:
  explicit StudyLock(const std::string& dir);
  ~StudyLock();
  StudyLock(const StudyLock&) = delete;
  StudyLock& operator=(const StudyLock&) = delete;

 private:
  int fd_ = -1;
};

// One `fedsim run`: its folder name under runs/, scenario file and --set list.
struct RunJob {
  std::string id;
  std::string scenario;
  std::vector<std::string> overrides;
};

// Executes the jobs whose runs/<id>/ does not exist yet, options.jobs at a
// time, each with threads = cores / jobs (results do not depend on it).
// `what` labels the progress bar. Throws std::runtime_error when a run fails
// (the end of its log quoted), after the runs in flight have finished.
SweepCounts execute_jobs(const std::vector<RunJob>& jobs, const SweepOptions& options, const std::string& what);
std::vector<RunJob> study_jobs(const Study& study);

struct TargetSummary {
  std::size_t reached = 0;  // seeds whose run reached the target
  MeanCi rounds, bytes_up, bytes_down, sim_time_s, energy_j;  // over those seeds
};

struct ConfigSummary {
  std::size_t seeds = 0;
  MeanCi final_accuracy, best_accuracy, final_test_loss, bytes_up, bytes_down, sim_time_s, energy_j;
  std::vector<TargetSummary> targets;  // one per study target
};

// Per configuration, from runs/<id>/metrics.csv (every run must be done).
std::vector<ConfigSummary> summarize_runs(const Study& study, const std::string& out_dir);
// runs.csv, summary.csv and study.json, each written atomically.
void write_study_tables(const Study& study, const std::vector<ConfigSummary>& summary, const std::string& out_dir);

// The tables, then plots/ and report.html when options.plots; prints the
// summary table to `out`.
void summarize_study(const Study& study, const SweepOptions& options, std::ostream& out);

}  // namespace fedsim
