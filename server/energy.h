// Time and energy of a client's round, and the ledger that adds them up.
//
// A round of a client is: receive the model (down), compute (local steps),
// send the update (up), in sequence. Times follow server/link_model.h and the
// client's DeviceProfile; energies are radio energy per bit (rx, tx), the
// profile's energy per MAC (compute) and, charged separately, idle power
// times the time the client waited online beyond its busy time.
//
// Battery rule (exact): every participation is charged in full (cost + idle).
// A client with battery_j > 0 is exhausted from the first charge after which
// its cumulative energy >= battery_j; that round is its exhausted_round. The
// update of that round is still delivered (the battery ran out at the end of
// it); the client is never sampled again (the server checks exhausted()), and
// battery_left_j may be negative by the overshoot of the last round.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "server/population.h"

namespace fedsim {

// Energy by component: the one breakdown used from a round's cost through
// the ledger to the metrics columns (compute_j, tx_j, rx_j, idle_j).
struct EnergyBreakdown {
  double compute_j = 0.0;
  double tx_j = 0.0;
  double rx_j = 0.0;
  double idle_j = 0.0;

  double total_j() const { return compute_j + tx_j + rx_j + idle_j; }
  EnergyBreakdown& operator+=(const EnergyBreakdown& o) {
    compute_j += o.compute_j;
    tx_j += o.tx_j;
    rx_j += o.rx_j;
    idle_j += o.idle_j;
    return *this;
  }
};

// Time and energy of one client round (idle_j stays 0: idle time is charged
// by the ledger, which knows how long the client waited).
struct RoundCost {
  double down_s = 0.0;
  double compute_s = 0.0;
  double up_s = 0.0;
  EnergyBreakdown energy;

  double busy_s() const { return down_s + compute_s + up_s; }
  // rx + compute + tx, in the order of a round (the recorded metrics sum it so).
  double total_j() const { return energy.rx_j + energy.compute_j + energy.tx_j; }
  // The cost of a client that dropped out after receiving the model: download only.
  RoundCost download_only() const {
    RoundCost c;
    c.down_s = down_s;
    c.energy.rx_j = energy.rx_j;
    return c;
  }
};

// Cost of one round of `client`: bytes_down received, `macs` multiply-adds at
// its precision, bytes_up sent. uplink_cap_bps: 0 = none, else the uplink
// runs at min(link.uplink_bps, uplink_cap_bps) (pass server_share_bps(...)).
RoundCost round_cost(const ClientTraits& client, std::uint64_t bytes_down, double macs, std::uint64_t bytes_up,
                     double uplink_cap_bps);

struct ClientEnergy {
  EnergyBreakdown energy;
  std::uint64_t rounds = 0;             // participations charged
  std::int64_t exhausted_round = -1;    // -1 = battery not exhausted (or unlimited)
  double total_j() const { return energy.total_j(); }
};

// Energy charged since the last take_round().
struct RoundEnergy {
  EnergyBreakdown energy;
  std::vector<double> class_j;  // total per client class (Population class index)
  std::size_t clients_charged = 0;
  std::size_t clients_exhausted = 0;  // whose battery ran out in this period
  double total_j() const { return energy.total_j(); }
};

// Contract: used from the server's event loop only (not thread-safe). Keeps a
// reference to the Population, which must outlive it.
class EnergyLedger {
 public:
  explicit EnergyLedger(const Population& population);

  // Charges one participation of `client` in `round`: `cost` plus idle_s (>= 0)
  // at the profile's idle power. Returns false if this charge exhausted the
  // battery (see the battery rule above). The client must not be exhausted.
  bool charge(std::uint32_t client, std::uint32_t round, const RoundCost& cost, double idle_s);

  bool exhausted(std::uint32_t client) const { return totals_.at(client).exhausted_round >= 0; }
  // battery_j minus the energy charged so far; +infinity for unlimited batteries.
  double battery_left_j(std::uint32_t client) const;
  const ClientEnergy& client(std::uint32_t client) const { return totals_.at(client); }
  std::size_t num_exhausted() const { return num_exhausted_; }
  double total_j() const;  // everything charged so far, all clients

  const RoundEnergy& current_round() const { return round_; }
  // Returns the sums since the last call and resets them.
  RoundEnergy take_round();

  // One row per client: client,class,profile,rounds,compute_j,tx_j,rx_j,idle_j,
  // total_j,battery_left_j,exhausted_round (battery_left_j empty = unlimited,
  // exhausted_round empty = never). Numbers in shortest round-trip form.
  // Throws InputError if the file cannot be written.
  void write_client_csv(const std::string& path) const;

 private:
  const Population& population_;
  std::vector<ClientEnergy> totals_;
  RoundEnergy round_;
  std::size_t num_exhausted_ = 0;
};

}  // namespace fedsim
