// FedBuff (Nguyen et al. 2022), policy "async": `concurrency` clients are
// always in flight; every `buffer_size` arrivals the server aggregates,
// weighting each update by (1 + staleness)^-staleness_exponent, where
// staleness = model versions since the update's base model (read from the
// UpdateUp). A "round" is one aggregation.
//
// Keys: buffer_size >= 1 (default 10), concurrency in [0, clients] (0, the
// default: clients_per_round), staleness_exponent in [0, 10] (default 0.5).
//
// Availability and drop-out are drawn per dispatch (population.h): one
// dispatch per refill of the clients in flight, and one per retry while
// nobody is in flight (every simulated second, as long as some client with
// battery left can come online again). A client is charged its round when
// its update arrives.
#include <cmath>
#include <map>
#include <memory>

#include "server/checkpoint.h"
#include "server/round_policy.h"
#include "server/server.h"

namespace fedsim {
namespace {

constexpr double kRetryAfterS = 1.0;

class FedBuff final : public RoundPolicy {
 public:
  FedBuff(const Config& server, const PolicyInput& in)
      : buffer_size_(static_cast<std::size_t>(server.get_int("buffer_size", 10, 1, 10'000'000))),
        concurrency_(static_cast<std::size_t>(server.get_int("concurrency", 0, 0, 10'000'000))),
        staleness_exponent_(server.get_double("staleness_exponent", 0.5, 0.0, 10.0)),
        rounds_(in.rounds) {
    if (concurrency_ == 0) concurrency_ = in.clients_per_round;
    if (concurrency_ > in.num_clients)
      server.fail("concurrency", "at most clients (" + std::to_string(in.num_clients) + ")",
                  "'" + std::to_string(concurrency_) + "'");
    m_.round = 1;
  }

  void start(Server& s) override { dispatch(s, concurrency_); }

  void on_event(Server& s, const Event& e) override {
    if (e.kind == kRetry) {
      dispatch(s, concurrency_);
      return;
    }
    const auto it = flights_.find(e.arg);
    if (it == flights_.end())  // only a restored state that contradicts itself gets here
      throw DecodeError("FedBuff: an arrival event names flight " + std::to_string(e.arg) + ", which is not in flight");
    Flight f = std::move(it->second);
    flights_.erase(it);
    arrive(s, f);
  }

  bool on_idle(Server& s) override {
    // Nobody in flight (everyone offline or out of battery): try again later,
    // unless no client can ever come back.
    if (finished() || !s.may_return()) return false;
    s.clock().schedule(s.now_s() + kRetryAfterS, kServerTarget, kRetry);
    return true;
  }

  bool finished() const override { return aggregations_ >= rounds_; }
  bool broadcasts_to_all() const override { return false; }

  void save(StateWriter& out) const override {
    out.begin("async");
    out.put<std::uint64_t>(flights_.size());
    for (const auto& [id, f] : flights_) {
      out.put(id);
      save_state(out, f);
    }
    out.put(next_flight_);
    out.put<std::uint64_t>(buffer_.size());
    for (const ReceivedUpdate& u : buffer_) save_state(out, u);
    save_state(out, m_);
    out.put(dispatches_), out.put(aggregations_), out.put<std::uint64_t>(in_flight_);
    out.put<std::uint64_t>(exhausted_before_), out.put(round_start_s_);
  }

