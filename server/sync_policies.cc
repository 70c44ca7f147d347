// Synchronous round policies. Round k sends the model at t0 (when round k-1
// closed, or later if every free client was busy: then the server waits for
// the first one to become free) to clients sampled among those free and
// online, and closes
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
#include <memory>
#include <optional>

#include "server/round_policy.h"
#include "server/server.h"

namespace fedsim {
namespace {

// Server events (round starts, deadlines) come after client arrivals at the same time.
constexpr std::uint64_t kServerEvent = std::numeric_limits<std::uint64_t>::max();

struct SyncRound {
  std::uint32_t number = 0;
  double start_s = 0.0;  // the previous round's close
  double t0 = 0.0;       // model sent
  std::size_t exhausted_before = 0;
  bool open = false;
  RoundMetrics m;
  std::vector<Flight> flights;  // by client id
  std::vector<std::optional<ReceivedUpdate>> taken;
  std::size_t arrived = 0;
  std::size_t accepted = 0;
};

class SyncPolicy : public RoundPolicy {
 public:
  explicit SyncPolicy(const PolicyInput& in) : per_round_(in.clients_per_round), rounds_(in.rounds) {}

  void start(Server& s) override {
    next_ = std::make_shared<SyncRound>();
    next_->number = 1;
    begin(s);
  }
  bool on_idle(Server&) override { return false; }  // an open round always has an event pending
  bool finished() const override { return closed_ >= rounds_; }
  bool broadcasts_to_all() const override { return true; }

 protected:
  // How many clients to sample for `per_round` wanted.
  virtual std::size_t sample_size(std::size_t per_round) const { return per_round; }
  // After the round's clients were dispatched (flights non-empty).
  virtual void on_dispatched(Server& s, const std::shared_ptr<SyncRound>& round) {
    (void)s;
    (void)round;
  }
  // Whether the round closes now, after an arrival.
  virtual bool closes_after_arrival(const SyncRound& r) const { return r.arrived == r.flights.size(); }

  void close(Server& s, SyncRound& r) {
    const double round_end = s.now_s();
    std::vector<Accepted> accepted;
    for (std::size_t i = 0; i < r.flights.size(); ++i) {
      const Flight& f = r.flights[i];
      s.charge(f.client, r.number, f.cost, std::max(0.0, round_end - f.arrive_s));
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
    if (closed_ >= rounds_) return;
    // Late arrivals at this very time are decoded before the next round samples.
    next_ = std::make_shared<SyncRound>();
    next_->number = r.number + 1;
    s.clock().schedule(round_end, kServerEvent, [this, &s] { begin(s); });
  }

  std::size_t per_round_;

 private:
  void begin(Server& s) {
    SyncRound& r = *next_;
    r.start_s = s.now_s();
    if (s.available_clients(r.number, r.start_s).empty()) {
      // Every client left may still be finishing an earlier round: wait for
      // the first of them rather than run empty rounds that take no time.
      const double next_free = s.next_free_s(r.start_s);
      if (std::isfinite(next_free)) {
        s.clock().schedule(next_free, kServerEvent, [this, &s] { dispatch(s); });
        return;
      }
    }
    dispatch(s);
  }

  void dispatch(Server& s) {
    std::shared_ptr<SyncRound> round = next_;
    SyncRound& r = *round;
    r.t0 = s.now_s();
    r.open = true;
    r.m.round = r.number;
    r.exhausted_before = s.num_exhausted();
    const std::vector<std::uint32_t> sampled =
        s.sample(s.available_clients(r.number, r.t0), sample_size(per_round_), r.number);
    const Broadcast model = s.broadcast(r.number);
    // A downlink with memory is a broadcast every client with battery left receives.
    const bool plain = s.scenario().downlink.is_plain_float32();
    r.m.bytes_down = model.bytes * (plain ? sampled.size() : s.num_clients() - s.num_exhausted());
    r.flights = s.dispatch(DispatchPlan{r.number, r.number, 0}, sampled, model, &r.m.dropped_offline);
    r.taken.resize(r.flights.size());
    if (r.flights.empty()) {
      close(s, r);
      return;
    }
    for (std::size_t i = 0; i < r.flights.size(); ++i)
      s.clock().schedule(r.flights[i].arrive_s, r.flights[i].client, [this, &s, round, i] { arrive(s, *round, i); });
    on_dispatched(s, round);
  }

  void arrive(Server& s, SyncRound& r, std::size_t i) {
    // Decode every message, late ones too: stateful stages stay in step with
    // the client even when the update is not used. Counts go to the round open now.
    std::optional<ReceivedUpdate> got = s.receive(r.flights[i], next_->m);
    if (!r.open) return;
    ++r.arrived;
    if (got) {
      r.taken[i] = std::move(got);
      ++r.accepted;
    }
    if (closes_after_arrival(r)) close(s, r);
  }

  std::size_t rounds_;
  std::size_t closed_ = 0;
  std::shared_ptr<SyncRound> next_;  // the open round, or the next one between a close and its start
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

 private:
  void on_dispatched(Server& s, const std::shared_ptr<SyncRound>& round) override {
    // Arrivals at the deadline itself are on time (client events come first).
    s.clock().schedule(round->t0 + deadline_s_, kServerEvent, [this, &s, round] {
      if (!round->open) return;
      round->m.dropped_deadline = round->flights.size() - round->arrived;
      close(s, *round);
    });
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
