#include "server/network_faults.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/base/errors.h"
#include "core/base/text.h"

namespace fedsim {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

std::shared_ptr<const BandwidthTrace> BandwidthTrace::load(const std::string& path, const std::string& where) {
  std::ifstream file(path);
  if (!file) throw InputError(where + ": cannot read bandwidth trace '" + path + "'");
  std::ostringstream text;
  text << file.rdbuf();
  return parse(text.str(), path + " (" + where + ")");
}

std::shared_ptr<const BandwidthTrace> BandwidthTrace::parse(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::vector<std::pair<double, double>> rows;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    if (rows.empty() && (t == "time_s,bps" || t == "time_s, bps")) continue;
    const auto comma = t.find(',');
    double time = 0.0;
    double bps = 0.0;
    if (comma == std::string::npos || t.find(',', comma + 1) != std::string::npos ||
        !parse_finite(t.substr(0, comma), time) || !parse_finite(t.substr(comma + 1), bps))
      throw InputError(name + ":" + std::to_string(number) +
                       ": expected a row 'time_s,bps' of two finite numbers, found '" + t + "'");
    rows.emplace_back(time, bps);
  }
  return from_rows(rows, name);
}

std::shared_ptr<const BandwidthTrace> BandwidthTrace::from_rows(const std::vector<std::pair<double, double>>& rows,
                                                                const std::string& where) {
  const auto fail = [&](std::size_t row, const std::string& what) {
    throw InputError(where + ": row " + std::to_string(row + 1) + ": " + what);
  };
  if (rows.size() < 2)
    throw InputError(where + ": expected at least two rows (time 0 and the period), found " + std::to_string(rows.size()));
  if (rows[0].first != 0.0) fail(0, "expected time 0, found " + std::to_string(rows[0].first));
  auto trace = std::make_shared<BandwidthTrace>();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto [time, bps] = rows[i];
    if (!(bps >= 0.0) || !std::isfinite(bps)) fail(i, "expected a rate >= 0 bps, found " + std::to_string(bps));
    if (i > 0 && !(time > rows[i - 1].first))
      fail(i, "expected a time after the previous row's " + std::to_string(rows[i - 1].first) + ", found " +
                  std::to_string(time));
    if (i + 1 < rows.size()) {
      trace->times_.push_back(time);
      trace->rates_.push_back(bps);
    }
  }
  trace->period_s_ = rows.back().first;
  if (rows.back().second != rows.front().second)
    fail(rows.size() - 1, "the last row is the period's end, the same instant as time 0: expected its rate " +
                              std::to_string(rows.front().second) + ", found " + std::to_string(rows.back().second));
  for (std::size_t i = 0; i < trace->rates_.size(); ++i) {
    const double end = i + 1 < trace->times_.size() ? trace->times_[i + 1] : trace->period_s_;
    trace->bits_per_period_ += trace->rates_[i] * (end - trace->times_[i]);
  }
  if (!(trace->bits_per_period_ > 0.0))
    throw InputError(where + ": expected at least one rate > 0 (a trace that is always out moves nothing)");
  return trace;
}

double BandwidthTrace::rate_at(double t) const {
  double pos = std::fmod(t, period_s_);
  if (pos < 0.0) pos += period_s_;
  const auto it = std::upper_bound(times_.begin(), times_.end(), pos);
  return rates_[static_cast<std::size_t>(it - times_.begin()) - 1];
}

double BandwidthTrace::transfer_s(double t, double bits, double cap_bps) const {
  if (bits <= 0.0) return 0.0;
  const auto rate = [&](std::size_t i) { return cap_bps > 0.0 ? std::min(rates_[i], cap_bps) : rates_[i]; };
  double per_period = bits_per_period_;
  if (cap_bps > 0.0) {
    per_period = 0.0;
    for (std::size_t i = 0; i < rates_.size(); ++i) {
      const double end = i + 1 < times_.size() ? times_[i + 1] : period_s_;
      per_period += rate(i) * (end - times_[i]);
    }
  }
  double pos = std::fmod(t, period_s_);
  if (pos < 0.0) pos += period_s_;
  std::size_t i = static_cast<std::size_t>(std::upper_bound(times_.begin(), times_.end(), pos) - times_.begin()) - 1;
  double elapsed = 0.0;
  double remaining = bits;
  // Whole periods first (a long message on a short trace), keeping the last partial one to walk.
  if (remaining > per_period) {
    const double whole = std::floor(remaining / per_period) - 1.0;
    if (whole > 0.0) {
      remaining -= whole * per_period;
      elapsed += whole * period_s_;
    }
  }
  for (;;) {
    const double end = i + 1 < times_.size() ? times_[i + 1] : period_s_;
    const double len = end - pos;
    const double r = rate(i);
    if (r > 0.0 && r * len >= remaining) return elapsed + remaining / r;
    remaining -= r * len;
    elapsed += len;
    ++i;
    pos = end;
    if (i == times_.size()) {
      i = 0;
      pos = 0.0;
    }
  }
}

