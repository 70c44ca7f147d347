// Time and energy of a client's round, and the ledger that adds them up.
//
// A round of a client is: the server's own work before the broadcast
// (server_s, 0 unless `server_energy:` gives it), receive the model (down),
// compute (local steps), send the update (up), in sequence. Times follow
// server/link_model.h, the client's radio (server/radio_model.h) and its
// DeviceProfile at the chosen DVFS level; energies are the radio's (promotion,
// transfer rx/tx, tail), the profile's (compute) and, charged separately, idle
// power times the time the client waited online beyond its busy time.
//
// Radio tails (exact, in virtual time): each client's radio state is the end
// of its last message. A message pays the tail of the previous one up to its
// own start (the tail is cut short: no second promotion unless the state
// machine says so) and is charged with the round that sends it. A tail still
// running when a round closes is charged up to the close to that round, and
// the rest to the rounds in which it is spent (charge_tails). An exhausted
// client is charged no more tail.
//
// Battery rule (exact): every participation is charged in full (cost + idle).
// A charge made while the client is plugged in (Population::is_charging at
// the time the energy starts being spent: the round's start for a
// participation, the segment's start for a tail) is grid energy; the rest is
// battery energy. A client with battery_j > 0 is exhausted from the first
// charge after which its cumulative battery energy >= battery_j; that round
// is its exhausted_round. The
// update of that round is still delivered (the battery ran out at the end of
// it); the client is never sampled again (the server checks exhausted()), and
// battery_left_j may be negative by the overshoot of the last round.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/base/state_io.h"
#include "core/base/config.h"
#include "server/population.h"

namespace fedsim {

// Energy by component: the one breakdown used from a round's cost through
// the ledger to the metrics columns (compute_j, tx_j, rx_j, idle_j,
// promotion_j, tail_j). tx_j and rx_j are the radio's transfer energy.
struct EnergyBreakdown {
  double compute_j = 0.0;
  double tx_j = 0.0;
  double rx_j = 0.0;
  double idle_j = 0.0;
  double promotion_j = 0.0;  // radio promotions to the connected state
  double tail_j = 0.0;       // radio tails after messages

  double total_j() const { return compute_j + tx_j + rx_j + idle_j + promotion_j + tail_j; }
  EnergyBreakdown& operator+=(const EnergyBreakdown& o) {
    compute_j += o.compute_j;
    tx_j += o.tx_j;
    rx_j += o.rx_j;
    idle_j += o.idle_j;
    promotion_j += o.promotion_j;
    tail_j += o.tail_j;
    return *this;
  }
};

// Time and energy of one client round (idle_j stays 0: idle time is charged
// by the ledger, which knows how long the client waited).
struct RoundCost {
  double server_s = 0.0;  // the server's work before the broadcast leaves
  double down_s = 0.0;    // promotion (if any) + transfer + latency
  double compute_s = 0.0;
  double up_s = 0.0;
  std::size_t level = 0;  // the DVFS level the client computed at
  EnergyBreakdown energy;
  // Network faults (server/network_faults.h): the model never arrived (then
  // nothing was computed or sent), or the update was given up.
  bool lost_down = false;
  bool lost_up = false;

