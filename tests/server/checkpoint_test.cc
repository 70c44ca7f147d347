// Checkpoint and resume (server/checkpoint.h): every stateful piece round-trips
// its state, a restored run continues bit for bit, and every kind of bad
// checkpoint is refused with its own message.
//
// Three levels:
//  - stages: every pipeline the decoder tests cover (every registered stage,
//    alone and composed), both ends saved after a few messages and restored
//    into fresh instances, which then produce the same bytes and vectors;
//  - runs, in process: shipped scenarios covering every policy and the
//    stateful stages, optimizers, aggregators and ledgers, checkpointed at a
//    seeded random round, restored into a fresh Simulation and finished:
//    the rounds' metrics, the per-client ledger and the model are identical;
//  - the command line: `fedsim run --checkpoint-every 1` killed with SIGKILL
//    at a random round, then `--resume`: metrics.csv, metrics.jsonl and
//    clients.csv byte-identical to an uninterrupted run (every policy,
//    error feedback, predictive coding, censoring, FedBuff in flight).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/base/errors.h"
#include "core/base/rng.h"
#include "core/compression/compressor.h"
#include "core/compression/pipeline.h"
#include "server/checkpoint.h"
#include "server/scenario.h"
#include "server/server.h"
#include "server/simulation.h"
#include "tests/core/compression/stage_pipelines.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fedsim_checkpoint_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// ---------------------------------------------------------------- stages

// Two layers, the first a 3 x 5 matrix (powersgd factorizes it).
constexpr std::size_t kDim = 45;
std::vector<Layer> stage_layers() { return {Layer{"a", 0, 15, 3, 5}, Layer{"b", 15, 30}}; }

std::unique_ptr<Compressor> make_stage(const std::string& stages) {
  const Config cfg = Config::parse_string("uplink: [" + stages + "]\n");
  return PipelineSpec::parse(cfg, "uplink").make(kDim, stage_layers(), 99);
}

std::vector<float> message(std::uint64_t t) {
  Rng rng(1000 + t);
  std::vector<float> v(kDim);
  for (float& x : v) x = static_cast<float>(rng.normal() * (t % 3 == 2 ? 0.01 : 1.0));
  return v;
}

struct Sent {
  Bytes payload;
  std::vector<float> reconstructed, decoded;
};

Sent send(Compressor& encoder, Compressor& decoder, std::uint64_t t) {
  Sent s;
  s.reconstructed.resize(kDim);
  s.decoded.resize(kDim);
  Rng rng = Rng::derive(7, {t});
  const std::vector<float> v = message(t);
  encoder.encode(v, rng, s.payload, s.reconstructed);
  decoder.decode(s.payload, s.decoded);
  return s;
}

class StageState : public ::testing::TestWithParam<std::string> {};

TEST_P(StageState, RestoredEndsContinueBitForBit) {
  auto encoder = make_stage(GetParam());
  auto decoder = make_stage(GetParam());
  for (std::uint64_t t = 0; t < 4; ++t) send(*encoder, *decoder, t);
  StateWriter saved_encoder, saved_decoder;
  encoder->save(saved_encoder);
  decoder->save(saved_decoder);
  auto encoder2 = make_stage(GetParam());
  auto decoder2 = make_stage(GetParam());
  StateReader in_encoder(saved_encoder.bytes()), in_decoder(saved_decoder.bytes());
  encoder2->restore(in_encoder);
  decoder2->restore(in_decoder);
  EXPECT_TRUE(in_encoder.done() && in_decoder.done());
  for (std::uint64_t t = 4; t < 8; ++t) {
    const Sent a = send(*encoder, *decoder, t);
    const Sent b = send(*encoder2, *decoder2, t);
    ASSERT_EQ(a.payload, b.payload) << "message " << t;
    ASSERT_EQ(0, std::memcmp(a.reconstructed.data(), b.reconstructed.data(), kDim * 4)) << "message " << t;
    ASSERT_EQ(0, std::memcmp(a.decoded.data(), b.decoded.data(), kDim * 4)) << "message " << t;
  }
  // A state cut short is refused.
  if (!saved_encoder.bytes().empty()) {
    StateReader cut(std::string_view(saved_encoder.bytes()).substr(0, saved_encoder.bytes().size() - 1));
    EXPECT_THROW(make_stage(GetParam())->restore(cut), DecodeError);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryPipeline, StageState, ::testing::ValuesIn(testing_pipelines::all()));

TEST(StageState, AnotherPipelinesStateIsRefused) {
  auto ef = make_stage("error_feedback, qsgd");
  StateWriter out;
  ef->save(out);
  StateReader in(out.bytes());
  try {
    make_stage("censoring, qsgd")->restore(in);
    FAIL() << "restored error feedback's state into censoring";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("expected the state of 'censoring', found 'error_feedback'"),
              std::string::npos)
        << e.what();
  }
}

