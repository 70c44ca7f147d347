// Behaviour pinned byte for byte: a short version (12 rounds) of every shipped
// scenario, plus the scenarios under tests/golden/scenarios/ (FedBuff,
// over-selection, a bidirectional error-feedback / rotation / zstd pipeline),
// is run and its metrics.csv compared, column by column, with the file
// recorded under tests/golden/metrics/.
//
// A refactor that changes a number is not a refactor. Re-record a file only
// when a change is meant to move a number, and say why in the commit message:
//   FEDSIM_GOLDEN_RECORD=1 build/golden_test --gtest_filter='*name*'   (golden_torch_test for the
//   scenarios of the LibTorch models)
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
//
// A scenario can adapt its golden run with comment lines (so that the
// adaptation sits next to the scenario it is for):
//   # golden-set: key=value key=value ...   more overrides (after the ones
//       above), e.g. a subset of the data so that a CNN's run takes seconds
//   # golden-tolerance: 0.005               compare numeric cells within
//       this relative tolerance (absolute below 1) instead of exactly
//   # golden-skip: reason                   no golden run (the scenario's
//       behaviour is pinned by others; each run of a LibTorch scenario
//       loads LibTorch twice, about 2 s of CPU)
// The LibTorch scenarios (model cnn / torchscript; they run in
// golden_torch_test, this file built with FEDSIM_GOLDEN_TORCH, so that
// golden_test does not load LibTorch) use both: LibTorch picks
// its kernels for the CPU (oneDNN's JIT convolutions, ATen's AVX2 / AVX-512
// loops, their blocking by cache size), so main() also pins ATen to AVX2
// (ATEN_CPU_CAPABILITY) and oneDNN to AVX2 (ONEDNN_MAX_CPU_ISA); on the
// recording machine (AMD EPYC, AVX2) the files match exactly, elsewhere
// within the tolerance. Scenarios without these lines are compared exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/models/torch/torch_model_names.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

constexpr int kRounds = 12;

// golden_torch_test (this file built with FEDSIM_GOLDEN_TORCH) runs the
// scenarios of the LibTorch models, golden_test the others: only the former
// loads LibTorch.
#ifdef FEDSIM_GOLDEN_TORCH
constexpr bool kTorchGolden = true;
#else
constexpr bool kTorchGolden = false;
#endif

struct GoldenCase {
  std::string name;  // file stem under tests/golden/metrics/
  std::string scenario;
  std::vector<std::string> overrides;  // from "# golden-set:" lines
  double tolerance = 0.0;              // from "# golden-tolerance:", 0 = exact
  bool skip = false;                   // "# golden-skip:"
};

// Reads the scenario's "# golden-set:" and "# golden-tolerance:" lines.
void read_golden_directives(GoldenCase& c) {
  std::ifstream in(c.scenario);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string hash, directive, word;
    if (!(words >> hash >> directive) || hash != "#") continue;
    if (directive == "golden-set:") {
      while (words >> word) c.overrides.push_back(word);
    } else if (directive == "golden-tolerance:") {
      words >> c.tolerance;
    } else if (directive == "golden-skip:") {
      c.skip = true;
    }
  }
}

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
      // This executable's share: the LibTorch models' scenarios, or the others.
      const std::string model =
          Config::load_file(entry.path().string()).child("model").get_string("name", "softmax_regression");
      const bool uses_torch =
          std::find(kTorchModelNames.begin(), kTorchModelNames.end(), model) != kTorchModelNames.end();
      if (uses_torch != kTorchGolden) continue;
      GoldenCase c{name, entry.path().string(), {}, 0.0, false};
      read_golden_directives(c);
      if (!c.skip) out.push_back(c);
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

// Both cells numbers within the relative tolerance (absolute below 1).
bool within(const std::string& a, const std::string& b, double tolerance) {
  char* end_a = nullptr;
  char* end_b = nullptr;
  const double x = std::strtod(a.c_str(), &end_a);
  const double y = std::strtod(b.c_str(), &end_b);
  if (a.empty() || b.empty() || *end_a != '\0' || *end_b != '\0') return false;
  return std::abs(x - y) <= tolerance * std::max({1.0, std::abs(x), std::abs(y)});
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
  std::vector<std::string> overrides = {"rounds=" + std::to_string(kRounds), "eval_every=3", "output.progress=false",
                                        "threads=2"};
  overrides.insert(overrides.end(), c.overrides.begin(), c.overrides.end());
  const Scenario sc = load_scenario(c.scenario, overrides);
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
    for (std::size_t row = 0; row < a.size(); ++row) {
      if (c.tolerance > 0.0 && within(a[row], b[row], c.tolerance)) continue;
      EXPECT_EQ(a[row], b[row]) << c.name << ": column " << col << ", round row " << row + 1
                                << (c.tolerance > 0.0 ? " (beyond the tolerance)" : "");
    }
  }
  fs::remove_all(out_dir);
}

// A build's share may be empty (no scenario of a LibTorch model yet).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Golden);
INSTANTIATE_TEST_SUITE_P(Scenarios, Golden, ::testing::ValuesIn(golden_cases()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.name; });

}  // namespace
}  // namespace fedsim

int main(int argc, char** argv) {
  // OpenBLAS reads OPENBLAS_CORETYPE when it loads, before main: set it and start again.
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    setenv("OPENBLAS_CORETYPE", fedsim::kPinnedBlasCore, 1);
    // LibTorch's kernel choice (read on first use): see the top of this file.
    setenv("ATEN_CPU_CAPABILITY", "avx2", 0);
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 0);
    execv("/proc/self/exe", argv);  // returns only on failure: then run unpinned (and skip)
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