  double busy_s() const { return server_s + down_s + compute_s + up_s; }
  // rx + compute + tx (+ promotion + tail), in the order of a round (the recorded metrics sum it so).
  double total_j() const {
    return energy.rx_j + energy.compute_j + energy.tx_j + energy.promotion_j + energy.tail_j;
  }
  // The cost of a client that dropped out after receiving the model: download only.
  RoundCost download_only() const {
    RoundCost c;
    c.server_s = server_s;
    c.down_s = down_s;
    c.energy.rx_j = energy.rx_j;
    c.energy.promotion_j = energy.promotion_j;  // only the download's when nothing was sent up
    c.energy.tail_j = energy.tail_j;
    return c;
  }
};

// A client's radio between messages (8 bytes x 2 per client, kept only when
// some client's radio has a tail).
struct RadioState {
  double last_end_s = -std::numeric_limits<double>::infinity();  // end of its last message; -inf: never sent
  double charged_to_s = -std::numeric_limits<double>::infinity();  // its tail is charged up to here
};

// What one client round moves and computes, and when it starts.
struct RoundWork {
  double start_s = 0.0;            // virtual time the server starts the client's round
  double server_s = 0.0;           // server work before the broadcast
  std::uint64_t bytes_down = 0;    // message bytes received (0: nothing sent)
  double macs = 0.0;
  std::uint64_t bytes_up = 0;      // message bytes sent (0: nothing sent)
  double uplink_cap_bps = 0.0;     // 0 = none, else the uplink runs at min(link.uplink_bps, cap)
  double deadline_s = std::numeric_limits<double>::infinity();  // round deadline, for frequency: energy_aware
  // Who and when, for the packet-loss draws and trace phases of a faulty link
  // (Rng::derive(network_seed, Stream::kNetwork, {client, round, direction})).
  std::uint64_t network_seed = 0;
  std::uint32_t client = 0;
  std::uint32_t round = 0;
};

// Cost of one round of `client` from its radio's state `radio`, which it
// advances to the end of the round's last message. The DVFS level is the
// class's choice: max, a fixed level, or energy_aware: among the levels whose
// busy_s() <= work.deadline_s, the one with the least total_j() (the lowest
// of equals), else the highest. Under the alpha model (energy per cycle
// growing as f^2) that is the lowest level meeting the deadline; with a
// measured power table it need not be (static power makes slow levels
// costlier per cycle: the Pixel 4 XL's 300 MHz level spends 0.49 nJ per
// cycle, its 2842 MHz level 0.29).
RoundCost round_cost(const ClientTraits& client, const RoundWork& work, RadioState& radio);

// The same for a radio idle since the start, starting at time 0: bytes_down
// received, `macs` multiply-adds at its precision, bytes_up sent.
RoundCost round_cost(const ClientTraits& client, std::uint64_t bytes_down, double macs, std::uint64_t bytes_up,
                     double uplink_cap_bps);

// The server's own energy, as GenQSGD counts it (scenario key `server_energy:`):
// per broadcast (synchronous policies: per round), the aggregation's cycles
// at the server's frequency (alpha * cycles * f^2 J; cycles / f s, spent
// before the broadcast leaves, so they add to every round's time) and the
// broadcast itself (broadcast_w for bits / broadcast_bps s). Reported in its
// own metrics column (server_j), never in the clients' energy_j.
struct ServerEnergyModel {
  double alpha = 0.0;             // switched capacitance (GenQSGD's alpha)
  double cycles_per_round = 0.0;  // C_0
  double frequency_hz = 1.0;      // F_0
  double broadcast_w = 0.0;       // p_0
  double broadcast_bps = 1.0;     // r_0

  double compute_s() const { return cycles_per_round / frequency_hz; }
  double compute_j() const { return alpha * cycles_per_round * frequency_hz * frequency_hz; }
  double broadcast_j(double bits) const { return broadcast_w * bits / broadcast_bps; }

  // Reads `server_energy:` from the scenario root (absent: all zero, no time,
  // no energy). Keys: alpha >= 0, cycles_per_round >= 0, frequency_hz > 0,
  // broadcast_w >= 0, broadcast_bps > 0. InputError with file:line: key.
  static ServerEnergyModel parse(const Config& root);
};

struct ClientEnergy {
  EnergyBreakdown energy;
  double grid_j = 0.0;                  // the part of energy spent while plugged in
  std::uint64_t rounds = 0;             // participations charged
  std::int64_t exhausted_round = -1;    // -1 = battery not exhausted (or unlimited)
  double total_j() const { return energy.total_j(); }
  double battery_draw_j() const { return total_j() - grid_j; }
};

// Energy charged since the last take_round().
struct RoundEnergy {
  EnergyBreakdown energy;
  std::vector<double> class_j;  // total per client class (Population class index)
  double grid_j = 0.0;          // the part of energy spent while plugged in
  std::size_t clients_charged = 0;
  std::size_t clients_exhausted = 0;  // whose battery ran out in this period
  double total_j() const { return energy.total_j(); }
};

// Contract: used from the server's event loop only (not thread-safe). Keeps a
// reference to the Population, which must outlive it.
class EnergyLedger {
 public:
  explicit EnergyLedger(const Population& population);