// ------------------------------------------------------------- file format

TEST(CheckpointFile, RoundTripsAndRefusesEveryKindOfBadFile) {
  const fs::path dir = temp_dir("file");
  const std::string state = "some state bytes";
  write_checkpoint(dir.string(), 42, 7, state);
  const LoadedCheckpoint ok = read_checkpoint(dir.string(), 42);
  EXPECT_EQ(ok.round, 7u);
  EXPECT_EQ(ok.state, state);
  EXPECT_FALSE(fs::exists(dir / "checkpoint.tmp"));
  const std::string good = read_file(dir / "checkpoint.bin");

  const auto refused = [&](const std::string& bytes, std::uint64_t fingerprint, const std::string& says) {
    write_file(dir / "checkpoint.bin", bytes);
    try {
      read_checkpoint(dir.string(), fingerprint);
      ADD_FAILURE() << "accepted a checkpoint that should say: " << says;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("checkpoint.bin"), std::string::npos) << e.what();
    }
  };
  refused(good.substr(0, good.size() - 5), 42, "truncated checkpoint (the header announces");
  refused(good.substr(0, 20), 42, "truncated checkpoint (20 bytes");
  refused("PK\x03\x04 this is a zip file, not a checkpoint", 42, "not a fedsim checkpoint");
  std::string foreign = good;
  foreign[8] = 9;  // format version 9
  refused(foreign, 42, "checkpoint format version 9; this fedsim reads version " + std::to_string(kCheckpointVersion) + " only");
  std::string corrupt = good;
  corrupt[40] ^= 0x10;  // one bit of the state
  refused(corrupt, 42, "corrupt checkpoint (CRC-32C mismatch)");
  refused(good, 43, "written for another scenario");
  fs::remove(dir / "checkpoint.bin");
  try {
    read_checkpoint(dir.string(), 42);
    ADD_FAILURE() << "read a missing checkpoint";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no checkpoint to resume from"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(CheckpointFile, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // RFC 3720's check value
}

TEST(CheckpointFile, FingerprintIgnoresThreadsAndOutputOnly) {
  const std::string base = std::string(FEDSIM_SOURCE_DIR) + "/scenarios/synthetic_quick.yaml";
  const std::uint64_t f = scenario_fingerprint(load_scenario(base));
  EXPECT_EQ(f, scenario_fingerprint(load_scenario(base, {"threads=3", "output.dir=elsewhere", "output.progress=false"})));
  EXPECT_NE(f, scenario_fingerprint(load_scenario(base, {"seed=2"})));
  EXPECT_NE(f, scenario_fingerprint(load_scenario(base, {"learning_rate=0.02"})));
}

// ------------------------------------------------------------ runs, in process

struct RunCase {
  std::string name;
  std::string file;  // under scenarios/
  std::vector<std::string> overrides;
};

std::string metrics_bytes(const std::vector<RoundMetrics>& rounds) {
  StateWriter out;
  for (const RoundMetrics& m : rounds) save_state(out, m);
  return out.take();
}

