// fedsim calibrate: its profile loads under `profiles:`; with joules unknown
// (no RAPL) a scenario using it is refused with an InputError naming the key;
// with the joules filled in, a scenario runs on it and is billed at the
// measured rates. And fedsim bench kernels prints a row per precision and path,
// and one per precision for softmax regression and the MLP.
#include "tools/calibrate.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "clients/device_profile.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/models/model.h"
#include "server/scenario.h"
#include "server/simulation.h"
#include "tools/bench_kernels.h"

namespace fedsim {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

const char* kScenario =
    "data: {source: synthetic_regression, train_samples: 200, test_samples: 50, dim: 10}\n"
    "model: {name: linear_regression}\n"
    "clients: 2\nclients_per_round: 2\nlocal_steps: 2\nbatch_size: 8\nlearning_rate: 0.05\n"
    "rounds: 2\noutput: {progress: false}\n"
    "population: [{name: a, fraction: 1.0, profile: host, precision: int4}]\n";

TEST(Calibrate, ProfileLoadsIsRefusedWhileJoulesAreUnknownAndRunsOnceFilledIn) {
  const std::string dir = ::testing::TempDir() + "/calibrate_test";
  std::filesystem::create_directories(dir);
  CalibrateSettings settings;
  settings.out = dir + "/profile.yaml";
  settings.name = "host";
  settings.seconds = 0.02;
  settings.samples = 256;
  settings.rapl_root = dir + "/no-powercap";  // no RAPL: joules unknown
  std::ostringstream log;
  ASSERT_EQ(run_calibrate(log, settings), 0);
  const std::string text = slurp(settings.out);
  ASSERT_NE(text.find("joules_per_mac: {fp32: unknown"), std::string::npos) << text;

  // It loads as a profiles map, but the unknown joules are refused by key.
  const Config loaded = Config::load_file(settings.out);
  const Config host = loaded.child("profiles").child("host");
  for (const char* p : {"fp32", "int8", "int4", "int2"}) {
    const double rate = host.child("macs_per_s").get_double(p, 0.0, 1e18);
    EXPECT_GT(rate, 1e6) << p;  // any CPU of this century does 1 M MAC/s
  }
  try {
    ProfileCatalog catalog(loaded.child("profiles"));
    FAIL() << "a profile with unknown joules was accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("profile.yaml"), std::string::npos) << what;
    EXPECT_NE(what.find("joules_per_mac"), std::string::npos) << what;
    EXPECT_NE(what.find("'unknown'"), std::string::npos) << what;
  }
  try {
    const Scenario sc = parse_scenario(text + kScenario, "s.yaml", {});
    Simulation sim(sc);
    FAIL() << "a scenario ran on a profile with unknown joules";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'unknown'"), std::string::npos) << e.what();
  }

  // Joules filled in: the scenario runs, billed at the calibrated int4 rate.
  std::string filled = replace_all(text, "unknown", "2e-10");
  const Scenario sc = parse_scenario(filled + kScenario, "s.yaml", {});
  Simulation sim(sc);
  const RunSummary run = sim.run();
  ASSERT_EQ(run.rounds.size(), 2u);
  // 2 clients x 2 steps x 8 samples x 3 (d + 1) MACs (double sampling) x 2e-10 J per round.
  for (const RoundMetrics& m : run.rounds) EXPECT_NEAR(m.energy.compute_j, 2 * 2 * 8 * 33 * 2e-10, 1e-15);
  EXPECT_GT(run.energy_j, 0.0);
}

TEST(Calibrate, RaplCountersOfPackagesAreSummed) {
  const std::string root = ::testing::TempDir() + "/calibrate_rapl";
  std::filesystem::remove_all(root);
  EXPECT_FALSE(read_rapl_uj(root).has_value());
  for (const auto& [name, value] : {std::pair{"intel-rapl:0", 1000}, {"intel-rapl:1", 250}, {"intel-rapl:0:0", 77}}) {
    std::filesystem::create_directories(root + "/" + name);
    std::ofstream(root + "/" + name + "/energy_uj") << value << "\n";
  }
  ASSERT_TRUE(read_rapl_uj(root).has_value());
  EXPECT_EQ(*read_rapl_uj(root), 1250.0);  // packages only, the subdomain is part of its package
}

TEST(BenchKernels, PrintsEveryPrecisionOnEveryPathWithFewerBytesBelowFp32) {
  const KernelBenchData data = make_kernel_bench_data(64);
  const EpochMeasurement fp32 = measure_epochs(data, Precision::kFp32, simd::Isa::kBaseline, 0.0);
  double last = fp32.bytes_per_epoch;
  for (Precision p : {Precision::kInt8, Precision::kInt4, Precision::kInt2}) {
    const EpochMeasurement m = measure_epochs(data, p, simd::best_isa(), 0.0);
    EXPECT_LT(m.bytes_per_epoch, last) << precision_name(p);
    EXPECT_GT(m.samples_per_s, 0.0);
    last = m.bytes_per_epoch;
  }
  KernelBenchSettings settings;
  settings.samples = 64;
  settings.seconds = 0.001;
  std::ostringstream out;
  ASSERT_EQ(run_kernel_bench(out, settings), 0);
  EXPECT_NE(out.str().find("baseline    int2"), std::string::npos) << out.str();
  // The model rows: every precision of both models, with positive figures
  // (MB / epoch, its ratio, samples/s, its ratio, GMAC/s).
  for (const std::string model : {"softmax 784-10", "mlp 784-200-10"}) {
    std::size_t rows = 0;
    std::istringstream lines(out.str());
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(model + " ", 0) != 0) continue;
      std::istringstream fields(line.substr(model.size()));
      std::string precision, mb_ratio, rate_ratio;
      double mb = 0.0, rate = 0.0, gmacs = 0.0;
      ASSERT_TRUE(fields >> precision >> mb >> mb_ratio >> rate >> rate_ratio >> gmacs) << line;
      if (rows < kNumPrecisions) {
        EXPECT_EQ(precision, precision_name(kAllPrecisions[rows])) << line;
      }
      EXPECT_GT(mb, 0.0) << line;
      EXPECT_GT(std::stod(mb_ratio), 0.0) << line;
      EXPECT_GT(rate, 0.0) << line;
      EXPECT_GT(std::stod(rate_ratio), 0.0) << line;
      EXPECT_GT(gmacs, 0.0) << line;
      ++rows;
    }
    EXPECT_EQ(rows, kNumPrecisions) << model << "\n" << out.str();
  }
}

TEST(BenchKernels, ModelStepsReadFewerBytesAtFewerBits) {
  const KernelBenchData data = make_kernel_bench_data(64);
  const Dataset dataset = kernel_bench_dataset(data);
  ASSERT_EQ(dataset.size(), 64u);
  ASSERT_EQ(dataset.dim(), 784u);
  for (const char* name : {"softmax_regression", "mlp"}) {
    const Config config = Config::parse_string(std::string("name: ") + name + "\n");
    const auto model = ModelRegistry::instance().create("test", name, config, ModelInput{784, 10});
    double last = 0.0;
    for (Precision p : kAllPrecisions) {
      const EpochMeasurement m = measure_model_epochs(*model, dataset, p, 0.0);
      if (p != Precision::kFp32) {
        EXPECT_LT(m.bytes_per_epoch, last) << name << " " << precision_name(p);
      }
      EXPECT_GT(m.samples_per_s, 0.0) << name << " " << precision_name(p);
      EXPECT_EQ(m.macs_per_sample, model->macs_per_sample());
      last = m.bytes_per_epoch;
    }
  }
}

}  // namespace
}  // namespace fedsim