  void restore(StateReader& in, Server& s) override {
    in.begin("async");
    flights_.clear();
    for (std::size_t n = in.count(s.num_clients(), 8); n > 0; --n) {
      const auto id = in.get<std::uint64_t>();
      Flight f;
      restore_state(in, f);
      if (f.client >= s.num_clients() || !flights_.emplace(id, std::move(f)).second)
        throw DecodeError("an inconsistent flight in FedBuff's table");
    }
    next_flight_ = in.get<std::uint64_t>();
    buffer_.resize(in.count(buffer_size_, 8));
    for (ReceivedUpdate& u : buffer_) {
      restore_state(in, u, s.num_params());
      if (u.header.client >= s.num_clients()) throw DecodeError("a buffered update of client " + std::to_string(u.header.client));
    }
    restore_state(in, m_);
    dispatches_ = in.get<std::uint32_t>();
    aggregations_ = in.get<std::uint64_t>();
    in_flight_ = static_cast<std::size_t>(in.get<std::uint64_t>());
    exhausted_before_ = static_cast<std::size_t>(in.get<std::uint64_t>());
    round_start_s_ = in.get<double>();
    if (in_flight_ != flights_.size() || aggregations_ > rounds_ ||
        (!flights_.empty() && flights_.rbegin()->first >= next_flight_))
      throw DecodeError("FedBuff's counters do not match its flights");
  }

 private:
  enum Kind : std::uint32_t { kArrival, kRetry };

  std::uint32_t ledger_round() const { return static_cast<std::uint32_t>(aggregations_ + 1); }

  void dispatch(Server& s, std::size_t how_many) {
    ++dispatches_;
    const std::vector<std::uint32_t> chosen =
        s.sample_available(dispatches_, s.now_s(), how_many, dispatches_);
    const Broadcast model = s.broadcast(ledger_round());
    m_.bytes_down += model.bytes * chosen.size();
    for (Flight& f : s.dispatch(DispatchPlan{dispatches_, ledger_round(), concurrency_}, chosen, model, m_)) {
      s.state(f.client).in_flight = true;
      ++in_flight_;
      s.clock().schedule(f.arrive_s, f.client, kArrival, next_flight_);
      flights_.emplace(next_flight_++, std::move(f));
    }
  }

  void arrive(Server& s, const Flight& f) {
    s.state(f.client).in_flight = false;
    --in_flight_;
    s.charge(f.client, ledger_round(), f.cost, 0.0, f.start_s);
    m_.bytes_up += f.update.size();
    std::optional<ReceivedUpdate> got = s.receive(f, m_);
    s.record(f, ledger_round(), got.has_value());
    if (got) buffer_.push_back(std::move(*got));
    if (buffer_.size() >= buffer_size_) flush(s);
    if (!finished() && in_flight_ < concurrency_) dispatch(s, concurrency_ - in_flight_);
  }

  void flush(Server& s) {
    std::vector<Accepted> accepted;
    for (const ReceivedUpdate& u : buffer_)
      accepted.push_back(
          {&u, std::pow(1.0 + static_cast<double>(s.version() - u.header.base_version), -staleness_exponent_)});
    s.aggregate(std::move(accepted), m_);
    ++aggregations_;
    m_.round = aggregations_;
    m_.dropped_battery = s.num_exhausted() - exhausted_before_;
    m_.round_time_s = s.now_s() - round_start_s_;
    round_start_s_ = s.now_s();
    buffer_.clear();
    s.close_round(m_, aggregations_ == rounds_);  // adds clients exhausted by radio tails
    exhausted_before_ = s.num_exhausted();
    m_ = RoundMetrics{};
  }

  std::size_t buffer_size_;
  std::size_t concurrency_;
  double staleness_exponent_;
  std::size_t rounds_;
  std::map<std::uint64_t, Flight> flights_;  // in flight, by the id their arrival event carries
  std::uint64_t next_flight_ = 0;
  std::vector<ReceivedUpdate> buffer_;
  RoundMetrics m_;  // the aggregation being filled
  std::uint32_t dispatches_ = 0;
  std::uint64_t aggregations_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t exhausted_before_ = 0;
  double round_start_s_ = 0.0;
};

FEDSIM_REGISTER(RoundPolicyRegistry, "async", make_round_policy<FedBuff>,
                "FedBuff: concurrency clients in flight, aggregate every buffer_size arrivals, staleness-weighted");

}  // namespace
}  // namespace fedsim