class ResumedRun : public ::testing::TestWithParam<RunCase> {};

TEST_P(ResumedRun, ContinuesBitForBit) {
  const RunCase& c = GetParam();
  std::vector<std::string> overrides = c.overrides;
  overrides.push_back("rounds=6");
  overrides.push_back("threads=2");
  const Scenario sc = load_scenario(std::string(FEDSIM_SOURCE_DIR) + "/scenarios/" + c.file, overrides);

  // The uninterrupted run, keeping a checkpoint after every round.
  std::vector<std::string> states;
  Simulation whole(sc);
  const RunSummary expected = whole.run({}, [&](std::size_t closed) {
    states.resize(closed);
    states[closed - 1] = whole.save();
  });
  ASSERT_EQ(states.size(), 5u);
  const fs::path dir = temp_dir(c.name);
  whole.ledger().write_client_csv((dir / "whole.csv").string());

  // One round chosen by the seed of the case's name; every state re-saves to itself.
  Rng pick = Rng::derive(std::hash<std::string>{}(c.name), {1});
  const std::size_t k = 1 + pick.below(states.size());
  for (std::size_t j = 0; j < states.size(); ++j) {
    if (j + 1 != k && j != 0) continue;
    Simulation again(sc);
    again.restore(states[j]);
    EXPECT_EQ(again.save(), states[j]) << "round " << j + 1;
  }
  Simulation resumed(sc);
  resumed.restore(states[k - 1]);
  const RunSummary got = resumed.run();
  EXPECT_EQ(metrics_bytes(got.rounds), metrics_bytes(expected.rounds)) << "resumed after round " << k;
  EXPECT_EQ(got.final_accuracy, expected.final_accuracy);
  EXPECT_EQ(got.bytes_up, expected.bytes_up);
  EXPECT_EQ(got.energy_j, expected.energy_j);
  EXPECT_EQ(0, std::memcmp(resumed.model_params().memptr(), whole.model_params().memptr(),
                           4 * whole.model_params().n_elem));
  resumed.ledger().write_client_csv((dir / "resumed.csv").string());
  EXPECT_EQ(read_file(dir / "resumed.csv"), read_file(dir / "whole.csv"));
  EXPECT_EQ(resumed.trace().size(), whole.trace().size());
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, ResumedRun,
    ::testing::Values(
        RunCase{"wait_all_client_adam", "synthetic_quick.yaml",
                {"client_optimizer={name: adam}", "uplink=[error_feedback, {top_k: {k: 5}}]"}},
        RunCase{"over_selection_censoring", "synthetic_quick.yaml",
                {"server={policy: over_selection, over_selection: 1.5}", "uplink=[{censoring: {threshold: 0.5}}, qsgd]"}},
        RunCase{"deadline_late_flights", "hetero_deadline.yaml", {"clients=40", "clients_per_round=10"}},
        RunCase{"predictive_coding", "compression/predictive.yaml", {"clients=40", "clients_per_round=5"}},
        RunCase{"chb_censoring_momentum", "methods/chb.yaml", {}},
        RunCase{"ef_amsgrad", "methods/ef_amsgrad.yaml", {"clients=40", "clients_per_round=5"}},
        RunCase{"gossip_choco", "methods/dpsvrg_choco.yaml", {}},
        RunCase{"vote_reputation", "attacks/fedvote_inverted.yaml", {"clients=40", "clients_per_round=10"}},
        RunCase{"fedbuff_radio_battery", "energy_budget_lte.yaml",
                {"server={policy: async, buffer_size: 4, concurrency: 10}", "clients=60"}},
        RunCase{"lossy_network_traces", "lossy_network.yaml", {"clients=40", "clients_per_round=8"}},
        RunCase{"downlink_with_memory", "genqsgd.yaml", {}}),
    [](const ::testing::TestParamInfo<RunCase>& info) { return info.param.name; });

