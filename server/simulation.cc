#include "server/simulation.h"

#include <chrono>

namespace fedsim {

Simulation::Simulation(const Scenario& scenario)
    : server_(std::make_unique<Server>(scenario)), policy_(scenario.make_policy()) {}

Simulation::~Simulation() = default;

RunSummary Simulation::run(const std::function<void(const RoundMetrics&)>& on_round,
                           const std::function<void(std::size_t)>& after_close) {
  const auto wall_start = std::chrono::steady_clock::now();
  server_->set_round_sink(on_round);
  VirtualClock& clock = server_->clock();
  // The event loop: the policy reacts to every event; nothing else moves the clock.
  if (!restored_) policy_->start(*server_);
  std::size_t closed = rounds_closed();
  while (!policy_->finished()) {
    if (clock.empty() && !policy_->on_idle(*server_)) break;  // nothing can happen any more
    if (!clock.empty()) policy_->on_event(*server_, clock.pop());
    if (after_close && rounds_closed() != closed && !policy_->finished()) after_close(rounds_closed());
    closed = rounds_closed();
  }
  RunSummary summary = server_->summary();
  summary.sim_time_s = clock.now_s();
  summary.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  summary.model_math_s = server_->model_math_s();
  summary.clients_exhausted = server_->ledger().num_exhausted();
  summary.clients_participated = server_->participants().size();
  summary.client_state_bytes = server_->client_state_bytes();
  return summary;
}

std::string Simulation::save() const {
  StateWriter out;
  out.begin("simulation");
  server_->save(out);
  policy_->save(out);
  return out.take();
}

void Simulation::restore(std::string_view state) {
  StateReader in(state);
  in.begin("simulation");
  server_->restore(in);
  policy_->restore(in, *server_);
  if (!in.done()) throw DecodeError(std::to_string(in.left()) + " bytes after the end of the state");
  restored_ = true;
}

}  // namespace fedsim
