// `fedsim sweep` end to end on scenarios/studies/smoke.yaml (12 runs of a
// second): the same CSVs with --jobs 1 and 2; a sweep killed (its whole
// process group) and run again gives the same CSVs without executing a
// finished run twice, continuing the run in flight from its checkpoint;
// summary.csv recomputed here from runs.csv.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

const std::string kFedsim = std::string(FEDSIM_BINARY_DIR) + "/fedsim";
const std::string kSmoke = std::string(FEDSIM_SOURCE_DIR) + "/scenarios/studies/smoke.yaml";

fs::path fresh_dir(const std::string& name) {
  // Per process: ctest runs each test in a process of its own, maybe in parallel.
  const fs::path dir = fs::temp_directory_path() / "fedsim_sweep_test" / (name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  return dir;
}

// Starts `fedsim sweep` as the leader of a new process group.
pid_t start_sweep(const fs::path& out, int jobs, bool plots, const char* checkpoint_every = nullptr) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    const std::string out_s = out.string(), jobs_s = std::to_string(jobs);
    std::vector<const char*> argv{kFedsim.c_str(), "sweep", kSmoke.c_str(), "--out", out_s.c_str(), "--jobs",
                                  jobs_s.c_str(), "--quiet"};
    if (!plots) argv.push_back("--no-plots");
    if (checkpoint_every) argv.insert(argv.end(), {"--checkpoint-every", checkpoint_every});
    argv.push_back(nullptr);
    execv(argv[0], const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: no race with the kill below
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int sweep(const fs::path& out, int jobs, bool plots = false, const char* checkpoint_every = nullptr) {
  return wait_for(start_sweep(out, jobs, plots, checkpoint_every));
}

std::string read(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream s(line);
  for (std::string cell; std::getline(s, cell, ',');) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

// The first reference run, shared by the tests below (with figures).
const fs::path& reference() {
  static const fs::path dir = [] {
    const fs::path d = fresh_dir("reference");
    EXPECT_EQ(sweep(d, 2, true), 0);
    return d;
  }();
  return dir;
}

TEST(Sweep, SameResultsWithOneOrTwoJobs) {
  const fs::path one = fresh_dir("jobs1");
  ASSERT_EQ(sweep(one, 1, true), 0);
  ASSERT_TRUE(fs::exists(reference() / "runs.csv"));
  EXPECT_EQ(lines_of(one / "runs.csv").size(), 1u + 12u * 20u);  // 12 runs of 20 rounds
  for (const char* f : {"runs.csv", "summary.csv", "study.json"})
    EXPECT_EQ(read(one / f), read(reference() / f)) << f;
  // Figures and report are deterministic too (no dates, no versions).
  for (const auto& entry : fs::directory_iterator(reference() / "plots"))
    EXPECT_EQ(read(entry.path()), read(one / "plots" / entry.path().filename())) << entry.path();
  EXPECT_EQ(read(one / "report.html"), read(reference() / "report.html"));
  EXPECT_TRUE(fs::is_empty(one / "tmp"));
}

TEST(Sweep, KilledAndRunAgainLosesAndRepeatsNothing) {
  const fs::path dir = fresh_dir("killed");
  const pid_t pid = start_sweep(dir, 1, false, "1");
  // Kill the whole group once a few runs are published and the run in flight
  // has written a checkpoint.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::size_t published = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    published = fs::exists(dir / "runs") ? static_cast<std::size_t>(std::distance(
                                               fs::directory_iterator(dir / "runs"), fs::directory_iterator()))
                                         : 0;
    bool checkpointed = false;
    if (published >= 4 && fs::exists(dir / "tmp"))
      for (const auto& entry : fs::directory_iterator(dir / "tmp"))
        checkpointed = checkpointed || fs::exists(entry.path() / "checkpoint.bin");
    if (checkpointed) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(published, 4u) << "the sweep published too few runs in 120 s";
  ASSERT_EQ(kill(-pid, SIGKILL), 0);
  ASSERT_EQ(wait_for(pid), 128 + SIGKILL);
  std::set<std::string> done_before;
  for (const auto& entry : fs::directory_iterator(dir / "runs")) done_before.insert(entry.path().filename().string());
  ASSERT_LT(done_before.size(), 12u) << "killed too late to test anything";

  ASSERT_EQ(sweep(dir, 2, false, "1"), 0);
  // The second invocation begins only runs that were not published, and
  // continues the one in flight from its checkpoint.
  const std::vector<std::string> log = lines_of(dir / "sweep.log");
  std::size_t second_start = 0;
  for (std::size_t i = 0; i < log.size(); ++i)
    if (log[i].rfind("start ", 0) == 0) second_start = i;
  std::size_t begun = 0, resumed = 0;
  for (std::size_t i = second_start; i < log.size(); ++i) {
    const bool resume = log[i].rfind("resume ", 0) == 0;
    if (log[i].rfind("begin ", 0) != 0 && !resume) continue;
    ++(resume ? resumed : begun);
    EXPECT_EQ(done_before.count(log[i].substr(resume ? 7 : 6)), 0u) << "ran again: " << log[i];
  }
  EXPECT_EQ(resumed, 1u);
  EXPECT_EQ(begun + resumed, 12u - done_before.size());
  // Every run completed exactly once over both invocations.
  std::map<std::string, int> completions;
  for (const std::string& line : log)
    if (line.rfind("done ", 0) == 0) ++completions[line.substr(5)];
  for (const auto& [id, n] : completions) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "runs"), fs::directory_iterator()), 12);
  for (const char* f : {"runs.csv", "summary.csv"}) EXPECT_EQ(read(dir / f), read(reference() / f)) << f;
}