TEST(ResumedRun, AStateThatDoesNotFitIsRefused) {
  const std::string file = std::string(FEDSIM_SOURCE_DIR) + "/scenarios/synthetic_quick.yaml";
  const Scenario sc = load_scenario(file, {"rounds=3"});
  std::string state;
  Simulation a(sc);
  a.run({}, [&](std::size_t closed) {
    if (closed == 1) state = a.save();
  });
  // Another pipeline: the links' ends hold other stages.
  const Scenario other = load_scenario(file, {"rounds=3", "uplink=[error_feedback, sign]"});
  Simulation b(other);
  EXPECT_THROW(b.restore(state), DecodeError);
  // Cut short, or with bytes after the end.
  Simulation c(sc);
  EXPECT_THROW(c.restore(std::string_view(state).substr(0, state.size() / 2)), DecodeError);
  Simulation d(sc);
  EXPECT_THROW(d.restore(state + "x"), DecodeError);
  // A model holding NaN (found by fuzz_checkpoint: it reached the downlink's
  // encoder). The first parameter follows the "simulation" and "server"
  // section names and the model's length.
  std::string nan_model = state;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan_model.data() + 8 + 10 + 8 + 6 + 8, &nan, 4);
  Simulation e(sc);
  EXPECT_THROW(e.restore(nan_model), DecodeError);
}

TEST(ResumedRun, ANonFiniteGlobalModelStopsTheRunWithInputError) {
  // A diverged aggregate (or server optimizer step) reaches the broadcast:
  // the run stops as a diverged client's does, with an InputError.
  const Scenario sc = load_scenario(std::string(FEDSIM_SOURCE_DIR) + "/scenarios/synthetic_quick.yaml", {"rounds=1"});
  Server server(sc);
  arma::fvec params(server.num_params(), arma::fill::zeros);
  params[params.n_elem - 1] = std::numeric_limits<float>::infinity();
  server.set_model(params);
  EXPECT_THROW(server.broadcast(0), InputError);
}

// ------------------------------------------------------------ the command line

const std::string kFedsim = std::string(FEDSIM_BINARY_DIR) + "/fedsim";

struct KillCase {
  std::string name;
  std::string scenario;  // YAML
};

// A run of about a second: small enough for CI, long enough to be killed mid-way.
std::string base_scenario(const std::string& extra) {
  return "seed: 3\n"
         "data: {source: synthetic_classification, train_samples: 3000, test_samples: 500, dim: 20, classes: 5}\n"
         "partition: {scheme: iid}\n"
         "model: {name: softmax_regression}\n"
         "clients: 30\nclients_per_round: 6\nlocal_steps: 3\nbatch_size: 16\nlearning_rate: 0.05\n"
         "rounds: 60\neval_every: 1\nthreads: 2\n"
         "population:\n"
         "  - {name: phones, fraction: 1.0, profile: phone_cpu, dropout_probability: 0.1,\n"
         "     link: {uplink_bps: {lognormal: {median: 2e6, sigma: 0.5}}, downlink_bps: 2e7, latency_s: 0.05}}\n" +
         extra;
}

int run_fedsim(const std::string& args) { return std::system((kFedsim + " " + args + " >/dev/null 2>&1").c_str()); }

std::uint64_t checkpoint_round(const fs::path& dir) {
  const std::string bytes = read_file(dir / "checkpoint.bin");
  if (bytes.size() < 28) return 0;
  std::uint64_t round;
  std::memcpy(&round, bytes.data() + 20, 8);
  return round;
}

class KilledRun : public ::testing::TestWithParam<KillCase> {};

