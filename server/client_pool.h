// The worker threads that run clients' local rounds. Client work is the only
// parallel part of a run: the server hands a batch of jobs to the pool and
// waits; each finished job is handed back on the server's thread (through a
// Boost.Asio io_context), so the server's state is only ever touched by one
// thread and no result depends on which worker ran it or when.
#pragma once

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>

#include <utility>  // before asio (see README: Boost 1.74 + GCC 12 + C++20)

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

namespace fedsim {

class ClientPool {
 public:
  struct JobFailed : std::runtime_error {
    JobFailed(std::size_t failed_job, const std::string& what) : std::runtime_error(what), job(failed_job) {}
    std::size_t job;
  };

  explicit ClientPool(std::size_t threads);
  ~ClientPool();

  // Runs work(i) for every i in [0, jobs) on the workers and on_done(i, wall_s)
  // on the calling thread as each finishes (wall_s: the job's wall time, for
  // profiling only). Returns when all are done. If jobs threw, JobFailed for
  // the lowest-numbered failed job is thrown (so the same whatever the thread
  // timing), after every job has finished; on_done is not called for failed
  // jobs.
  void run(std::size_t jobs, const std::function<void(std::size_t)>& work,
           const std::function<void(std::size_t, double)>& on_done);

 private:
  boost::asio::io_context io_;
  boost::asio::thread_pool pool_;
};

}  // namespace fedsim
