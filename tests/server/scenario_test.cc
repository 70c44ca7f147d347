// Each kind of bad scenario input gives its own, specific error.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/base/errors.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

const char* kGood =
    "name: t\n"
    "data: {source: synthetic_classification, train_samples: 400, test_samples: 100, dim: 8, classes: 3}\n"
    "model: {name: softmax_regression}\n"
    "clients: 10\n"
    "clients_per_round: 5\n"
    "rounds: 2\n";

// Message of the InputError thrown by loading (and building) a scenario.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    Scenario s = parse_scenario(yaml, "bad.yaml", overrides);
    Simulation sim(s);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(ScenarioErrors, GoodScenarioLoads) { EXPECT_EQ(error_of(kGood), ""); }

TEST(ScenarioErrors, MissingFile) {
  try {
    load_scenario("/nonexistent/scenario.yaml");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/scenario.yaml: cannot open scenario file"), std::string::npos);
  }
}

TEST(ScenarioErrors, BadYamlNamesLine) {
  const std::string e = error_of("name: t\nclients: [1, 2\nrounds: 3\n");
  EXPECT_NE(e.find("bad.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
}

TEST(ScenarioErrors, UnknownKeyNamesFileLineAndKey) {
  const std::string e = error_of(std::string(kGood) + "lerning_rate: 0.1\n");
  EXPECT_NE(e.find("bad.yaml:7: lerning_rate: unknown key"), std::string::npos) << e;
}

TEST(ScenarioErrors, UnknownNestedKey) {
  const std::string e = error_of(std::string(kGood) + "server: {policy: wait_all, dedline_s: 3}\n");
  EXPECT_NE(e.find("server.dedline_s: unknown key"), std::string::npos) << e;
}

TEST(ScenarioErrors, WrongType) {
  const std::string e = error_of(std::string(kGood) + "local_steps: many\n");
  EXPECT_NE(e.find("bad.yaml:7: local_steps: expected an integer, found 'many'"), std::string::npos) << e;
}

TEST(ScenarioErrors, NegativeClients) {
  const std::string e = error_of(kGood, {"clients=-5"});
  EXPECT_NE(e.find("clients: expected an integer in [1, 4294967295], found '-5'"), std::string::npos) << e;
}

TEST(ScenarioErrors, MoreParticipantsThanClients) {
  const std::string e = error_of(kGood, {"clients_per_round=11"});
  EXPECT_NE(e.find("clients_per_round: expected at most clients (10), found '11'"), std::string::npos) << e;
}

TEST(ScenarioErrors, MissingDatasetFiles) {
  const std::string e = error_of(
      "data: {source: fashion_mnist, path: /nonexistent/fmnist}\nclients: 10\nclients_per_round: 5\nrounds: 1\n");
  EXPECT_NE(e.find("/nonexistent/fmnist/train-images-idx3-ubyte.gz"), std::string::npos) << e;
}

TEST(ScenarioErrors, UnknownModelName) {
  const std::string e = error_of(kGood, {"model.name=resnet"});
  EXPECT_NE(e.find("model.name: expected one of:"), std::string::npos) << e;
  EXPECT_NE(e.find("found 'resnet'"), std::string::npos) << e;
}

TEST(ScenarioErrors, UnknownCompressionStage) {
  const std::string e = error_of(std::string(kGood) + "uplink: [qsdg]\n");
  EXPECT_NE(e.find("bad.yaml:7: uplink[0]: unknown compression stage 'qsdg'"), std::string::npos) << e;
}

TEST(ScenarioErrors, OutOfRangeStageSetting) {
  const std::string e = error_of(std::string(kGood) + "uplink: [{qsgd: {levels: 0}}]\n");
  EXPECT_NE(e.find("levels"), std::string::npos) << e;
  EXPECT_NE(e.find("found '0'"), std::string::npos) << e;
}

TEST(ScenarioErrors, DeadlinePolicyNeedsDeadline) {
  const std::string e = error_of(std::string(kGood) + "server: {policy: deadline}\n");
  EXPECT_NE(e.find("server.deadline_s: expected a deadline > 0 seconds"), std::string::npos) << e;
}

TEST(ScenarioErrors, OverrideMustBeKeyValue) {
  const std::string e = error_of(kGood, {"rounds"});
  EXPECT_NE(e.find("--set rounds: expected key=value"), std::string::npos) << e;
}

TEST(ScenarioErrors, FedVoteComponentsMustAgree) {
  const std::string base = std::string(kGood);
  EXPECT_EQ(error_of(base + "algorithm: {name: fedvote, k: 2}\nuplink: [{fedvote_binary: {k: 2}}]\n"
                            "aggregator: {name: vote, k: 2}\n"),
            "");
  std::string e = error_of(base + "algorithm: {name: fedvote}\n");
  EXPECT_NE(e.find("bad.yaml:7: algorithm.name: expected an uplink with a fedvote_binary or fedvote_ternary quantizer"),
            std::string::npos)
      << e;
  e = error_of(base + "algorithm: {name: fedvote}\nuplink: [qsgd]\n");
  EXPECT_NE(e.find("bad.yaml:8: uplink: expected a fedvote_binary or fedvote_ternary quantizer"), std::string::npos) << e;
  e = error_of(base + "algorithm: {name: fedvote, k: 2}\nuplink: [fedvote_ternary]\n");
  EXPECT_NE(e.find("k: expected the same k as algorithm.k (2.000000) for the clients' fedvote_ternary, found 1.5 "
                   "(the default)"),
            std::string::npos)
      << e;
  e = error_of(base + "uplink: [fedvote_binary]\n");
  EXPECT_NE(e.find("uplink: expected a quantizer of model differences (fedvote_binary needs algorithm"),
            std::string::npos)
      << e;
  e = error_of(base + "aggregator: {name: vote}\n");
  EXPECT_NE(e.find("aggregator.name: expected an aggregator of model differences"), std::string::npos) << e;
}

TEST(ScenarioErrors, ComplexOrMissingKeysAreRejected) {
  EXPECT_EQ(error_of("?\n-"), "bad.yaml:2: expected a plain key, found a complex key");  // the key is the list "-"
  EXPECT_EQ(error_of(std::string(kGood) + "? [a, b]\n: 3\n"), "bad.yaml:7: expected a plain key, found a complex key");
  EXPECT_NE(error_of(kGood, {"model={? [x]: 1}"}).find("--set model={? [x]: 1}:1: expected a plain key"),
            std::string::npos);
}

TEST(ScenarioErrors, QuantizerAfterCoderIsRejected) {
  const std::string order = " (order: transforms, one quantizer, coders)";
  EXPECT_EQ(error_of(std::string(kGood) + "uplink: [zstd, qsgd]\n"),
            "bad.yaml:7: uplink[1]: quantizer 'qsgd' must come before coder 'zstd'" + order);
  EXPECT_EQ(error_of(std::string(kGood) + "downlink:\n  - error_feedback\n  - zstd\n  - {qsgd: {levels: 4}}\n"),
            "bad.yaml:10: downlink[2]: quantizer 'qsgd' must come before coder 'zstd'" + order);
  EXPECT_EQ(error_of(kGood, {"uplink=[zstd, terngrad]"}),
            "--set uplink=[zstd, terngrad]: uplink[1]: quantizer 'terngrad' must come before coder 'zstd'" + order);
  EXPECT_EQ(error_of(std::string(kGood) + "uplink: [error_feedback, qsgd, zstd]\n"), "");
  EXPECT_EQ(error_of(std::string(kGood) + "uplink: [zstd]\n"), "");  // around float32
}

TEST(Scenario, OverridesReachListItemsByIndex) {
  const std::string two_classes = std::string(kGood) +
                                  "population:\n  - {name: a, fraction: 0.5, profile: phone_cpu}\n"
                                  "  - {name: b, fraction: 0.5, profile: edge_fpga, precision: int8}\n";
  const Scenario s = parse_scenario(two_classes, "p.yaml", {"population.1.precision=int4", "uplink=[{qsgd: {levels: 3}}, zstd]",
                                                            "uplink.0={qsgd: {levels: 7}}"});
  EXPECT_EQ(s.root.children("population")[1].get_string("precision"), "int4");
  EXPECT_EQ(s.uplink.describe(),
            PipelineSpec::parse(Config::parse_string("u: [{qsgd: {levels: 7}}, zstd]"), "u").describe());
  EXPECT_EQ(error_of(two_classes, {"population.2.precision=int4"}),
            "--set population.2.precision=int4: index 2 out of range (the list has 2 item(s))");
  EXPECT_EQ(error_of(two_classes, {"population.b.precision=int4"}),
            "--set population.b.precision=int4: 'b': expected a list index (0, 1, ...), the value there is a list");
}

TEST(ScenarioErrors, OverrideErrorsNameTheOptionNotALine) {
  const std::string unknown = ": unknown key (not part of the schema; see the README's scenario table)";
  EXPECT_EQ(error_of(kGood, {"foo.bar=1"}), "--set foo.bar=1: foo" + unknown);
  EXPECT_EQ(error_of(kGood, {"model.nmae=x"}), "--set model.nmae=x: model.nmae" + unknown);
  EXPECT_EQ(error_of(kGood, {"uplink=[{qsgd: {levls: 7}}]"}),
            "--set uplink=[{qsgd: {levls: 7}}]: uplink[0].qsgd.levls" + unknown);
  EXPECT_EQ(error_of(kGood, {"rounds=abc"}), "--set rounds=abc: rounds: expected an integer, found 'abc'");
  EXPECT_EQ(error_of(kGood, {"rounds=3", "server.policy=deadline", "server.deadline_s=soon"}),
            "--set server.deadline_s=soon: server.deadline_s: expected a number, found 'soon'");
  // A later override of the same key is the one named; keys from the file keep their line.
  EXPECT_EQ(error_of(kGood, {"rounds=abc", "rounds=-1"}),
            "--set rounds=-1: rounds: expected an integer in [1, 100000000], found '-1'");
  EXPECT_EQ(error_of(std::string(kGood) + "lerning_rate: 0.1\n", {"rounds=3"}), "bad.yaml:7: lerning_rate" + unknown);
}

}  // namespace
}  // namespace fedsim
