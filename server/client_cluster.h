// The other processes of a run spread over several (an MPI job:
// tools/mpi_cluster.h). Rank 0 runs the server, the virtual clock and its
// own share of the clients; every other rank holds the local state of its
// share (Server::rank_of) and runs their local rounds when told. What
// crosses is only bytes: serialized wire::WorkOrder out (the broadcast model
// as the clients decoded it and the clients to run) and wire::WorkDone back
// (their serialized UpdateUp messages), as a real device would answer.
//
// Contract: used from rank 0's event-loop thread only; each post() to a
// rank is followed by exactly one collect() from it before the next post().
#pragma once

#include <string>

namespace fedsim {

class ClientCluster {
 public:
  virtual ~ClientCluster() = default;
  // Processes in the job, rank 0 (this one) included; at least 1.
  virtual int ranks() const = 0;
  // Sends work order bytes to `rank` (1 <= rank < ranks()).
  virtual void post(int rank, const std::string& order) = 0;
  // Waits for `rank`'s answer to the order it was last posted. A rank that
  // failed ends the job (it never answers: the transport aborts, no hang).
  virtual std::string collect(int rank) = 0;
};

}  // namespace fedsim