TEST_P(KilledRun, ResumesToByteIdenticalFiles) {
  const KillCase& c = GetParam();
  const fs::path dir = temp_dir("kill_" + c.name);
  const fs::path scenario = dir / "scenario.yaml";
  write_file(scenario, c.scenario);
  ASSERT_EQ(0, run_fedsim("run " + scenario.string() + " --quiet --out " + (dir / "whole").string()));

  for (std::uint64_t seed : {1, 2}) {
    const fs::path out = dir / ("killed" + std::to_string(seed));
    Rng pick = Rng::derive(seed, {std::hash<std::string>{}(c.name)});
    const std::uint64_t kill_at = 2 + pick.below(40);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1), ::dup2(null, 2);
      ::execl(kFedsim.c_str(), kFedsim.c_str(), "run", scenario.c_str(), "--quiet", "--out", out.c_str(),
              "--checkpoint-every", "1", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // SIGKILL as soon as the checkpoint of round kill_at (or a later one) is on disk.
    int status = 0;
    bool exited = false;
    const auto start = std::chrono::steady_clock::now();
    while (!exited && checkpoint_round(out) < kill_at && std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
      exited = ::waitpid(pid, &status, WNOHANG) == pid;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!exited) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    ASSERT_FALSE(exited) << "the run ended before round " << kill_at << ": make it longer";
    ASSERT_TRUE(WIFSIGNALED(status));
    const std::uint64_t at = checkpoint_round(out);
    ASSERT_GE(at, kill_at);
    ASSERT_EQ(0, run_fedsim("run " + scenario.string() + " --quiet --resume " + out.string() +
                            " --checkpoint-every 1"))
        << "resume after round " << at;
    for (const char* f : {"metrics.csv", "metrics.jsonl", "clients.csv"})
      EXPECT_EQ(read_file(out / f), read_file(dir / "whole" / f)) << f << ", killed after round " << at;
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    EveryPolicy, KilledRun,
    ::testing::Values(
        KillCase{"wait_all_error_feedback", base_scenario("uplink: [error_feedback, {top_k: {k: 10}}]\n")},
        KillCase{"deadline_predictive_coding",
                 base_scenario("server: {policy: deadline, deadline_s: 0.2}\nuplink: [predictive_coding]\n")},
        KillCase{"over_selection_censoring",
                 base_scenario("server: {policy: over_selection, over_selection: 1.5}\n"
                               "uplink: [{censoring: {threshold: 0.3}}, qsgd]\n")},
        KillCase{"fedbuff_in_flight",
                 base_scenario("server: {policy: async, buffer_size: 3, concurrency: 8}\n"
                               "uplink: [error_feedback, sign]\nclient_optimizer: {name: momentum}\n")},
        KillCase{"gossip_choco",
                 "seed: 4\n"
                 "data: {source: synthetic_classification, classes: 2, dim: 50, train_samples: 2000, test_samples: 500}\n"
                 "partition: {scheme: iid}\nmodel: {name: softmax_regression}\n"
                 "algorithm: {name: dpsvrg, topology: ring, snapshot_period: 7, l1: 0.001, gossip: {choco: {gamma: 0.6}}}\n"
                 "uplink: [{qsgd: {levels: 15, coding: fixed}}]\n"
                 "clients: 10\nclients_per_round: 10\nbatch_size: 10\nlearning_rate: 0.1\nrounds: 60\nthreads: 2\n"}),
    [](const ::testing::TestParamInfo<KillCase>& info) { return info.param.name; });

TEST(KilledRun, ResumeRefusesAnotherScenarioWithExitCode2) {
  const fs::path dir = temp_dir("other");
  write_file(dir / "a.yaml", base_scenario("") );
  write_file(dir / "b.yaml", base_scenario("uplink: [sign]\n"));
  ASSERT_EQ(0, run_fedsim("run " + (dir / "a.yaml").string() + " --quiet --set rounds=3 --checkpoint-every 1 --out " +
                          (dir / "out").string()));
  const int rc = run_fedsim("run " + (dir / "b.yaml").string() + " --quiet --set rounds=3 --resume " +
                            (dir / "out").string());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
  const int rc_no_dir = run_fedsim("run " + (dir / "a.yaml").string() + " --quiet --checkpoint-every 2");
  ASSERT_TRUE(WIFEXITED(rc_no_dir));
  EXPECT_EQ(WEXITSTATUS(rc_no_dir), 2);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fedsim
