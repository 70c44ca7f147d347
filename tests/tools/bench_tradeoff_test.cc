// `fedsim bench tradeoff`: the table and CSV, and the rate-distortion bound:
// on the Gaussian source no quantizer setting may beat D(R) = 2^(-2R).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tools/bench_tradeoff.h"
#include "tools/cli.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

struct Row {
  std::string family;
  double bits = 0, distortion = 0;
};

std::vector<Row> read_csv(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "source,family,setting,bits_per_coord,distortion");
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    // source,"family",setting,bits,distortion
    const auto q1 = line.find('"'), q2 = line.find('"', q1 + 1);
    Row r;
    r.family = line.substr(q1 + 1, q2 - q1 - 1);
    std::stringstream rest(line.substr(q2 + 2));
    std::string setting, bits, distortion;
    std::getline(rest, setting, ',');
    std::getline(rest, bits, ',');
    std::getline(rest, distortion, ',');
    r.bits = std::stod(bits);
    r.distortion = std::stod(distortion);
    rows.push_back(r);
  }
  return rows;
}

TEST(BenchTradeoff, NoSchemeBeatsTheGaussianRateDistortionFunction) {
  TradeoffSettings s;
  s.n = 4096;
  s.vectors = 2;
  s.plot = false;
  s.out_dir = (fs::temp_directory_path() / "fedsim_tradeoff_test").string();
  std::ostringstream out;
  ASSERT_EQ(run_tradeoff_bench(out, s), 0);
  const auto rows = read_csv(fs::path(s.out_dir) / "tradeoff.csv");
  std::set<std::string> families;
  for (const Row& r : rows) {
    families.insert(r.family);
    EXPECT_GT(r.bits, 0.0) << r.family;
    EXPECT_GE(r.distortion, std::pow(2.0, -2.0 * r.bits)) << r.family << " at " << r.bits << " bits";
  }
  for (const char* f : {"subspace nearest (biased)", "wyner_ziv", "powersgd (biased, one shot)", "dgc (biased, one shot)",
                        "qsgd (d=512, fixed)"})
    EXPECT_TRUE(families.count(f)) << f;
  EXPECT_NE(out.str().find("gap to D(R)"), std::string::npos);
}

TEST(BenchTradeoff, BadSourceIsBadInput) {
  std::vector<std::string> args{"fedsim", "bench", "tradeoff", "--source", "uniform", "--no-plot"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli_main(static_cast<int>(argv.size()), argv.data()), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("expected gaussian, laplace or updates:SCENARIO, found 'uniform'"),
            std::string::npos);
}

TEST(BenchTradeoff, CapturesRealUpdatesOfAScenario) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_tradeoff_updates";
  fs::create_directories(dir);
  const fs::path scenario = dir / "tiny.yaml";
  std::ofstream(scenario) << "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 16,"
                             " classes: 4}\nmodel: {name: mlp, hidden: [8]}\nclients: 10\nclients_per_round: 3\n"
                             "rounds: 5\nlocal_steps: 3\n";
  TradeoffSettings s;
  s.source = "updates:" + scenario.string();
  s.rounds = 4;
  s.plot = false;
  s.out_dir = dir.string();
  std::ostringstream out;
  ASSERT_EQ(run_tradeoff_bench(out, s), 0);
  EXPECT_NE(out.str().find("12 vectors of 172 coordinates"), std::string::npos) << out.str();
  const auto rows = read_csv(dir / "tradeoff.csv");
  EXPECT_GT(rows.size(), 40u);
}

}  // namespace
}  // namespace fedsim
