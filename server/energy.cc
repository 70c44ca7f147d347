#include "server/energy.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>

#include "core/base/errors.h"
#include "server/checkpoint.h"
#include "server/link_model.h"
#include "server/network_faults.h"
#include "server/radio_model.h"

namespace fedsim {

namespace {

// One message through the client's radio, starting at `t` in state `radio` (advanced).
struct Message {
  double time_s = 0.0;
  Promotion promotion;
  double transfer_j = 0.0;
  double tail_before_j = 0.0;  // the previous message's tail, up to this one's start
  bool lost = false;  // given up (network faults)
};

// A faulty link's part of a message: its seed and where the client is in its trace.
struct Faults {
  const LinkFaults* f = nullptr;  // null: a faultless link
  std::uint64_t seed = 0;
  std::uint32_t client = 0;
  std::uint32_t round = 0;
  double cap_bps = 0.0;  // the server's share on the uplink (0 = none)
};

Message send(const RadioModel& r, const Link& link, RadioState& radio, double t, std::uint64_t bytes, double bps,
             Direction d, const Faults& faults = {}) {
  Message m;
  if (bytes == 0) return m;
  const double since_last_s = t - radio.last_end_s;  // +inf when the radio never sent
  if (std::isfinite(radio.last_end_s) && r.tail_s() > 0.0)
    m.tail_before_j = r.tail_energy_j(radio.charged_to_s - radio.last_end_s, since_last_s);
  m.promotion = r.promotion(since_last_s);
  if (faults.f == nullptr) {
    m.time_s = transfer_time_s(bytes, bps, link.latency_s) + m.promotion.delay_s;
    m.transfer_j = r.transfer_energy_j(8.0 * static_cast<double>(bytes), bps, d, link);
  } else {
    const LinkFaults& f = *faults.f;
    const bool up = d == Direction::kUp;
    const BandwidthTrace* trace = (up ? f.uplink_trace : f.downlink_trace).get();
    double phase_s = 0.0;
    if (trace != nullptr && f.random_trace_phase)
      phase_s = Rng::derive(faults.seed, Stream::kNetwork, {faults.client}).uniform() * trace->period_s();
    Rng rng = Rng::derive(faults.seed, Stream::kNetwork, {faults.client, faults.round, up ? 1u : 0u});
    const double start = t + m.promotion.delay_s;
    const FaultyTransfer x =
        faulty_transfer(f, bytes, start, bps, trace, phase_s, up ? faults.cap_bps : 0.0, link.latency_s, rng);
    m.time_s = x.time_s + m.promotion.delay_s;
    m.lost = x.lost;
    // Energy at the transfer's average rate (on a trace, a state-machine radio's active power is per second).
    const double bits = 8.0 * static_cast<double>(x.bytes_sent);
    m.transfer_j = r.transfer_energy_j(bits, x.data_s > 0.0 ? bits / x.data_s : bps, d, link);
  }
  radio.last_end_s = t + m.time_s;
  radio.charged_to_s = radio.last_end_s;
  return m;
}

RoundCost cost_at_level(const ClientTraits& client, const RoundWork& work, RadioState& radio, std::size_t level) {
  const Link& link = client.link;
  const RadioModel& r = *client.radio;
  const double up_bps =
      work.uplink_cap_bps > 0.0 ? std::min(link.uplink_bps, work.uplink_cap_bps) : link.uplink_bps;
  RoundCost c;
  c.server_s = work.server_s;
  c.level = level;
  const Faults faults{client.faults, work.network_seed, work.client, work.round, work.uplink_cap_bps};
  const Message down =
      send(r, link, radio, work.start_s + c.server_s, work.bytes_down, link.downlink_bps, Direction::kDown, faults);
  c.down_s = down.time_s;
  c.energy.rx_j = down.transfer_j;
  c.energy.promotion_j = down.promotion.energy_j;
  c.energy.tail_j = down.tail_before_j;
  if (down.lost) {
    c.lost_down = true;  // no model: nothing computed, nothing sent
    return c;
  }
  c.compute_s = client.profile->compute_time_s(work.macs, client.precision, level);
  if (client.device != nullptr) {
    // A device-trace client: the profile's time scaled to the device's rate at its top level.
    const double profile_s_per_mac = client.profile->compute_time_s(1.0, client.precision);
    c.compute_s /= client.device->macs_per_s * profile_s_per_mac;
  }
  const Message up = send(r, link, radio, work.start_s + (c.server_s + c.down_s + c.compute_s), work.bytes_up, up_bps,
                          Direction::kUp, faults);
  c.lost_up = up.lost;
  c.up_s = up.time_s;
  c.energy.compute_j = client.profile->compute_energy_j(work.macs, client.precision, level);
  c.energy.tx_j = up.transfer_j;
  c.energy.promotion_j = down.promotion.energy_j + up.promotion.energy_j;
  c.energy.tail_j = down.tail_before_j + up.tail_before_j;
  return c;
}

}  // namespace

RoundCost round_cost(const ClientTraits& client, const RoundWork& work, RadioState& radio) {
  assert(client.profile != nullptr && client.radio != nullptr);
  const std::size_t top = client.profile->num_levels() - 1;
  switch (client.frequency) {
    case FrequencyChoice::kMax: return cost_at_level(client, work, radio, top);
    case FrequencyChoice::kFixed: return cost_at_level(client, work, radio, client.fixed_level);
    case FrequencyChoice::kEnergyAware: {
      // The level with the least energy for the whole round (compute and the
      // radio, whose tail and promotions depend on when the upload starts)
      // among those that meet the deadline; the lowest of equals; else the highest.
      std::optional<RoundCost> best;
      RadioState best_radio;
      for (std::size_t level = 0; level <= top; ++level) {
        RadioState trial = radio;
        const RoundCost c = cost_at_level(client, work, trial, level);
        if (c.busy_s() <= work.deadline_s && (!best || c.total_j() < best->total_j())) {
          best = c;
          best_radio = trial;
        }
      }
      if (best) {
        radio = best_radio;
        return *best;
      }
      return cost_at_level(client, work, radio, top);
    }
  }
  return cost_at_level(client, work, radio, top);
}

RoundCost round_cost(const ClientTraits& client, std::uint64_t bytes_down, double macs, std::uint64_t bytes_up,
                     double uplink_cap_bps) {
  RadioState idle;
  RoundWork work;
  work.bytes_down = bytes_down;
  work.macs = macs;
  work.bytes_up = bytes_up;
  work.uplink_cap_bps = uplink_cap_bps;
  return round_cost(client, work, idle);
}

ServerEnergyModel ServerEnergyModel::parse(const Config& root) {
  ServerEnergyModel m;
  const Config c = root.child("server_energy");
  const double inf = std::numeric_limits<double>::infinity();
  const auto finite = [&](const std::string& key, double fallback, bool positive) {
    const double v = c.get_double(key, fallback, -inf, inf);
    if (!std::isfinite(v) || v < 0.0 || (positive && v == 0.0)) {
      const YAML::Node n = c.node()[key];
      c.fail(key, positive ? "a finite number > 0" : "a finite number >= 0", n.IsScalar() ? "'" + n.Scalar() + "'" : "nothing");
    }
    return v;
  };
  m.alpha = finite("alpha", m.alpha, false);
  m.cycles_per_round = finite("cycles_per_round", m.cycles_per_round, false);
  m.frequency_hz = finite("frequency_hz", m.frequency_hz, true);
  m.broadcast_w = finite("broadcast_w", m.broadcast_w, false);
  m.broadcast_bps = finite("broadcast_bps", m.broadcast_bps, true);
  c.finish();
  return m;
}

EnergyLedger::EnergyLedger(const Population& population)
    : population_(population),
      radio_tails_(population.any_radio_tail()),
      exhausted_by_class_(population.num_classes(), 0) {
  round_.class_j.assign(population.num_classes(), 0.0);
}

bool EnergyLedger::exhausted(std::uint32_t client) const {
  const auto it = totals_.find(client);
  return it != totals_.end() && it->second.exhausted_round >= 0;
}

const ClientEnergy& EnergyLedger::client(std::uint32_t client) const {
  static const ClientEnergy kNever;
  const auto it = totals_.find(client);
  return it == totals_.end() ? kNever : it->second;
}

bool EnergyLedger::add(std::uint32_t client, std::uint32_t round, const EnergyBreakdown& charged, double class_j,
                       double at_s) {
  ClientEnergy& e = totals_[client];
  const ClientTraits traits = population_.client(client);
  e.energy += charged;
  round_.energy += charged;
  round_.class_j[traits.class_index] += class_j;
  if (traits.charging.period_s > 0.0 && population_.is_charging(client, at_s)) {
    e.grid_j += class_j;
    round_.grid_j += class_j;
  }
  if (traits.battery_j > 0.0 && e.battery_draw_j() >= traits.battery_j) {
    e.exhausted_round = round;
    ++num_exhausted_;
    ++exhausted_by_class_[traits.class_index];
    ++round_.clients_exhausted;
    return false;
  }
  return true;
}

bool EnergyLedger::charge(std::uint32_t client, std::uint32_t round, const RoundCost& cost, double idle_s,
                          double at_s) {
  assert(idle_s >= 0.0);
  assert(!exhausted(client) && "an exhausted client was charged again");
  EnergyBreakdown charged = cost.energy;
  charged.idle_j = idle_s * population_.client(client).profile->idle_power_w();
  ++totals_[client].rounds;
  ++round_.clients_charged;
  return add(client, round, charged, cost.total_j() + charged.idle_j, at_s);
}

RoundCost EnergyLedger::round_cost(std::uint32_t client, const RoundWork& work) {
  RoundWork w = work;
  w.network_seed = population_.seed();
  w.client = client;
  if (!radio_tails_) {
    RadioState idle;
    return fedsim::round_cost(population_.client(client), w, idle);
  }
  return fedsim::round_cost(population_.client(client), w, radio_[client]);
}

bool EnergyLedger::model_lost(std::uint32_t client, const RoundWork& work) const {
  const ClientTraits t = population_.client(client);
  if (t.faults == nullptr || t.faults->loss_rate <= 0.0 || work.bytes_down == 0) return false;
  RoundWork w = work;
  w.network_seed = population_.seed();
  w.client = client;
  w.bytes_up = 0;
  const auto it = radio_.find(client);
  RadioState trial = it == radio_.end() ? RadioState{} : it->second;
  return fedsim::round_cost(t, w, trial).lost_down;
}

void EnergyLedger::charge_tails(std::uint32_t round, double now_s) {
  for (auto& [c, s] : radio_) {
    if (!std::isfinite(s.last_end_s) || exhausted(c)) continue;
    const RadioModel& r = *population_.client(c).radio;
    // Up to the close, or to the tail's end; charged_to_s lands exactly on
    // now_s, so the next segment starts where this one ends.
    const double end_s = std::min(now_s, s.last_end_s + r.tail_s());
    if (!(end_s > s.charged_to_s)) continue;
    const double segment_start_s = s.charged_to_s;
    EnergyBreakdown tail;
    tail.tail_j = r.tail_energy_j(segment_start_s - s.last_end_s, end_s - s.last_end_s);
    s.charged_to_s = end_s;
    add(c, round, tail, tail.tail_j, segment_start_s);
  }
}

double EnergyLedger::battery_left_j(std::uint32_t client) const {
  const double battery = population_.client(client).battery_j;
  if (battery <= 0.0) return std::numeric_limits<double>::infinity();
  return battery - this->client(client).battery_draw_j();
}

double EnergyLedger::total_j() const {
  double sum = 0.0;
  for (const auto& [c, e] : totals_) sum += e.total_j();
  return sum;
}

RoundEnergy EnergyLedger::take_round() {
  RoundEnergy out = std::move(round_);
  round_ = RoundEnergy{};
  round_.class_j.assign(population_.num_classes(), 0.0);
  return out;
}

namespace {
std::string number(double x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), x);
  return std::string(buf, r.ptr);
}
}  // namespace

