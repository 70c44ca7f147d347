// Synchronous round policies. Round k sends the model at t0 (when round k-1
// closed, or, if no client is free then, when the first busy one becomes
// free) to clients sampled among those free and online, and closes
//   wait_all:       at the last arrival;
//   deadline:       at the last arrival if all came by t0 + deadline_s, else
//                   at t0 + deadline_s; later updates are dropped (dropped_deadline);
//   over_selection: samples ceil(r * over_selection) and closes at the r-th
//                   accepted arrival (or the last, if fewer than r are accepted).
// The next round starts when one closes, so round_time_s adds up to
// sim_time_s. A client whose update arrives after its round closed (late or
// surplus) stays busy, and is not sampled, until it arrives; its message is
// still decoded then, so stateful stages on both ends stay in step.
//
// Accounting: at the close every dispatched client is charged its round and,
// if it finished early, idle power until the close; bytes_up counts the
// updates of every client dispatched in the round, late ones included.
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>

#include "server/checkpoint.h"
#include "server/round_policy.h"
#include "server/server.h"

namespace fedsim {
namespace {

struct SyncRound {
  std::uint32_t number = 0;
  double start_s = 0.0;  // the previous round's close
  double t0 = 0.0;       // model sent
  std::size_t exhausted_before = 0;
  bool open = false;
  RoundMetrics m;
  std::vector<Flight> flights;  // by client id
  std::vector<std::optional<ReceivedUpdate>> taken;
  std::size_t arrived = 0;    // while open
  std::size_t delivered = 0;  // all arrivals, late ones included
  std::size_t accepted = 0;
};

class SyncPolicy : public RoundPolicy {
 public:
  explicit SyncPolicy(const PolicyInput& in) : per_round_(in.clients_per_round), rounds_(in.rounds) {}

  void start(Server& s) override {
    current_ = 1;
    rounds_open_[current_].number = current_;
    begin(s);
  }

  void on_event(Server& s, const Event& e) override {
    switch (e.kind) {
      case kArrival:
        arrive(s, static_cast<std::uint32_t>(e.arg >> 32), static_cast<std::size_t>(e.arg & 0xffffffffu));
        break;
      case kBegin:
        begin(s);
        break;
      case kDispatch:
        dispatch(s, s.sample_available(current_, s.now_s(), sample_size(per_round_), current_));
        break;
      case kDeadline:
        // A round that closed with every update in may be gone already.
        if (const auto it = rounds_open_.find(static_cast<std::uint32_t>(e.arg)); it != rounds_open_.end())
          on_deadline(s, it->second);
        break;
    }
  }

  bool on_idle(Server&) override { return false; }  // an open round always has an event pending
  bool finished() const override { return closed_ >= rounds_; }
  bool broadcasts_to_all() const override { return true; }

  void save(StateWriter& out) const override {
    out.begin("sync_policy");
    out.put<std::uint64_t>(closed_);
    out.put(current_);
    out.put<std::uint64_t>(rounds_open_.size());
    for (const auto& [number, r] : rounds_open_) {
      out.put(r.number), out.put(r.start_s), out.put(r.t0), out.put<std::uint64_t>(r.exhausted_before);
      out.put(r.open);
      save_state(out, r.m);
      out.put<std::uint64_t>(r.flights.size());
      for (const Flight& f : r.flights) save_state(out, f);
      out.put<std::uint64_t>(r.taken.size());
      for (const auto& t : r.taken) {
        out.put(t.has_value());
        if (t) save_state(out, *t);
      }
      out.put<std::uint64_t>(r.arrived), out.put<std::uint64_t>(r.delivered), out.put<std::uint64_t>(r.accepted);
    }
  }

