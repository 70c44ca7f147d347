// Network faults of a client class's link: packet loss with retransmission,
// and bandwidth that varies in time (traces, outages). Both are keys of a
// class's `link:` map, next to the fields of server/link_model.h:
//
//   link: {uplink_bps: 5e6, latency_s: 0.05,
//          loss_rate: 0.02,        # in [0, 1): each packet is lost with this probability, independently
//          max_tries: 8,           # >= 1: sends of one packet before the message is given up
//          packet_bytes: 1500,     # >= 1: the message travels in packets of this size (the last may be shorter)
//          rto_s: 0.1,             # >= 0: wait after each loss before the resend; default 2 x latency_s
//          uplink_trace: up.csv,   # instead of uplink_bps: the rate over time, looped
//          downlink_trace: down.csv,
//          trace_phase: random}    # zero (default) | random: where in its trace each client starts
//
// Loss (exact rule). A message of b bytes is k = ceil(b / packet_bytes)
// packets. Packet i is sent until it gets through, at most max_tries times;
// each send is lost with probability loss_rate. If a packet fails max_tries
// times the sender gives up there: the message is lost (the client counts
// in `dropped_network`, as a drop-out) and the sends made so far are paid
// for. Time: the bits of every send at the link's rate, plus latency_s once,
// plus rto_s per lost send. Energy: the radio's transfer energy of every
// send's bits (the waits cost no radio energy). The draws come from
// Rng::derive(seed, Stream::kNetwork, {client, round, direction}); one
// uniform per send in packet order, so they do not depend on timing.
//
// Traces (exact rule). A trace file is CSV, one `time_s,bps` row per line
// (an optional header line `time_s,bps`, `#` comments): the rate is bps
// from time_s until the next row's time. Times start at 0 and increase
// strictly; the last row's time is the period T (the trace loops), and its
// rate must equal the first row's (it is the same instant). Rates >= 0; a
// rate of 0 is an outage; at least one rate must be > 0. A client with
// trace phase p sees the trace's rate at (t + p) mod T. A message starting at
// t moves its bits at the rate of the moment (capped by the server's share,
// server/link_model.h), so its transfer ends when the integral of the rate
// from t reaches its bits (waiting out outages); then latency_s. Radio
// energy uses the average rate of the transfer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/base/config.h"
#include "core/base/rng.h"

namespace fedsim {

// A bandwidth trace: piecewise-constant rate, looped with period T.
class BandwidthTrace {
 public:
  // Reads and validates `path`; InputError naming `where` (the scenario key),
  // the file and the line on any problem.
  static std::shared_ptr<const BandwidthTrace> load(const std::string& path, const std::string& where);
  // From the text of such a file (`name` names it in messages, with the line).
  static std::shared_ptr<const BandwidthTrace> parse(const std::string& text, const std::string& name);
  // From rows (time_s, bps) as the file would give them (validated the same way).
  static std::shared_ptr<const BandwidthTrace> from_rows(const std::vector<std::pair<double, double>>& rows,
                                                         const std::string& where);

  double period_s() const { return period_s_; }
  double rate_at(double t) const;  // at time t (looped)
  // Seconds from `t` until `bits` have moved at min(rate, cap) (cap 0 = none).
  double transfer_s(double t, double bits, double cap_bps) const;

 private:
  std::vector<double> times_;  // segment starts, times_[0] = 0
  std::vector<double> rates_;  // rate on [times_[i], times_[i+1]) (the last segment ends at period_s_)
  double period_s_ = 0.0;
  double bits_per_period_ = 0.0;  // uncapped
};

struct LinkFaults {
  double loss_rate = 0.0;
  std::uint32_t max_tries = 8;
  std::uint32_t packet_bytes = 1500;
  double rto_s = -1.0;  // < 0: 2 x the link's latency_s
  std::shared_ptr<const BandwidthTrace> uplink_trace;
  std::shared_ptr<const BandwidthTrace> downlink_trace;
  bool random_trace_phase = false;

  bool any() const { return loss_rate > 0.0 || uplink_trace || downlink_trace; }
  // Reads the fault keys of a `link:` map (the rest is LinkSpec's); null when it names none.
  static std::unique_ptr<LinkFaults> parse(const Config& link);
};

// One message over a faulty link.
struct FaultyTransfer {
  double time_s = 0.0;           // transfer + latency + waits after losses
  std::uint64_t bytes_sent = 0;  // every send's bytes, resends included
  std::uint64_t lost_sends = 0;
  double data_s = 0.0;           // of time_s, the seconds spent moving bits (no latency, no waits)
  bool lost = false;             // given up after max_tries sends of one packet
};

// A message of `bytes` (> 0) starting at `start_s`: at constant `bps`, or on
// `trace` (when not null) from phase `phase_s`, capped at `cap_bps` (0 = no cap).
// `rng` is the message's own stream (only read when loss_rate > 0).
FaultyTransfer faulty_transfer(const LinkFaults& f, std::uint64_t bytes, double start_s, double bps,
                               const BandwidthTrace* trace, double phase_s, double cap_bps, double latency_s, Rng& rng);

}  // namespace fedsim
