#include "tools/mpi_cluster.h"

#include <climits>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "core/base/errors.h"
#include "server/server.h"
#include "wire.pb.h"  // generated from core/wire/wire.proto

#ifdef FEDSIM_HAVE_MPI
#include <mpi.h>
#endif

namespace fedsim {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (*end == '\0' && x >= 0 && x <= INT_MAX) ? static_cast<int>(x) : fallback;
}

}  // namespace

MpiWorld launched_world() {
  MpiWorld w;
  w.size = std::max(1, env_int("OMPI_COMM_WORLD_SIZE", 1));
  w.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
  return w;
}

#ifdef FEDSIM_HAVE_MPI

namespace {

enum Tag : int { kOrder = 1, kDone = 2, kStop = 3 };

void send_bytes(const std::string& bytes, int rank, int tag) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX))
    throw InputError("a message of " + std::to_string(bytes.size()) + " bytes between ranks (at most 2^31 - 1)");
  MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, rank, tag, MPI_COMM_WORLD);
}

// The next message from `rank` with `tag` (MPI_ANY_TAG: any), and its tag.
std::string receive_bytes(int rank, int tag, int* got_tag = nullptr) {
  MPI_Status status;
  MPI_Probe(rank, tag, MPI_COMM_WORLD, &status);
  int n = 0;
  MPI_Get_count(&status, MPI_BYTE, &n);
  std::string bytes(static_cast<std::size_t>(n), '\0');
  MPI_Recv(bytes.data(), n, MPI_BYTE, rank, status.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  if (got_tag) *got_tag = status.MPI_TAG;
  return bytes;
}

class MpiCluster final : public ClientCluster {
 public:
  explicit MpiCluster(int ranks) : ranks_(ranks) {}
  int ranks() const override { return ranks_; }
  void post(int rank, const std::string& order) override { send_bytes(order, rank, kOrder); }
  std::string collect(int rank) override { return receive_bytes(rank, kDone); }

 private:
  int ranks_;
};

}  // namespace

bool mpi_built_in() { return true; }

MpiSession::MpiSession() : world_(launched_world()) {
  if (!active()) return;
  int provided = 0;
  // Only the main thread calls MPI (the client pool's threads never do).
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_.size);
}

MpiSession::~MpiSession() {
  if (!active()) return;
  stop_workers();
  MPI_Finalize();
}

void MpiSession::stop_workers() {
  if (stopped_ || world_.rank != 0) return;
  stopped_ = true;
  for (int r = 1; r < world_.size; ++r) send_bytes(std::string(), r, kStop);
}

int MpiSession::guard(const std::function<int()>& body) {
  if (!active()) return body();
  int code = 0;
  std::string what;
  try {
    return body();
  } catch (const InputError& e) {
    what = e.what();
    code = 2;
  } catch (const std::exception& e) {
    what = e.what();
    code = 1;
  }
  // One write, so that the ranks' messages do not interleave.
  std::cerr << ("fedsim (rank " + std::to_string(world_.rank) + " of " + std::to_string(world_.size) +
                "): error: " + what + "\n")
            << std::flush;
  // The other ranks may be waiting for this one: end them all.
  MPI_Abort(MPI_COMM_WORLD, code);
  return code;
}

void MpiSession::agree(std::uint64_t fingerprint) {
  if (!active()) return;
  std::uint64_t root = fingerprint;
  MPI_Bcast(&root, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  if (root != fingerprint)
    throw InputError("this rank parsed another scenario than rank 0 (fingerprint " + std::to_string(fingerprint) +
                     ", rank 0's " + std::to_string(root) +
                     "): every rank must see the same scenario file and --set options");
}

std::unique_ptr<ClientCluster> MpiSession::cluster() {
  if (!active() || world_.rank != 0) return nullptr;
  return std::make_unique<MpiCluster>(world_.size);
}

void MpiSession::serve(const Scenario& scenario) {
  Server server(scenario);
  for (;;) {
    int tag = 0;
    const std::string order = receive_bytes(0, MPI_ANY_TAG, &tag);
    if (tag == kStop) return;
    if (tag != kOrder) throw DecodeError("a message with tag " + std::to_string(tag) + " from rank 0");
    send_bytes(server.serve(order), 0, kDone);
  }
}

#else  // built without MPI

bool mpi_built_in() { return false; }

MpiSession::MpiSession() : world_(launched_world()) {
  if (active())
    throw InputError("started by mpirun with " + std::to_string(world_.size) +
                     " ranks, but this fedsim was built without MPI (install libopenmpi-dev and rebuild)");
}
MpiSession::~MpiSession() = default;
void MpiSession::stop_workers() {}
int MpiSession::guard(const std::function<int()>& body) { return body(); }
void MpiSession::agree(std::uint64_t) {}
std::unique_ptr<ClientCluster> MpiSession::cluster() { return nullptr; }
void MpiSession::serve(const Scenario&) {}

#endif

}  // namespace fedsim
