// `mpirun -np K fedsim run` (tools/mpi_cluster.h): the metrics files are
// byte-identical to one process's, and a failing rank ends the job with a
// clear error instead of a hang. Runs the fedsim executable under Debian's
// mpirun (built only when OpenMPI is found; as root, as in CI, through
// OMPI_ALLOW_RUN_AS_ROOT).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fedsim {
namespace {

namespace fs = std::filesystem;

const std::string kFedsim = std::string(FEDSIM_BINARY_DIR) + "/fedsim";
const std::string kScenarios = std::string(FEDSIM_SOURCE_DIR) + "/scenarios/";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command with a time limit (a hang fails the test, it does not stall CI).
Result shell(const std::string& command, const fs::path& log) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  // Containers often forbid the cross-memory-attach single copy: use plain shared memory.
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  const int status = std::system(("timeout 300 " + command + " >" + log.string() + " 2>&1").c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = read_file(log);
  return r;
}

std::string mpirun(int ranks) {
  return std::string(FEDSIM_MPIEXEC) + " -np " + std::to_string(ranks) + " --oversubscribe ";
}

std::string args_of(const std::vector<std::string>& sets) {
  std::string a;
  for (const std::string& s : sets) a += " --set '" + s + "'";
  return a;
}

struct SameCase {
  std::string name;
  std::string scenario;
  std::vector<std::string> sets;
  int ranks = 2;
};

class MpiRun : public ::testing::TestWithParam<SameCase> {};

TEST_P(MpiRun, WritesTheSameFilesAsOneProcess) {
  const SameCase& c = GetParam();
  const fs::path dir = fs::temp_directory_path() / ("fedsim_mpi_test_" + c.name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string run = kFedsim + " run " + kScenarios + c.scenario + args_of(c.sets) + " --quiet --out ";
  const Result one = shell(run + (dir / "one").string(), dir / "one.log");
  ASSERT_EQ(one.code, 0) << one.output;
  const Result many = shell(mpirun(c.ranks) + run + (dir / "many").string(), dir / "many.log");
  ASSERT_EQ(many.code, 0) << many.output;
  for (const char* file : {"metrics.csv", "metrics.jsonl", "clients.csv"}) {
    const std::string a = read_file(dir / "one" / file);
    ASSERT_FALSE(a.empty()) << file;
    EXPECT_TRUE(a == read_file(dir / "many" / file)) << file << " differs under " << c.ranks << " ranks";
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, MpiRun,
    ::testing::Values(
        // The quick start (Fashion-MNIST, 1000 clients, 50 per round), shortened.
        SameCase{"quickstart", "quickstart.yaml", {"rounds=12", "threads=1"}},
        // Three device classes under a round deadline: late clients cut.
        SameCase{"hetero_deadline", "hetero_deadline.yaml", {"rounds=10", "threads=1"}},
        // FedBuff over LTE radios with error feedback and client Adam: state on
        // the ranks, updates arriving out of order, batteries.
        SameCase{"fedbuff",
                 "energy_budget_lte.yaml",
                 {"rounds=15", "threads=1", "server={policy: async, buffer_size: 5, concurrency: 20}",
                  "uplink=[error_feedback, sign]", "client_optimizer={name: adam}"}},
        // Compression both ways: QSGD on the downlink, error feedback + QSGD
        // up; three ranks on two cores.
        SameCase{"bidirectional",
                 "genqsgd.yaml",
                 {"threads=1", "uplink=[error_feedback, {qsgd: {levels: 15, coding: fixed}}]"},
                 3},
        // Colluding attackers (they stay on rank 0) among honest clients elsewhere.
        SameCase{"little_is_enough", "attacks/little_is_enough.yaml", {"rounds=4", "threads=1"}}),
    [](const ::testing::TestParamInfo<SameCase>& info) { return info.param.name; });

const char* kTiny =
    "seed: 4\n"
    "data: {source: synthetic_classification, train_samples: 600, test_samples: 100, dim: 8, classes: 3}\n"
    "clients: 12\nclients_per_round: 6\nrounds: 4\nthreads: 1\n";

fs::path write_scenario(const fs::path& dir, const std::string& name, const std::string& text) {
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

TEST(MpiRunFailure, ADivergedClientOnAnotherRankEndsTheJobWithItsError) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_mpi_test_fail";
  fs::remove_all(dir);
  // Every client's training overflows; the lowest failed flight is reported
  // wherever it ran (rank 0 first waits for rank 1's answer).
  const fs::path sc = write_scenario(
      dir, "diverge.yaml",
      "data: {source: synthetic_regression, train_samples: 400, test_samples: 50, dim: 6}\n"
      "model: {name: linear_regression}\n"
      "clients: 8\nclients_per_round: 4\nrounds: 5\nlocal_steps: 20\nlearning_rate: 1e5\nthreads: 1\n");
  // One process names the lowest failed flight's client (client 1: rank 1's).
  const Result one = shell(kFedsim + " run " + sc.string() + " --quiet", dir / "one.log");
  ASSERT_EQ(one.code, 2) << one.output;
  const std::string prefix = "fedsim: error: ";
  ASSERT_EQ(one.output.rfind(prefix, 0), 0u) << one.output;
  const std::string message = one.output.substr(prefix.size(), one.output.find('\n') - prefix.size());
  EXPECT_NE(message.find(": client 1's local round failed"), std::string::npos) << message;
  const Result r = shell(mpirun(2) + kFedsim + " run " + sc.string() + " --quiet", dir / "log");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("fedsim (rank 0 of 2): error: " + message), std::string::npos) << r.output;
  fs::remove_all(dir);
}

TEST(MpiRunFailure, RanksThatParsedAnotherScenarioAreRefused) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_mpi_test_mismatch";
  fs::remove_all(dir);
  const fs::path a = write_scenario(dir, "a.yaml", kTiny);
  const fs::path b = write_scenario(dir, "b.yaml", std::string(kTiny) + "learning_rate: 0.2\n");
  // One rank per scenario (MPMD): rank 1 sees another file.
  const Result r = shell(std::string(FEDSIM_MPIEXEC) + " --oversubscribe -np 1 " + kFedsim + " run " + a.string() +
                             " --quiet : -np 1 " + kFedsim + " run " + b.string() + " --quiet",
                         dir / "log");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("fedsim (rank 1 of 2): error: this rank parsed another scenario than rank 0"),
            std::string::npos)
      << r.output;
  fs::remove_all(dir);
}

