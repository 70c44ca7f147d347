// Network links between a client and the server: bandwidth each way, one-way
// latency, radio energy per bit. A scenario gives each field as a number or a
// distribution; every client of a class draws its own link once.
//
//   link: {uplink_bps: {lognormal: {median: 5e6, sigma: 0.5}},
//          downlink_bps: 50e6, latency_s: {uniform: {min: 0.02, max: 0.1}},
//          tx_j_per_bit: {fixed: 1e-7}, rx_j_per_bit: 5e-8}
//
// Timing rule: a message of b > 0 bytes takes 8 b / bps + latency_s; an empty
// message (b = 0) is not sent and takes 0 s. Energy: 8 b * tx_j_per_bit to
// send, 8 b * rx_j_per_bit to receive (latency costs no radio energy).
//
// Shared server capacity (`server_capacity_bps`, 0 = unlimited): in a round
// where k clients upload, each client's uplink rate is
// min(uplink_bps, server_capacity_bps / k), fixed for the whole round (no
// time-varying processor sharing), so the rule is exact and order-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/base/config.h"
#include "core/base/rng.h"

namespace fedsim {

struct Link {
  double uplink_bps = 10e6;    // client -> server
  double downlink_bps = 50e6;  // server -> client
  double latency_s = 0.05;     // one way, added once per message
  double tx_j_per_bit = 1e-7;  // radio energy to send one bit
  double rx_j_per_bit = 5e-8;  // radio energy to receive one bit
};
// The defaults above are the link of the "default" client class (and of every
// field a `link:` map leaves out): a 10/50 Mbit/s WAN link with 50 ms latency
// and LTE-order radio energy (0.1 uJ/bit up, 0.05 uJ/bit down).

// Time to move `bytes` at `bps` with one-way latency `latency_s` (0 if bytes == 0).
double transfer_time_s(std::uint64_t bytes, double bps, double latency_s);

// server_capacity_bps / uploaders, or 0 (no cap) when the capacity is 0 or nobody uploads.
double server_share_bps(double server_capacity_bps, std::size_t uploaders);

// One link field: a fixed value or a distribution to draw from.
struct LinkDistribution {
  enum class Kind { kFixed, kUniform, kLognormal } kind = Kind::kFixed;
  double a = 0.0;  // fixed: value; uniform: min; lognormal: median
  double b = 0.0;  // uniform: max; lognormal: sigma
  double draw(Rng& rng) const;  // fixed draws nothing from rng
};

// A parsed and validated `link:` map. Bandwidths must be > 0 (a uniform min
// > 0, a lognormal median > 0), latency and energies >= 0, all finite;
// uniform needs min <= max, lognormal sigma >= 0. InputError with file:line: key.
struct LinkSpec {
  LinkDistribution uplink_bps{LinkDistribution::Kind::kFixed, Link{}.uplink_bps, 0.0};
  LinkDistribution downlink_bps{LinkDistribution::Kind::kFixed, Link{}.downlink_bps, 0.0};
  LinkDistribution latency_s{LinkDistribution::Kind::kFixed, Link{}.latency_s, 0.0};
  LinkDistribution tx_j_per_bit{LinkDistribution::Kind::kFixed, Link{}.tx_j_per_bit, 0.0};
  LinkDistribution rx_j_per_bit{LinkDistribution::Kind::kFixed, Link{}.rx_j_per_bit, 0.0};

  static LinkSpec parse(const Config& link_settings);
  // Draws the fields in declaration order (uplink, downlink, latency, tx, rx).
  Link draw(Rng& rng) const;
};

// LinkSpec::parse(link_settings).draw(rng).
Link draw_link(const Config& link_settings, Rng& rng);

}  // namespace fedsim
