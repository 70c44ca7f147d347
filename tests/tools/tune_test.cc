// `fedsim tune` end to end on the generated problem of scenarios/synthetic_quick.yaml:
// the chosen setting is the cheapest finished one and matches a direct run,
// the run budget holds, a second invocation executes nothing, bad search
// values are named before any run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tools/study_stats.h"

namespace {

namespace fs = std::filesystem;
using fedsim::CsvTable;

const std::string kFedsim = std::string(FEDSIM_BINARY_DIR) + "/fedsim";

class Tune : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fedsim_tune_test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path study(const std::string& tune_section) {
    const fs::path file = dir_ / "tune.yaml";
    std::ofstream(file) << "scenario: " << FEDSIM_SOURCE_DIR << "/scenarios/synthetic_quick.yaml\n"
                        << "set: {data.separation: 1.5}\nseeds: [1, 2]\ntune:\n"
                        << tune_section;
    return file;
  }
  int tune(const fs::path& file, const std::string& out_name, std::string* output = nullptr) {
    const fs::path out = dir_ / out_name;
    const std::string cmd = kFedsim + " tune " + file.string() + " --jobs 2 --no-plots --out " + out.string() + " >" +
                            (dir_ / "stdout").string() + " 2>&1";
    const int status = std::system(cmd.c_str());
    if (output) {
      std::ifstream in(dir_ / "stdout");
      std::stringstream s;
      s << in.rdbuf();
      *output = s.str();
    }
    return WEXITSTATUS(status);
  }
  fs::path dir_;
};

const char* const kSearch =
    "  minimise: energy_j\n  target: 0.6\n  eta: 2\n  min_rounds: 2\n"
    "  search:\n    local_steps: [1, 3, 10]\n    batch_size: [4, 32]\n";

TEST_F(Tune, ChoosesTheCheapestFinishedSettingAndMatchesADirectRun) {
  std::string output;
  ASSERT_EQ(tune(study(kSearch), "a", &output), 0) << output;
  const CsvTable t = fedsim::read_csv((dir_ / "a" / "tune.csv").string());
  const std::size_t status = t.column("status", ""), metric = t.column("metric_to_target_mean", ""),
                    name = t.column("candidate", ""), steps = t.column("local_steps", ""),
                    batch = t.column("batch_size", ""), rounds = t.column("rounds", "");
  ASSERT_EQ(t.rows.size(), 6u + 1u);  // the grid, then the base
  EXPECT_EQ(t.rows.back()[name], "base");
  const std::vector<std::string>* chosen = nullptr;
  for (const auto& row : t.rows)
    if (row[status] == "chosen") chosen = &row;
  ASSERT_NE(chosen, nullptr) << output;
  for (const auto& row : t.rows) {
    if (row[status] == "finished") EXPECT_LE(std::stod((*chosen)[metric]), std::stod(row[metric])) << row[name];
  }
  EXPECT_NE(output.find("chosen: local_steps = " + (*chosen)[steps] + ", batch_size = " + (*chosen)[batch]),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("saving against the base"), std::string::npos) << output;

  // The oracle is the simulator: the same setting run directly costs the same
  // joules to the target on seed 1.
  const fs::path direct = dir_ / "direct";
  const std::string cmd = kFedsim + " run " + FEDSIM_SOURCE_DIR + "/scenarios/synthetic_quick.yaml --quiet --out " +
                          direct.string() + " --set data.separation=1.5 --set seed=1 --set local_steps=" +
                          (*chosen)[steps] + " --set batch_size=" + (*chosen)[batch] + " --set rounds=" + (*chosen)[rounds];
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const fedsim::RunFigures f =
      fedsim::run_figures(fedsim::read_csv((direct / "metrics.csv").string()), {0.6}, "direct");
  ASSERT_TRUE(f.to_target[0].has_value());
  const fedsim::RunFigures seed1 = fedsim::run_figures(
      fedsim::read_csv((dir_ / "a" / "runs" / ((*chosen)[name] + ";rounds=" + (*chosen)[rounds] + ";seed=1") / "metrics.csv")
                           .string()),
      {0.6}, "seed1");
  EXPECT_EQ(f.to_target[0]->energy_j, seed1.to_target[0]->energy_j);

  // Run again: every run is found done; nothing executes; the same table.
  const std::string first = [&] {
    std::ifstream in(dir_ / "a" / "tune.csv");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }();
  ASSERT_EQ(tune(study(kSearch), "a"), 0);
  // Each run began exactly once over both invocations.
  std::ifstream log(dir_ / "a" / "sweep.log");
  std::size_t begins = 0;
  for (std::string line; std::getline(log, line);) begins += line.rfind("begin ", 0) == 0;
  EXPECT_EQ(begins, static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_ / "a" / "runs"),
                                                           fs::directory_iterator())));
  std::ifstream again(dir_ / "a" / "tune.csv");
  std::stringstream s;
  s << again.rdbuf();
  EXPECT_EQ(s.str(), first);
}

TEST_F(Tune, TheRunBudgetHolds) {
  // 6 candidates x 2 seeds = 12 runs at the first rung; a budget of 8 runs
  // evaluates 4 of them and stops the rest.
  ASSERT_EQ(tune(study(std::string(kSearch) + "  budget_runs: 8\n"), "b"), 0);
  const CsvTable t = fedsim::read_csv((dir_ / "b" / "tune.csv").string());
  EXPECT_EQ(t.rows.size(), 4u + 1u);
  std::size_t runs = 0;
  for (const auto& entry : fs::directory_iterator(dir_ / "b" / "runs"))
    runs += entry.path().filename().string().rfind("base;", 0) != 0;
  EXPECT_LE(runs, 8u);
}

TEST_F(Tune, BadSearchValuesAreNamedBeforeAnyRun) {
  std::string output;
  EXPECT_EQ(tune(study("  target: 0.6\n  search:\n    local_steps: [2, -1]\n"), "c", &output), 2);
  EXPECT_NE(output.find("tune.search.local_steps: value -1: "), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir_ / "c" / "runs"));
  EXPECT_EQ(tune(study("  target: 0.6\n  search: {local_steps: [1]}\n  minimize: energy_j\n"), "d", &output), 2);
  EXPECT_NE(output.find("tune.minimize: unknown key"), std::string::npos) << output;
  EXPECT_EQ(tune(study("  target: 1.6\n  search: {local_steps: [1]}\n"), "e", &output), 2);
  EXPECT_NE(output.find("tune.target: expected"), std::string::npos) << output;
}

}  // namespace
