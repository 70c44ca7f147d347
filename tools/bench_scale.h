// `fedsim bench scale`: resident memory per registered client and round time
// as the number of registered clients grows, the clients per round fixed
// (issue 11).
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace fedsim {

class MpiSession;  // tools/mpi_cluster.h

struct ScaleBenchSettings {
  std::vector<std::size_t> clients = {10'000, 100'000, 1'000'000, 10'000'000, 100'000'000};
  std::size_t per_round = 1000;
  std::size_t rounds = 5;
  std::size_t threads = 1;
};

// For each registered population size, in one process, one after the other:
// builds a run of a procedural-data scenario (heterogeneous links, online
// probability 0.9, error feedback on the uplink, so per-client state exists
// for the clients that take part), runs it, and reports the resident memory
// it added (VmRSS after the run minus before building it, freed memory
// returned with malloc_trim in between), that per registered client, and the
// mean wall time of a round. Memory is the process's, so the numbers are
// only meaningful with nothing else running in it.
int run_scale_bench(std::ostream& out, const ScaleBenchSettings& settings);

// Under mpirun (`mpirun -np K fedsim bench scale`): a compute-heavy scenario
// (an MLP on procedural data: cluster_scenario) run twice in the same job,
// first with every client on rank 0 (1 rank) and then spread over the K
// ranks; reports the wall time per round of both, the speed-up, the share of
// the K-rank run's wall time that messages took (Server::ClusterTime), the
// bytes moved, and what the model `round = serial + compute / K + messages`
// predicts from the 1-rank run. Checks that both runs' metrics are equal.
// Ranks other than 0 print nothing.
int run_cluster_bench(std::ostream& out, const ScaleBenchSettings& settings, MpiSession& mpi);
std::string cluster_scenario(std::size_t per_round, std::size_t rounds, std::size_t threads);

// The process's resident set (VmRSS) in bytes; 0 if /proc/self/status is unreadable.
std::size_t resident_bytes();
// The scenario the bench runs (also used by the memory test).
std::string scale_scenario(std::size_t clients, std::size_t per_round, std::size_t rounds, std::size_t threads);

}  // namespace fedsim
