// Study files (tools/study.h) and their statistics (tools/study_stats.h):
// grid expansion, bad input named before any run, Student t intervals, and
// "time to target" counted at the first evaluated round at or above it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/base/errors.h"
#include "tools/study.h"
#include "tools/study_stats.h"
#include "tools/tune.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

const std::string kScenario = std::string(FEDSIM_SOURCE_DIR) + "/scenarios/synthetic_quick.yaml";

std::string study_text(const std::string& rest) { return "scenario: " + kScenario + "\nseeds: [1, 2]\n" + rest; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Study, GridIsTheProductFirstAxisSlowest) {
  const Study s = parse_study(study_text("targets: [0.5]\nset: {rounds: 4}\naxes:\n"
                                         "  uplink:\n"
                                         "    f32: {uplink: [float32]}\n"
                                         "    q4: {uplink: [{qsgd: {levels: 7}}], downlink: [float32]}\n"
                                         "  local_steps: {key: local_steps, values: [1, 3, 9]}\n"),
                              "/tmp/s.yaml", {"eval_every=2"});
  ASSERT_EQ(s.configs.size(), 6u);
  EXPECT_EQ(s.configs[0].label, "uplink=f32;local_steps=1");
  EXPECT_EQ(s.configs[2].label, "uplink=f32;local_steps=9");
  EXPECT_EQ(s.configs[3].label, "uplink=q4;local_steps=1");
  EXPECT_EQ(s.configs[3].axis_labels, (std::vector<std::string>{"q4", "1"}));
  // The study's set, the command line's, then the axis values' overrides.
  EXPECT_EQ(s.configs[4].overrides, (std::vector<std::string>{"rounds=4", "eval_every=2", "uplink=[{qsgd: {levels: 7}}]",
                                                              "downlink=[float32]", "local_steps=3"}));
  ASSERT_EQ(s.runs.size(), 12u);
  EXPECT_EQ(s.runs[1].id, "uplink=f32;local_steps=1;seed=2");
  EXPECT_EQ(s.runs[11].config, 5u);
  EXPECT_EQ(s.run_overrides(s.runs[1]).back(), "seed=2");
  EXPECT_EQ(s.name, "s");
  EXPECT_EQ(s.scenario, kScenario);
}

TEST(Study, NoAxesIsOneConfigurationAndSeedsCanBeACount) {
  const Study s = parse_study("scenario: x.yaml\nseeds: 4\n", "/a/b/s.yaml");
  ASSERT_EQ(s.configs.size(), 1u);
  EXPECT_EQ(s.configs[0].label, "base");
  EXPECT_EQ(s.seeds, (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(s.scenario, "/a/b/x.yaml");  // relative to the study file
}

TEST(Study, AnAxisValueCanNameAnotherScenario) {
  const Study s = parse_study(study_text("axes:\n  scheme:\n    a: {}\n    b: {scenario: other.yaml, rounds: 3}\n"),
                              "/x/s.yaml");
  EXPECT_EQ(s.configs[0].scenario, kScenario);
  EXPECT_EQ(s.configs[1].scenario, "/x/other.yaml");
  EXPECT_EQ(s.configs[1].overrides, (std::vector<std::string>{"rounds=3"}));
}

TEST(Study, BadFilesAreNamedWithLineAndKey) {
  EXPECT_NE(error_of([] { parse_study(study_text("targets: [0.5, 1.5]\n"), "t.yaml"); }).find("t.yaml:3: targets: expected a list of numbers in [0, 1], found '1.5'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_study("scenario: x.yaml\nseeds: []\n", "e.yaml"); }).find("seeds: expected at least one seed"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_study("scenario: x.yaml\n", "n.yaml"); }).find("n.yaml:1: seeds: expected a list of seeds or a count"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_study(study_text("axes:\n  uplink:\n    a/b: {}\n"), "l.yaml"); })
                .find("expected a value label made of letters"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_study(study_text("axis: {}\n"), "k.yaml"); }).find("k.yaml:3: axis: unknown key"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_study("scenario: x.yaml\nseeds: [1, 1]\n", "d.yaml"); }).find("seeds: expected distinct seeds"),
            std::string::npos);
}

TEST(Study, ValidationNamesTheAxisAndValueBeforeAnyRun) {
  const Study unknown_key = parse_study(
      study_text("axes:\n  uplink:\n    ok: {uplink: [float32]}\n    typo: {uplinkk: [float32]}\n"), "v.yaml");
  const std::string e = error_of([&] { validate_study(unknown_key); });
  EXPECT_NE(e.find("v.yaml: axis 'uplink', value 'typo': "), std::string::npos) << e;
  EXPECT_NE(e.find("uplinkk: unknown key"), std::string::npos) << e;

  const Study bad_stage = parse_study(study_text("axes:\n  uplink:\n    q: {uplink: [{qsgd: {levels: 0}}]}\n"), "w.yaml");
  const std::string e2 = error_of([&] { validate_study(bad_stage); });
  EXPECT_NE(e2.find("w.yaml: axis 'uplink', value 'q': "), std::string::npos) << e2;
  EXPECT_NE(e2.find("levels"), std::string::npos) << e2;

  const Study bad_value = parse_study(study_text("axes:\n  steps: {key: local_steps, values: [2, -1]}\n"), "x.yaml");
  EXPECT_NE(error_of([&] { validate_study(bad_value); }).find("x.yaml: axis 'steps', value '-1': "), std::string::npos);
  EXPECT_EQ(error_of([] { validate_study(parse_study(study_text(""), "ok.yaml")); }), "(no error)");
}

TEST(Study, ShippedStudiesAreValid) {
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(std::string(FEDSIM_SOURCE_DIR) + "/scenarios/studies")) {
    if (entry.path().extension() != ".yaml") continue;  // results/ holds the README's figures
    SCOPED_TRACE(entry.path().string());
    const Study s = load_study(entry.path().string());
    if (s.root.has("tune")) {
      const TuneSpec spec = parse_tune(s);
      EXPECT_GT(spec.max_rounds, 0u);
    }
    validate_study(s);
    ++n;
  }
  EXPECT_GE(n, 4u);  // smoke, compression, heterogeneity, energy
}