  // Charges one participation of `client` in `round`, started at virtual time
  // at_s: `cost` plus idle_s (>= 0) at the profile's idle power. Returns false
  // if this charge exhausted the battery (see the battery rule above). The
  // client must not be exhausted.
  bool charge(std::uint32_t client, std::uint32_t round, const RoundCost& cost, double idle_s, double at_s = 0.0);

  // The cost of `client`'s round from its radio state, which it advances
  // (round_cost above). Charges nothing.
  // work.network_seed and work.client are filled in here.
  RoundCost round_cost(std::uint32_t client, const RoundWork& work);
  // Whether `client`'s faulty link loses the model of this round's work
  // (the same draws round_cost makes; advances nothing).
  bool model_lost(std::uint32_t client, const RoundWork& work) const;
  // Charges every open radio tail up to now_s to `round` (when a round closes,
  // before take_round), in client order.
  void charge_tails(std::uint32_t round, double now_s);

  bool exhausted(std::uint32_t client) const;
  // battery_j minus the battery energy charged so far; +infinity for unlimited batteries.
  double battery_left_j(std::uint32_t client) const;
  // Its figures (all zero for a client never charged).
  const ClientEnergy& client(std::uint32_t client) const;
  std::size_t num_exhausted() const { return num_exhausted_; }
  // Exhausted clients of population class k.
  std::size_t num_exhausted_in_class(std::size_t k) const { return exhausted_by_class_.at(k); }
  // Every client charged so far, by id (the ledger's per-client state: a
  // client's entry is created by its first charge or round_cost).
  const std::map<std::uint32_t, ClientEnergy>& charged_clients() const { return totals_; }
  const std::map<std::uint32_t, RadioState>& radio_states() const { return radio_; }
  double total_j() const;  // everything charged so far, all clients

  const RoundEnergy& current_round() const { return round_; }
  // Returns the sums since the last call and resets them.
  RoundEnergy take_round();

  // One row per client charged at least once (a client never charged has
  // nothing to report: zero energy, its whole battery left), by id:
  // client,class,profile,rounds,compute_j,tx_j,rx_j,idle_j,
  // total_j,battery_left_j,exhausted_round,promotion_j,tail_j,grid_j (battery_left_j
  // empty = unlimited, exhausted_round empty = never). Numbers in shortest
  // round-trip form.
  // Throws InputError if the file cannot be written.
  void write_client_csv(const std::string& path) const;

  // Checkpoints (server/checkpoint.h): every client's totals and radio
  // state, the open round's sums.
  void save(StateWriter& out) const;
  void restore(StateReader& in);

 private:
  // Adds `e` to the client's, the round's and its class's sums; the battery rule.
  bool add(std::uint32_t client, std::uint32_t round, const EnergyBreakdown& e, double class_j, double at_s);

  const Population& population_;
  // Created on a client's first charge (issue 11: nothing per idle client).
  std::map<std::uint32_t, ClientEnergy> totals_;
  bool radio_tails_ = false;  // some class's radio has a tail: radio_ keeps states
  std::map<std::uint32_t, RadioState> radio_;  // per client that sent or received a message, when radio_tails_
  std::vector<std::size_t> exhausted_by_class_;
  RoundEnergy round_;
  std::size_t num_exhausted_ = 0;
};

}  // namespace fedsim