void EnergyLedger::write_client_csv(const std::string& path) const {
  std::ofstream out(path);
  if (!out) throw InputError(path + ": cannot open for writing (per-client energy CSV)");
  out << "client,class,profile,rounds,compute_j,tx_j,rx_j,idle_j,total_j,battery_left_j,exhausted_round,promotion_j,"
         "tail_j,grid_j\n";
  for (const auto& [c, e] : totals_) {
    const ClientTraits t = population_.client(c);
    out << c << ',' << population_.class_name(t.class_index) << ',' << t.profile->name() << ',' << e.rounds << ','
        << number(e.energy.compute_j) << ',' << number(e.energy.tx_j) << ',' << number(e.energy.rx_j) << ','
        << number(e.energy.idle_j) << ','
        << number(e.total_j()) << ',';
    if (t.battery_j > 0.0) out << number(battery_left_j(c));
    out << ',';
    if (e.exhausted_round >= 0) out << e.exhausted_round;
    out << ',' << number(e.energy.promotion_j) << ',' << number(e.energy.tail_j) << ',' << number(e.grid_j) << '\n';
  }
  if (!out) throw InputError(path + ": write failed (per-client energy CSV)");
}

void EnergyLedger::save(StateWriter& out) const {
  out.begin("ledger");
  out.put<std::uint64_t>(totals_.size());
  for (const auto& [client, c] : totals_) {
    out.put(client);
    save_state(out, c.energy);
    out.put(c.grid_j), out.put(c.rounds), out.put(c.exhausted_round);
  }
  out.put<std::uint64_t>(radio_.size());
  for (const auto& [client, r] : radio_) out.put(client), out.put(r.last_end_s), out.put(r.charged_to_s);
  save_state(out, round_.energy);
  out.vec(round_.class_j);
  out.put(round_.grid_j), out.put<std::uint64_t>(round_.clients_charged), out.put<std::uint64_t>(round_.clients_exhausted);
}