std::unique_ptr<LinkFaults> LinkFaults::parse(const Config& link) {
  LinkFaults f;
  f.loss_rate = link.get_double("loss_rate", 0.0, 0.0, 1.0);
  if (f.loss_rate >= 1.0) link.fail("loss_rate", "a loss probability in [0, 1)", "'1' (nothing would get through)");
  f.max_tries = static_cast<std::uint32_t>(link.get_int("max_tries", 8, 1, 1000000));
  f.packet_bytes = static_cast<std::uint32_t>(link.get_int("packet_bytes", 1500, 1, 1 << 30));
  if (link.has("rto_s")) f.rto_s = link.get_double("rto_s", 0.0, kInf);
  for (const char* dir : {"uplink", "downlink"}) {
    const std::string key = std::string(dir) + "_trace";
    if (!link.has(key)) continue;
    if (link.has(std::string(dir) + "_bps"))
      link.fail(key, "either " + std::string(dir) + "_bps or " + key, "both");
    auto trace = BandwidthTrace::load(link.get_path(key), link.where(key));
    (std::string(dir) == "uplink" ? f.uplink_trace : f.downlink_trace) = std::move(trace);
  }
  f.random_trace_phase = link.get_choice("trace_phase", "zero", {"random", "zero"}) == "random";
  if (link.has("trace_phase") && !f.uplink_trace && !f.downlink_trace)
    link.fail("trace_phase", "uplink_trace or downlink_trace next to it", "neither");
  if (!link.has("loss_rate") && (link.has("max_tries") || link.has("packet_bytes") || link.has("rto_s")))
    link.fail(link.has("max_tries") ? "max_tries" : link.has("packet_bytes") ? "packet_bytes" : "rto_s",
              "loss_rate next to it (it only matters when packets are lost)", "no loss_rate");
  if (!f.any()) return nullptr;
  return std::make_unique<LinkFaults>(std::move(f));
}

FaultyTransfer faulty_transfer(const LinkFaults& f, std::uint64_t bytes, double start_s, double bps,
                               const BandwidthTrace* trace, double phase_s, double cap_bps, double latency_s, Rng& rng) {
  FaultyTransfer out;
  if (bytes == 0) return out;
  const double rto = f.rto_s < 0.0 ? 2.0 * latency_s : f.rto_s;
  const double rate = cap_bps > 0.0 ? std::min(bps, cap_bps) : bps;
  if (f.loss_rate <= 0.0) {
    out.bytes_sent = bytes;
    const double bits = 8.0 * static_cast<double>(bytes);
    out.data_s = trace ? trace->transfer_s(start_s + phase_s, bits, cap_bps) : bits / rate;
    out.time_s = out.data_s + latency_s;
    return out;
  }
  const std::uint64_t packet = f.packet_bytes;
  const std::uint64_t packets = (bytes + packet - 1) / packet;
  double t = start_s;  // only advanced on a trace
  for (std::uint64_t i = 0; i < packets && !out.lost; ++i) {
    const std::uint64_t size = i + 1 < packets ? packet : bytes - (packets - 1) * packet;
    for (std::uint32_t tries = 1;; ++tries) {
      out.bytes_sent += size;
      if (trace) t += trace->transfer_s(t + phase_s, 8.0 * static_cast<double>(size), cap_bps);
      if (!(rng.uniform() < f.loss_rate)) break;
      ++out.lost_sends;
      t += rto;
      if (tries == f.max_tries) {
        out.lost = true;
        break;
      }
    }
  }
  const double waits_s = static_cast<double>(out.lost_sends) * rto;
  out.data_s = trace ? (t - start_s) - waits_s : 8.0 * static_cast<double>(out.bytes_sent) / rate;
  out.time_s = out.data_s + waits_s + latency_s;
  return out;
}

}  // namespace fedsim