TEST(StudyStats, StudentTQuantilesMatchTheTables) {
  // Two-sided 95%: t_{0.975, df}.
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.7062047, 1e-6);
  EXPECT_NEAR(student_t_quantile(0.975, 2), 4.30265273, 1e-7);
  EXPECT_NEAR(student_t_quantile(0.975, 4), 2.77644511, 1e-7);
  EXPECT_NEAR(student_t_quantile(0.975, 30), 2.04227246, 1e-7);
  EXPECT_NEAR(student_t_quantile(0.975, 1e6), 1.95996591, 1e-5);
  EXPECT_NEAR(student_t_quantile(0.025, 4), -2.77644511, 1e-7);
  EXPECT_NEAR(student_t_quantile(0.5, 7), 0.0, 1e-9);
}

TEST(StudyStats, MeanAndIntervalOverSeeds) {
  const MeanCi m = mean_ci({1.0, 2.0, 3.0, 4.0, 5.0});
  EXPECT_EQ(m.n, 5u);
  EXPECT_DOUBLE_EQ(m.mean, 3.0);
  EXPECT_NEAR(m.ci95, 2.77644511 * std::sqrt(2.5) / std::sqrt(5.0), 1e-7);
  EXPECT_TRUE(std::isnan(mean_ci({0.7}).ci95));  // no interval from one seed
  EXPECT_TRUE(std::isnan(mean_ci({}).mean));
}

CsvTable table(const std::string& text) {
  const fs::path file = fs::temp_directory_path() / "fedsim_study_test.csv";
  std::ofstream(file) << text;
  return read_csv(file.string());
}

TEST(StudyStats, TimeToTargetIsTheFirstEvaluatedRoundAtOrAboveIt) {
  const CsvTable t = table(
      "round,sim_time_s,test_accuracy,test_loss,bytes_up,bytes_down,energy_j\n"
      "1,1.5,,,100,10,0.5\n"
      "2,3.0,0.70,0.9,100,10,0.5\n"
      "3,4.5,,,100,10,0.5\n"      // not evaluated: cannot count, even if it would have been above
      "4,6.0,0.80,0.6,100,10,0.5\n"  // exactly the target: reached here
      "5,7.5,0.79,0.61,100,10,0.5\n"
      "6,9.0,0.85,0.5,100,10,0.5\n");
  const RunFigures f = run_figures(t, {0.8, 0.7, 0.9}, "t.csv");
  ASSERT_TRUE(f.to_target[0].has_value());
  EXPECT_EQ(f.to_target[0]->rounds, 4.0);
  EXPECT_EQ(f.to_target[0]->bytes_up, 400.0);
  EXPECT_EQ(f.to_target[0]->bytes_down, 40.0);
  EXPECT_EQ(f.to_target[0]->sim_time_s, 6.0);
  EXPECT_EQ(f.to_target[0]->energy_j, 2.0);
  EXPECT_EQ(f.to_target[1]->rounds, 2.0);
  EXPECT_FALSE(f.to_target[2].has_value());
  EXPECT_EQ(f.final_accuracy, 0.85);
  EXPECT_EQ(f.best_accuracy, 0.85);
  EXPECT_EQ(f.final_test_loss, 0.5);
  EXPECT_EQ(f.bytes_up, 600.0);
  EXPECT_EQ(f.sim_time_s, 9.0);
  EXPECT_NE(error_of([&] { run_figures(table("round,test_accuracy\n1,0.5\n"), {}, "m.csv"); }).find("m.csv: expected a column"),
            std::string::npos);
}

TEST(StudyStats, TargetsNameColumnsShortly) {
  EXPECT_EQ(target_text(0.84), "0.84");
  EXPECT_EQ(target_text(0.9), "0.9");
  EXPECT_EQ(target_text(1.0), "1");
}

}  // namespace
}  // namespace fedsim