TEST(Sweep, SummaryRecomputedFromRunsCsv) {
  // Independent of tools/study_stats: final accuracy and rounds to target
  // per (configuration, seed) from runs.csv, then mean and t-interval with
  // t_{0.975, 2} = 4.302652730 for three seeds.
  const std::vector<std::string> runs = lines_of(reference() / "runs.csv");
  const std::vector<std::string> header = split(runs[0]);
  auto col = [&](const std::string& name) {
    return static_cast<std::size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  const std::size_t config = col("config"), seed = col("seed"), round = col("round"), acc = col("test_accuracy"),
                    loss = col("test_loss");
  ASSERT_LT(loss, header.size());
  std::map<std::string, std::map<std::string, double>> final_acc, final_loss, rounds_to_07;
  for (std::size_t i = 1; i < runs.size(); ++i) {
    const std::vector<std::string> c = split(runs[i]);
    if (c[acc].empty()) continue;
    const double a = std::stod(c[acc]);
    final_acc[c[config]][c[seed]] = a;
    final_loss[c[config]][c[seed]] = std::stod(c[loss]);
    if (a >= 0.7 && !rounds_to_07[c[config]].count(c[seed])) rounds_to_07[c[config]][c[seed]] = std::stod(c[round]);
  }
  auto stats = [](const std::map<std::string, double>& v) {
    double mean = 0.0, ss = 0.0;
    for (const auto& [k, x] : v) mean += x / double(v.size());
    for (const auto& [k, x] : v) ss += (x - mean) * (x - mean);
    return std::pair{mean, 4.302652730 * std::sqrt(ss / double(v.size() - 1)) / std::sqrt(double(v.size()))};
  };
  const std::vector<std::string> summary = lines_of(reference() / "summary.csv");
  const std::vector<std::string> sh = split(summary[0]);
  auto scol = [&](const std::string& name) {
    return static_cast<std::size_t>(std::find(sh.begin(), sh.end(), name) - sh.begin());
  };
  ASSERT_EQ(summary.size(), 1u + 4u);
  for (std::size_t i = 1; i < summary.size(); ++i) {
    const std::vector<std::string> c = split(summary[i]);
    const auto& label = c[scol("config")];
    ASSERT_EQ(final_acc[label].size(), 3u) << label;
    const auto [mean, ci] = stats(final_acc[label]);
    EXPECT_NEAR(std::stod(c[scol("final_accuracy_mean")]), mean, 1e-9) << label;
    EXPECT_NEAR(std::stod(c[scol("final_accuracy_ci95")]), ci, 1e-8) << label;
    const auto [loss_mean, loss_ci] = stats(final_loss[label]);
    EXPECT_NEAR(std::stod(c[scol("final_test_loss_mean")]), loss_mean, 1e-8 * loss_mean) << label;
    EXPECT_NEAR(std::stod(c[scol("final_test_loss_ci95")]), loss_ci, 1e-7 * loss_mean) << label;
    EXPECT_EQ(std::stoul(c[scol("reached_0.7")]), rounds_to_07[label].size()) << label;
    if (rounds_to_07[label].size() >= 2) {
      const auto [rmean, rci] = stats(rounds_to_07[label]);
      EXPECT_NEAR(std::stod(c[scol("rounds_to_0.7_mean")]), rmean, 1e-9) << label;
      if (rounds_to_07[label].size() == 3) {
        EXPECT_NEAR(std::stod(c[scol("rounds_to_0.7_ci95")]), rci, 1e-8) << label;
      }
    }
  }
}

TEST(Sweep, BadStudyFailsBeforeAnyRun) {
  const fs::path dir = fresh_dir("bad");
  const fs::path study = dir.parent_path() / ("bad_study-" + std::to_string(getpid()) + ".yaml");
  std::ofstream(study) << "scenario: " << FEDSIM_SOURCE_DIR << "/scenarios/synthetic_quick.yaml\nseeds: [1]\n"
                       << "axes:\n  lr: {key: learning_rate, values: [0.1, -2]}\n";
  const std::string cmd = kFedsim + " sweep " + study.string() + " --out " + dir.string() + " 2>" +
                          (dir.parent_path() / "bad.err").string();
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 2);
  EXPECT_NE(read(dir.parent_path() / "bad.err").find(study.filename().string() + ": axis 'lr', value '-2': "), std::string::npos)
      << read(dir.parent_path() / "bad.err");
  EXPECT_FALSE(fs::exists(dir / "runs"));
}

}  // namespace
