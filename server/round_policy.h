// Round policies (Flower's Strategy, for the schedule): a policy decides whom
// the server dispatches and when, which arriving updates count, and when a
// round closes. The server (server/server.h) offers the steps -- sample,
// broadcast, dispatch, receive, aggregate, close a round -- and the one
// virtual clock; the policy composes them in its event handler. The event
// loop (Simulation::run) only pops events, hands them to the policy and asks
// whether the run is over: it never asks for a policy's name.
//
// Events are data (server/virtual_clock.h): a policy schedules (time,
// target, kind, arg) and keeps what they refer to (flights, open rounds) in
// its own tables, so that its whole state can be checkpointed.
//
// One class per policy, registered by name (`server: {policy: NAME, its keys}`):
//   server/sync_policies.cc    wait_all, deadline, over_selection
//   server/fedbuff_policy.cc   async (FedBuff)
#pragma once

#include <cstddef>
#include <limits>
#include <memory>

#include "core/base/config.h"
#include "core/base/registry.h"
#include "core/base/state_io.h"
#include "server/virtual_clock.h"

namespace fedsim {

class Server;

// What a policy's factory knows of the scenario besides its own keys.
struct PolicyInput {
  std::size_t num_clients = 0;
  std::size_t clients_per_round = 0;
  std::size_t rounds = 0;
};

// Contract: one instance per run, used from the server's event loop only.
// Deterministic: every decision depends on the server's state and the
// seeded streams, never on wall time or thread timing. The factory reads and
// validates the policy's keys (InputError with file:line: key).
class RoundPolicy {
 public:
  virtual ~RoundPolicy() = default;
  // Called once at virtual time 0: dispatch the first clients, schedule events.
  virtual void start(Server& server) = 0;
  // An event this policy scheduled is due (the clock stands at its time).
  virtual void on_event(Server& server, const Event& event) = 0;
  // The event queue ran empty: schedule something, or return false when
  // nothing can ever happen again (the run ends early).
  virtual bool on_idle(Server& server) = 0;
  // True once the scenario's rounds are done.
  virtual bool finished() const = 0;
  // Whether every client receives every broadcast (needed by a downlink with
  // memory, where all clients hold the same reference).
  virtual bool broadcasts_to_all() const = 0;
  // The time a dispatched client has to deliver its update (clients with
  // `frequency: energy_aware` aim for it); +infinity when the policy has none.
  virtual double round_deadline_s() const { return std::numeric_limits<double>::infinity(); }
  // Whether clients train only through Server::dispatch(), so that an MPI
  // job may run them on other ranks (Server::set_cluster). A policy that runs
  // clients' pipelines itself (gossip) keeps them all on rank 0.
  virtual bool dispatches_clients() const { return true; }
  // Checkpoints (server/checkpoint.h): save() writes the policy's tables
  // between two events. A resumed run calls restore() instead of start(), on
  // a server whose own state is already restored; it reads the tables back
  // and throws DecodeError on anything inconsistent with the server.
  virtual void save(StateWriter& out) const = 0;
  virtual void restore(StateReader& in, Server& server) = 0;
};

using RoundPolicyRegistry = Registry<RoundPolicy, const Config&, const PolicyInput&>;

// The registry factory of a policy class constructed from (server keys, input).
template <class Policy>
std::unique_ptr<RoundPolicy> make_round_policy(const Config& server, const PolicyInput& input) {
  return std::make_unique<Policy>(server, input);
}

}  // namespace fedsim