  void restore(StateReader& in, Server& s) override {
    in.begin("sync_policy");
    closed_ = static_cast<std::size_t>(in.get<std::uint64_t>());
    current_ = in.get<std::uint32_t>();
    rounds_open_.clear();
    for (std::size_t n = in.count(rounds_ + 1, 8); n > 0; --n) {
      SyncRound r;
      r.number = in.get<std::uint32_t>();
      r.start_s = in.get<double>();
      r.t0 = in.get<double>();
      r.exhausted_before = static_cast<std::size_t>(in.get<std::uint64_t>());
      r.open = in.get<bool>();
      restore_state(in, r.m);
      r.flights.resize(in.count(s.num_clients(), 8));
      for (Flight& f : r.flights) {
        restore_state(in, f);
        if (f.client >= s.num_clients()) throw DecodeError("a flight of client " + std::to_string(f.client));
      }
      r.taken.resize(in.count(r.flights.size(), 1));
      if (!r.taken.empty() && r.taken.size() != r.flights.size())
        throw DecodeError("round " + std::to_string(r.number) + ": updates taken do not match its flights");
      for (std::size_t i = 0; i < r.taken.size(); ++i)
        if (in.get<bool>()) {
          restore_state(in, r.taken[i].emplace(), s.num_params());
          if (r.taken[i]->header.client != r.flights[i].client)
            throw DecodeError("an update taken from client " + std::to_string(r.taken[i]->header.client) +
                              " for a flight of client " + std::to_string(r.flights[i].client));
        }
      r.arrived = static_cast<std::size_t>(in.get<std::uint64_t>());
      r.delivered = static_cast<std::size_t>(in.get<std::uint64_t>());
      r.accepted = static_cast<std::size_t>(in.get<std::uint64_t>());
      const std::uint32_t number = r.number;
      if (number > rounds_ || r.arrived > r.flights.size() || r.delivered > r.flights.size() ||
          !rounds_open_.emplace(number, std::move(r)).second)
        throw DecodeError("an inconsistent synchronous round in the policy's table");
    }
    if (closed_ > rounds_ || (closed_ < rounds_ && !rounds_open_.count(current_)))
      throw DecodeError("the policy's current round " + std::to_string(current_) + " is not in its table");
  }

 protected:
  enum Kind : std::uint32_t { kArrival, kBegin, kDispatch, kDeadline };

  // How many clients to sample for `per_round` wanted.
  virtual std::size_t sample_size(std::size_t per_round) const { return per_round; }
  // After the round's clients were dispatched (flights non-empty).
  virtual void on_dispatched(Server& s, const SyncRound& r) {
    (void)s;
    (void)r;
  }
  // The deadline event of round r (scheduled by on_dispatched) is due.
  virtual void on_deadline(Server& s, SyncRound& r) {
    (void)s;
    (void)r;
  }
  // Whether the round closes now, after an arrival.
  virtual bool closes_after_arrival(const SyncRound& r) const { return r.arrived == r.flights.size(); }

  void close(Server& s, SyncRound& r) {
    const double round_end = s.now_s();
    std::vector<Accepted> accepted;
    for (std::size_t i = 0; i < r.flights.size(); ++i) {
      const Flight& f = r.flights[i];
      s.charge(f.client, r.number, f.cost, std::max(0.0, round_end - f.arrive_s), f.start_s);
      s.state(f.client).busy_until_s = f.arrive_s;
      s.record(f, r.number, r.taken[i].has_value());
      r.m.bytes_up += f.update.size();
      if (r.taken[i]) accepted.push_back({&*r.taken[i], 1.0});
    }
    s.aggregate(std::move(accepted), r.m);
    r.m.dropped_battery = s.num_exhausted() - r.exhausted_before;
    r.m.round_time_s = round_end - r.start_s;
    r.open = false;
    s.close_round(r.m, r.number == rounds_);
    r.taken.clear();
    ++closed_;
    const std::uint32_t number = r.number;
    if (closed_ < rounds_) {
      // Late arrivals at this very time are decoded before the next round samples.
      ++current_;
      rounds_open_[current_].number = current_;
      s.clock().schedule(round_end, kServerTarget, kBegin);
    }
    forget_if_done(number);  // may erase r
  }

  std::size_t per_round_;

 private:
  void begin(Server& s) {
    SyncRound& r = rounds_open_.at(current_);
    r.start_s = s.now_s();
    std::vector<std::uint32_t> sampled = s.sample_available(r.number, r.start_s, sample_size(per_round_), r.number);
    if (sampled.empty()) {
      // Every client left may still be finishing an earlier round: wait for
      // the first of them rather than run empty rounds that take no time.
      const double next_free = s.next_free_s(r.start_s);
      if (std::isfinite(next_free)) {
        s.clock().schedule(next_free, kServerTarget, kDispatch);
        return;
      }
    }
    dispatch(s, sampled);
  }