void EnergyLedger::restore(StateReader& in) {
  in.begin("ledger");
  const std::size_t n = population_.num_clients();
  totals_.clear();
  num_exhausted_ = 0;
  std::fill(exhausted_by_class_.begin(), exhausted_by_class_.end(), 0);
  OrderedIds totals_ids(in, n, "the ledger's totals");
  for (std::size_t k = in.count(n, 4); k > 0; --k) {
    ClientEnergy& c = totals_[totals_ids.next()];
    restore_state(in, c.energy);
    c.grid_j = in.get<double>();
    c.rounds = in.get<std::uint64_t>();
    c.exhausted_round = in.get<std::int64_t>();
  }
  // Exhaustion counts are derived, not trusted.
  for (const auto& [client, c] : totals_)
    if (c.exhausted_round >= 0) ++num_exhausted_, ++exhausted_by_class_[population_.client(client).class_index];
  radio_.clear();
  OrderedIds radio_ids(in, n, "the ledger's radio states");
  const std::size_t radios = in.count(radio_tails_ ? n : 0, 4);
  for (std::size_t k = radios; k > 0; --k) {
    RadioState& r = radio_[radio_ids.next()];
    r.last_end_s = in.get<double>();
    r.charged_to_s = in.get<double>();
  }
  restore_state(in, round_.energy);
  round_.class_j = in.vec<double>(round_.class_j.size());
  round_.grid_j = in.get<double>();
  round_.clients_charged = static_cast<std::size_t>(in.get<std::uint64_t>());
  round_.clients_exhausted = static_cast<std::size_t>(in.get<std::uint64_t>());
}

}  // namespace fedsim
