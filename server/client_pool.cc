#include "server/client_pool.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <exception>
#include <vector>

namespace fedsim {

ClientPool::ClientPool(std::size_t threads) : pool_(threads) {}

ClientPool::~ClientPool() { pool_.join(); }

void ClientPool::run(std::size_t jobs, const std::function<void(std::size_t)>& work,
                     const std::function<void(std::size_t, double)>& on_done) {
  if (jobs == 0) return;
  std::vector<std::exception_ptr> errors(jobs);
  auto guard = boost::asio::make_work_guard(io_);
  std::size_t outstanding = jobs;
  for (std::size_t i = 0; i < jobs; ++i) {
    boost::asio::post(pool_, [&, i] {
      const auto start = std::chrono::steady_clock::now();
      try {
        work(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
      const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      boost::asio::post(io_, [&, i, wall_s] {
        if (!errors[i]) on_done(i, wall_s);
        if (--outstanding == 0) guard.reset();
      });
    });
  }
  io_.restart();
  io_.run();
  for (std::size_t i = 0; i < jobs; ++i) {
    if (!errors[i]) continue;
    try {
      std::rethrow_exception(errors[i]);
    } catch (const std::exception& e) {
      throw JobFailed(i, e.what());
    } catch (...) {
      throw JobFailed(i, "unknown exception");
    }
  }
}

}  // namespace fedsim