  // `sampled`: clients free and online now, drawn for this round.
  void dispatch(Server& s, const std::vector<std::uint32_t>& sampled) {
    SyncRound& r = rounds_open_.at(current_);
    r.t0 = s.now_s();
    r.open = true;
    r.m.round = r.number;
    r.exhausted_before = s.num_exhausted();
    const Broadcast model = s.broadcast(r.number);
    // A downlink with memory is a broadcast every client with battery left receives.
    const bool plain = s.scenario().downlink.is_plain_float32();
    r.m.bytes_down = model.bytes * (plain ? sampled.size() : s.num_clients() - s.num_exhausted());
    r.flights = s.dispatch(DispatchPlan{r.number, r.number, 0}, sampled, model, r.m);
    r.taken.resize(r.flights.size());
    if (r.flights.empty()) {
      close(s, r);
      return;
    }
    for (std::size_t i = 0; i < r.flights.size(); ++i)
      s.clock().schedule(r.flights[i].arrive_s, r.flights[i].client, kArrival,
                         (std::uint64_t{r.number} << 32) | static_cast<std::uint64_t>(i));
    on_dispatched(s, r);
  }

  void arrive(Server& s, std::uint32_t number, std::size_t i) {
    SyncRound& r = rounds_open_.at(number);
    // Decode every message, late ones too: stateful stages stay in step with
    // the client even when the update is not used. Counts go to the round open now.
    std::optional<ReceivedUpdate> got = s.receive(r.flights[i], rounds_open_.at(current_).m);
    ++r.delivered;
    if (!r.open) {
      forget_if_done(number);
      return;
    }
    ++r.arrived;
    if (got) {
      r.taken[i] = std::move(got);
      ++r.accepted;
    }
    if (closes_after_arrival(r)) close(s, r);
  }

  // A closed round whose every update has arrived is of no more use (a
  // deadline event may still name it: on_event skips a missing round).
  void forget_if_done(std::uint32_t number) {
    const SyncRound& r = rounds_open_.at(number);
    if (!r.open && r.delivered == r.flights.size() && number != current_) rounds_open_.erase(number);
  }

  std::size_t rounds_;
  std::size_t closed_ = 0;
  std::uint32_t current_ = 0;  // the open round, or the next one between a close and its start
  // Rounds still referred to by events: the current one and closed ones
  // with updates in flight.
  std::map<std::uint32_t, SyncRound> rounds_open_;
};

class WaitAll final : public SyncPolicy {
 public:
  WaitAll(const Config&, const PolicyInput& in) : SyncPolicy(in) {}
};

class Deadline final : public SyncPolicy {
 public:
  Deadline(const Config& server, const PolicyInput& in)
      : SyncPolicy(in), deadline_s_(server.get_double("deadline_s", 0.0, 0.0, std::numeric_limits<double>::infinity())) {
    if (deadline_s_ <= 0.0) server.fail("deadline_s", "a deadline > 0 seconds for policy 'deadline'", "nothing");
  }
  double round_deadline_s() const override { return deadline_s_; }

 private:
  void on_dispatched(Server& s, const SyncRound& r) override {
    // Arrivals at the deadline itself are on time (server events come last).
    s.clock().schedule(r.t0 + deadline_s_, kServerTarget, kDeadline, r.number);
  }
  void on_deadline(Server& s, SyncRound& r) override {
    if (!r.open) return;  // every update came in time
    r.m.dropped_deadline = r.flights.size() - r.arrived;
    close(s, r);
  }

  double deadline_s_;
};

class OverSelection final : public SyncPolicy {
 public:
  OverSelection(const Config& server, const PolicyInput& in)
      : SyncPolicy(in), factor_(server.get_double("over_selection", 1.0, 1.0, 100.0)) {
    if (factor_ <= 1.0)
      server.fail("over_selection", "a factor > 1 for policy 'over_selection'", "'" + std::to_string(factor_) + "'");
  }

 private:
  std::size_t sample_size(std::size_t per_round) const override {
    return static_cast<std::size_t>(std::ceil(static_cast<double>(per_round) * factor_));
  }
  bool closes_after_arrival(const SyncRound& r) const override {
    return r.accepted == per_round_ || r.arrived == r.flights.size();
  }

  double factor_;
};

FEDSIM_REGISTER(RoundPolicyRegistry, "wait_all", make_round_policy<WaitAll>,
                "synchronous: the round closes at the last arrival");
FEDSIM_REGISTER(RoundPolicyRegistry, "deadline", make_round_policy<Deadline>,
                "synchronous: updates after deadline_s are dropped");
FEDSIM_REGISTER(RoundPolicyRegistry, "over_selection", make_round_policy<OverSelection>,
                "synchronous: sample ceil(r x over_selection), aggregate the first r arrivals");

}  // namespace
}  // namespace fedsim
