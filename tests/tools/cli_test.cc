// The command line: exit codes, messages, and the files `run --out` writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tools/cli.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

int cli(std::vector<std::string> args) {
  args.insert(args.begin(), "fedsim");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return cli_main(static_cast<int>(argv.size()), argv.data());
}

std::string first_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

std::size_t count_lines(const fs::path& file) {
  std::ifstream in(file);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

fs::path write_scenario(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_cli_test";
  fs::create_directories(dir);
  const fs::path file = dir / name;
  std::ofstream(file) << text;
  return file;
}

const char* kTiny =
    "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 8, classes: 3}\n"
    "clients: 12\nclients_per_round: 4\nrounds: 5\neval_every: 2\nthreads: 1\n"
    "population:\n"
    "  - {name: phones, fraction: 0.5, profile: phone_cpu}\n"
    "  - {name: boards, fraction: 0.5, profile: edge_fpga, precision: int8}\n";

TEST(Cli, BadInputExitsWithTwoAndNamesTheProblem) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"run", "/nonexistent/s.yaml"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("/nonexistent/s.yaml: cannot open scenario file"),
            std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"frobnicate"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("unknown command 'frobnicate'"), std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"run", write_scenario("a.yaml", kTiny).string(), "--set", "rounds"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("expected key=value"), std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"run", write_scenario("b.yaml", kTiny).string(), "--bogus"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("not expected: --bogus"), std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"bench", "server", "--clients", "-5"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("--clients: Value -5 not in range 1"),
            std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("Usage: fedsim"), std::string::npos);
}

TEST(Cli, EverySubcommandHasHelpAndThereIsAVersion) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--help"}, {"run", "--help"}, {"validate", "--help"}, {"list", "--help"}, {"sweep", "--help"},
           {"tune", "--help"}, {"bench", "--help"}, {"bench", "server", "--help"}}) {
    testing::internal::CaptureStdout();
    EXPECT_EQ(cli(args), 0) << args[0];
    EXPECT_NE(testing::internal::GetCapturedStdout().find("Usage: fedsim"), std::string::npos) << args[0];
  }
  testing::internal::CaptureStdout();
  EXPECT_EQ(cli({"--version"}), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout().rfind("fedsim ", 0), 0u);
}

TEST(Cli, ValidateAndListSucceed) {
  testing::internal::CaptureStdout();
  EXPECT_EQ(cli({"validate", write_scenario("v.yaml", kTiny).string()}), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("ok (12 clients in 2 class(es)"), std::string::npos);
  testing::internal::CaptureStdout();
  EXPECT_EQ(cli({"list"}), 0);
  const std::string list = testing::internal::GetCapturedStdout();
  for (const char* name : {"softmax_regression", "mlp", "fashion_mnist", "dirichlet", "qsgd", "natural",
                           "predictive_coding", "fedvote_binary", "vote", "edge_fpga", "round policies (server.policy)",
                           "algorithms (algorithm.name)", "over_selection", "async", "fedpaq", "fedvote ",
                           "attacks (population[].attack.name)", "little_is_enough", "label_flip", "krum",
                           "norm_clipping"})
    EXPECT_NE(list.find(name), std::string::npos) << name;
}

TEST(Cli, RunWritesMetricsAndClientFiles) {
  const fs::path out = fs::temp_directory_path() / "fedsim_cli_test" / "out";
  fs::remove_all(out);
  testing::internal::CaptureStdout();
  EXPECT_EQ(cli({"run", write_scenario("r.yaml", kTiny).string(), "--out", out.string(), "--set", "rounds=4"}), 0);
  const std::string summary = testing::internal::GetCapturedStdout();
  EXPECT_NE(summary.find("final accuracy"), std::string::npos) << summary;
  ASSERT_TRUE(fs::exists(out / "metrics.csv"));
  EXPECT_EQ(first_line(out / "metrics.csv").rfind("round,sim_time_s,test_accuracy,test_loss,train_loss,bytes_up,"
                                                  "bytes_down,clients,",
                                                  0),
            0u);
  EXPECT_NE(first_line(out / "metrics.csv").find("energy_j_phones,energy_j_boards"), std::string::npos);
  EXPECT_EQ(count_lines(out / "metrics.csv"), 1u + 4u);  // --set rounds=4 took effect
  EXPECT_EQ(count_lines(out / "metrics.jsonl"), 4u);
  // One row per client that took part: 10 of the 12 in these 4 rounds.
  EXPECT_EQ(count_lines(out / "clients.csv"), 1u + 10u);
}

TEST(Cli, OverrideErrorNamesTheOption) {
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"validate", write_scenario("o.yaml", kTiny).string(), "--set", "foo.bar=1"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find(
                "--set foo.bar=1: foo: unknown key (not part of the schema; see the README's scenario table)"),
            std::string::npos);
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli({"run", write_scenario("o.yaml", kTiny).string(), "--set", "rounds=abc"}), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("--set rounds=abc: rounds: expected an integer, found 'abc'"),
            std::string::npos);
}

TEST(Cli, DivergedLossFitsItsColumn) {
  // Learning rates of 1e6 on both ends: the weights and the test loss grow to
  // about 1e13 but stay finite, so the run completes and prints its table.
  testing::internal::CaptureStdout();
  EXPECT_EQ(cli({"run", write_scenario("d.yaml", kTiny).string(), "--set", "learning_rate=1e6", "--set",
                 "server_learning_rate=1e6"}),
            0);
  const std::string summary = testing::internal::GetCapturedStdout();
  std::istringstream lines(summary);
  std::string line;
  while (std::getline(lines, line) && line.find("test_loss") == std::string::npos) {
  }
  ASSERT_FALSE(line.empty()) << summary;
  // Columns right-aligned in widths 7, 12, 10, 11, 12, 12, 12: a cell that
  // fits leaves the first character of its column blank.
  const std::vector<std::size_t> starts{0, 7, 19, 29, 40, 52, 64};
  std::size_t rows = 0;
  double largest_loss = 0.0;
  while (std::getline(lines, line) && !line.empty()) {
    ++rows;
    EXPECT_EQ(line.size(), 76u) << line;
    for (std::size_t start : starts) EXPECT_EQ(line.substr(start, 1), " ") << start << " in: " << line;
    largest_loss = std::max(largest_loss, std::stod(line.substr(29, 11)));
  }
  EXPECT_EQ(rows, 3u) << summary;  // rounds 2, 4 and the last
  EXPECT_GT(largest_loss, 1e6) << summary;  // so large that a fixed 4-decimal cell would not fit
}

}  // namespace
}  // namespace fedsim
