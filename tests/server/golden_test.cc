// Behaviour pinned byte for byte: a short version (12 rounds) of every shipped
// scenario, plus the scenarios under tests/golden/scenarios/ (FedBuff,
// over-selection, a bidirectional error-feedback / rotation / zstd pipeline),
// is run and its metrics.csv compared, column by column, with the file
// recorded under tests/golden/metrics/.
//
// A refactor that changes a number is not a refactor. Re-record a file only
// when a change is meant to move a number, and say why in the commit message:
//   FEDSIM_GOLDEN_RECORD=1 build/golden_test --gtest_filter='*name*'
// New columns may appear (they are not in the recorded file); a recorded
// column that disappears or changes fails the test.
//
// CPU dependence: OpenBLAS picks its kernels for the CPU when it loads, and
// the model's matrix products round differently with kernels that lack FMA
// (OPENBLAS_CORETYPE=Sandybridge or Nehalem move every column of every
// file). The files hold the arithmetic of OpenBLAS's Haswell kernels (Zen's
// are the same; the AVX-512 ones were the same when tried), so main() below
// pins them: it re-runs this binary with OPENBLAS_CORETYPE=Haswell on a CPU
// with AVX2 and FMA. Elsewhere (or with another OPENBLAS_CORETYPE set) the
// comparison is skipped, saying why. Pinned, every column is compared exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "server/metrics.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

constexpr int kRounds = 12;

struct GoldenCase {
  std::string name;  // file stem under tests/golden/metrics/
  std::string scenario;
};

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> out;
  const fs::path root(FEDSIM_SOURCE_DIR);
  for (const fs::path& dir : {root / "scenarios", root / "tests/golden/scenarios"}) {
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (entry.path().extension() != ".yaml") continue;
      if (entry.path().parent_path().filename() == "studies") continue;  // study files, not scenarios
      std::string name = fs::relative(entry.path(), dir).replace_extension("").string();
      std::replace(name.begin(), name.end(), '/', '_');
      if (dir.filename() == "scenarios" && dir.parent_path().filename() == "golden") name = "extra_" + name;
      out.push_back({name, entry.path().string()});
    }
  }
  std::sort(out.begin(), out.end(), [](const GoldenCase& a, const GoldenCase& b) { return a.name < b.name; });
  return out;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

using Table = std::map<std::string, std::vector<std::string>>;  // column -> values by row

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, sep)) out.push_back(cell);
  if (!line.empty() && line.back() == sep) out.push_back("");
  return out;
}

Table parse_csv(const std::string& text, std::vector<std::string>* order = nullptr) {
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  const std::vector<std::string> header = split(line, ',');
  if (order) *order = header;
  Table t;
  for (const auto& h : header) t[h];
  while (std::getline(in, line)) {
    const auto cells = split(line, ',');
    for (std::size_t i = 0; i < header.size(); ++i) t[header[i]].push_back(i < cells.size() ? cells[i] : "<missing>");
  }
  return t;
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

constexpr const char* kPinnedBlasCore = "Haswell";

bool blas_pinned() {
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  return core != nullptr && std::strcmp(core, kPinnedBlasCore) == 0;
}

TEST_P(Golden, MetricsMatchRecordedFile) {
  if (!blas_pinned())
    GTEST_SKIP() << "the recorded files hold OpenBLAS's " << kPinnedBlasCore
                 << " kernels (AVX2 + FMA); this CPU lacks them or OPENBLAS_CORETYPE names another";
  const GoldenCase& c = GetParam();
  const fs::path out_dir = fs::temp_directory_path() / ("fedsim_golden_" + c.name);
  fs::remove_all(out_dir);
  const Scenario sc = load_scenario(
      c.scenario, {"rounds=" + std::to_string(kRounds), "eval_every=3", "output.progress=false", "threads=2"});
  Simulation sim(sc);
  {
    MetricsWriter writer(out_dir.string(), sim.population().class_names());
    sim.run([&](const RoundMetrics& m) { writer.write(m); });
  }
  const std::string got = read_file(out_dir / "metrics.csv");
  const fs::path recorded = fs::path(FEDSIM_SOURCE_DIR) / "tests/golden/metrics" / (c.name + ".csv");
  if (std::getenv("FEDSIM_GOLDEN_RECORD")) {
    fs::create_directories(recorded.parent_path());
    std::ofstream(recorded) << got;
    GTEST_SKIP() << "recorded " << recorded;
  }
  ASSERT_TRUE(fs::exists(recorded)) << recorded << " is missing: record it (see the top of this file)";
  std::vector<std::string> columns;
  const Table want = parse_csv(read_file(recorded), &columns);
  const Table have = parse_csv(got);
  for (const std::string& col : columns) {
    const auto it = have.find(col);
    ASSERT_NE(it, have.end()) << "column " << col << " disappeared";
    const auto& a = want.at(col);
    const auto& b = it->second;
    ASSERT_EQ(a.size(), b.size()) << "rows of column " << col;
    for (std::size_t row = 0; row < a.size(); ++row)
      EXPECT_EQ(a[row], b[row]) << c.name << ": column " << col << ", round row " << row + 1;
  }
  fs::remove_all(out_dir);
}

INSTANTIATE_TEST_SUITE_P(Scenarios, Golden, ::testing::ValuesIn(golden_cases()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.name; });

}  // namespace
}  // namespace fedsim

int main(int argc, char** argv) {
  // OpenBLAS reads OPENBLAS_CORETYPE when it loads, before main: set it and start again.
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    setenv("OPENBLAS_CORETYPE", fedsim::kPinnedBlasCore, 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then run unpinned (and skip)
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