TEST(MpiRunFailure, CommandsThatDoNotSpreadAreRefusedUnderMpirun) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_mpi_test_refuse";
  fs::remove_all(dir);
  const fs::path sc = write_scenario(dir, "s.yaml", kTiny);
  const Result r = shell(mpirun(2) + kFedsim + " validate " + sc.string(), dir / "log");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("under mpirun only `fedsim run` and `fedsim bench scale` run"), std::string::npos)
      << r.output;
  fs::remove_all(dir);
}

// A checkpoint holds every rank's client state: the same bytes as one
// process's, and each resumes under the other.
TEST(MpiCheckpoint, IsTheSameFileAndResumesEitherWay) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_mpi_test_checkpoint";
  fs::remove_all(dir);
  fs::create_directories(dir);
  // FedBuff with updates in flight, error feedback and client Adam: state on both ranks.
  const std::string run = kFedsim + " run " + kScenarios + "energy_budget_lte.yaml" +
                          args_of({"rounds=15", "threads=1", "server={policy: async, buffer_size: 5, concurrency: 20}",
                                   "uplink=[error_feedback, sign]", "client_optimizer={name: adam}"}) +
                          " --quiet";
  Result r = shell(run + " --checkpoint-every 4 --out " + (dir / "one").string(), dir / "log");
  ASSERT_EQ(r.code, 0) << r.output;
  r = shell(mpirun(2) + run + " --checkpoint-every 4 --out " + (dir / "many").string(), dir / "log");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string checkpoint = read_file(dir / "one" / "checkpoint.bin");
  ASSERT_FALSE(checkpoint.empty());
  EXPECT_TRUE(checkpoint == read_file(dir / "many" / "checkpoint.bin")) << "the checkpoint of round 12 differs";
  // Resume one process's checkpoint under 2 ranks, and 2 ranks' in one process.
  fs::copy(dir / "one", dir / "one_on_two");
  fs::copy(dir / "many", dir / "two_on_one");
  r = shell(mpirun(2) + run + " --resume " + (dir / "one_on_two").string(), dir / "log");
  ASSERT_EQ(r.code, 0) << r.output;
  r = shell(run + " --resume " + (dir / "two_on_one").string(), dir / "log");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* run_dir : {"many", "one_on_two", "two_on_one"})
    for (const char* file : {"metrics.csv", "metrics.jsonl", "clients.csv"})
      EXPECT_TRUE(read_file(dir / "one" / file) == read_file(dir / run_dir / file)) << run_dir << "/" << file;
  fs::remove_all(dir);
}

// Gossip runs every node's pipeline on rank 0 (it does not dispatch): its
// checkpoint holds their stage state whatever the ranks.
TEST(MpiCheckpoint, GossipKeepsItsNodesOnRankZero) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_mpi_test_gossip";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string run = kFedsim + " run " + kScenarios + "methods/dpsvrg_choco.yaml" +
                          args_of({"rounds=20", "threads=1"}) + " --quiet --checkpoint-every 5 --out ";
  Result r = shell(run + (dir / "one").string(), dir / "log");
  ASSERT_EQ(r.code, 0) << r.output;
  r = shell(mpirun(2) + run + (dir / "many").string(), dir / "log");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* file : {"checkpoint.bin", "metrics.csv", "clients.csv"}) {
    const std::string a = read_file(dir / "one" / file);
    ASSERT_FALSE(a.empty()) << file;
    EXPECT_TRUE(a == read_file(dir / "many" / file)) << file;
  }
  fs::remove_all(dir);
}

TEST(MpiBench, ScaleUnderMpirunComparesOneRankWithTwo) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_mpi_test_bench";
  fs::create_directories(dir);
  const Result r = shell(mpirun(2) + kFedsim + " bench scale --rounds 2 --per-round 6", dir / "log");
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* line : {"bench scale (cluster): 2 ranks x 1 thread(s); 6 clients per round", "  1 rank ",
                           "  2 ranks ", "speed-up x", "  messages ", "over 2 orders", "  model ",
                           "metrics of the two runs: identical"})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fedsim
