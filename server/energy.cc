#include "server/energy.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <fstream>
#include <limits>

#include "core/base/errors.h"
#include "server/link_model.h"

namespace fedsim {

RoundCost round_cost(const ClientTraits& client, std::uint64_t bytes_down, double macs, std::uint64_t bytes_up,
                     double uplink_cap_bps) {
  assert(client.profile != nullptr);
  const Link& link = client.link;
  const double up_bps = uplink_cap_bps > 0.0 ? std::min(link.uplink_bps, uplink_cap_bps) : link.uplink_bps;
  RoundCost c;
  c.down_s = transfer_time_s(bytes_down, link.downlink_bps, link.latency_s);
  c.compute_s = client.profile->compute_time_s(macs, client.precision);
  c.up_s = transfer_time_s(bytes_up, up_bps, link.latency_s);
  c.energy.rx_j = 8.0 * static_cast<double>(bytes_down) * link.rx_j_per_bit;
  c.energy.compute_j = client.profile->compute_energy_j(macs, client.precision);
  c.energy.tx_j = 8.0 * static_cast<double>(bytes_up) * link.tx_j_per_bit;
  return c;
}

EnergyLedger::EnergyLedger(const Population& population)
    : population_(population), totals_(population.num_clients()) {
  round_.class_j.assign(population.num_classes(), 0.0);
}

bool EnergyLedger::charge(std::uint32_t client, std::uint32_t round, const RoundCost& cost, double idle_s) {
  assert(idle_s >= 0.0);
  ClientEnergy& e = totals_.at(client);
  assert(e.exhausted_round < 0 && "an exhausted client was charged again");
  const ClientTraits& traits = population_.client(client);
  EnergyBreakdown charged = cost.energy;
  charged.idle_j = idle_s * traits.profile->idle_power_w();
  e.energy += charged;
  ++e.rounds;
  round_.energy += charged;
  round_.class_j[traits.class_index] += cost.total_j() + charged.idle_j;
  ++round_.clients_charged;
  if (traits.battery_j > 0.0 && e.total_j() >= traits.battery_j) {
    e.exhausted_round = round;
    ++num_exhausted_;
    ++round_.clients_exhausted;
    return false;
  }
  return true;
}

double EnergyLedger::battery_left_j(std::uint32_t client) const {
  const double battery = population_.client(client).battery_j;
  if (battery <= 0.0) return std::numeric_limits<double>::infinity();
  return battery - totals_.at(client).total_j();
}

double EnergyLedger::total_j() const {
  double sum = 0.0;
  for (const ClientEnergy& e : totals_) sum += e.total_j();
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
  out << "client,class,profile,rounds,compute_j,tx_j,rx_j,idle_j,total_j,battery_left_j,exhausted_round\n";
  for (std::uint32_t c = 0; c < totals_.size(); ++c) {
    const ClientEnergy& e = totals_[c];
    const ClientTraits& t = population_.client(c);
    out << c << ',' << population_.class_name(t.class_index) << ',' << t.profile->name() << ',' << e.rounds << ','
        << number(e.energy.compute_j) << ',' << number(e.energy.tx_j) << ',' << number(e.energy.rx_j) << ','
        << number(e.energy.idle_j) << ','
        << number(e.total_j()) << ',';
    if (t.battery_j > 0.0) out << number(battery_left_j(c));
    out << ',';
    if (e.exhausted_round >= 0) out << e.exhausted_round;
    out << '\n';
  }
  if (!out) throw InputError(path + ": write failed (per-client energy CSV)");
}

}  // namespace fedsim
