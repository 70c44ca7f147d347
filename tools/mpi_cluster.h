// fedsim under mpirun (OpenMPI): the same binary runs with and without it.
//
//   mpirun -np K fedsim run SCENARIO [--out DIR]
//
// Rank 0 runs the server, the virtual clock, its own share of the clients
// and writes every output; ranks 1..K-1 each hold the local state of their
// share (Server::rank_of: client mod K) and run those clients' local rounds
// when rank 0 posts them a work order (server/client_cluster.h). Metrics are
// the same bits as one process's, for every policy.
//
// MPI is initialised only by `fedsim run` and `fedsim bench scale`, and only
// when mpirun started more than one rank: nothing forks after MPI_Init, and
// without mpirun no MPI call is ever made. Any rank's error ends the whole
// job (MPI_Abort with exit code 2 after the message): never a hang.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "server/client_cluster.h"

namespace fedsim {

struct Scenario;  // server/scenario.h

// The job this process belongs to, from mpirun's environment
// (OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_RANK), without initialising MPI:
// {0, 1} when not started by mpirun.
struct MpiWorld {
  int rank = 0;
  int size = 1;
};
MpiWorld launched_world();

// Whether this build can run across ranks (OpenMPI found at build time).
bool mpi_built_in();

class MpiSession {
 public:
  // MPI_Init when launched_world().size > 1 (InputError if this build has no
  // MPI); otherwise nothing.
  MpiSession();
  // Rank 0 tells the other ranks to stop; MPI_Finalize.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  bool active() const { return world_.size > 1; }
  int rank() const { return world_.rank; }
  int size() const { return world_.size; }

  // Runs `body`; under MPI, an exception from it is printed (with the rank)
  // and ends the whole job with exit code 2 (InputError) or 1 (other).
  int guard(const std::function<int()>& body);
  // Every rank: rank 0's scenario fingerprint is compared with this rank's;
  // InputError on a rank that parsed another scenario (another file, another
  // --set) than rank 0.
  void agree(std::uint64_t fingerprint);
  // Rank 0: the other ranks, over MPI_COMM_WORLD (null when not active).
  std::unique_ptr<ClientCluster> cluster();
  // Ranks 1..K-1: builds a server for `scenario` (its clients' side only is
  // used) and serves rank 0's work orders until told to stop. DecodeError on
  // a malformed order.
  void serve(const Scenario& scenario);

 private:
  void stop_workers();
  MpiWorld world_;
  bool stopped_ = false;
};

}  // namespace fedsim
