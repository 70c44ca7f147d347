#include "server/link_model.h"

#include <cmath>
#include <limits>

namespace fedsim {

double transfer_time_s(std::uint64_t bytes, double bps, double latency_s) {
  if (bytes == 0) return 0.0;
  return 8.0 * static_cast<double>(bytes) / bps + latency_s;
}

double server_share_bps(double server_capacity_bps, std::size_t uploaders) {
  if (server_capacity_bps <= 0.0 || uploaders == 0) return 0.0;
  return server_capacity_bps / static_cast<double>(uploaders);
}

double LinkDistribution::draw(Rng& rng) const {
  switch (kind) {
    case Kind::kFixed: return a;
    case Kind::kUniform: return a + (b - a) * rng.uniform();
    case Kind::kLognormal: return a * std::exp(b * rng.normal());
  }
  return a;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string scalar_text(const Config& config, const std::string& key) {
  const YAML::Node n = config.node()[key];
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  return n.IsScalar() ? "'" + n.Scalar() + "'" : (n.IsMap() ? "a mapping" : "a list");
}

// A value of one field: strictly positive (bandwidths) or non-negative.
double read_value(const Config& config, const std::string& key, bool positive) {
  const double v = config.get_double(key, -kInf, kInf);
  const bool ok = std::isfinite(v) && (positive ? v > 0.0 : v >= 0.0);
  if (!ok) config.fail(key, positive ? "a finite number > 0" : "a finite number >= 0", scalar_text(config, key));
  return v;
}

const char* kDistributionHelp =
    "a number or one of {fixed: x}, {uniform: {min: a, max: b}}, {lognormal: {median: m, sigma: s}}";

LinkDistribution parse_field(const Config& link, const std::string& key, double fallback, bool positive) {
  using Kind = LinkDistribution::Kind;
  if (!link.has(key)) {
    link.get_double(key, fallback, -kInf, kInf);  // marks the key as read
    return LinkDistribution{Kind::kFixed, fallback, 0.0};
  }
  const YAML::Node n = link.node()[key];
  if (n.IsScalar()) return LinkDistribution{Kind::kFixed, read_value(link, key, positive), 0.0};
  if (!n.IsMap()) link.fail(key, kDistributionHelp, scalar_text(link, key));
  const Config dist = link.child(key);
  const std::vector<std::string> keys = dist.keys();
  if (keys.size() != 1) link.fail(key, kDistributionHelp, "a mapping with " + std::to_string(keys.size()) + " keys");
  const std::string& kind = keys[0];
  if (kind == "fixed") return LinkDistribution{Kind::kFixed, read_value(dist, "fixed", positive), 0.0};
  if (kind == "uniform") {
    const Config u = dist.child("uniform");
    const double lo = read_value(u, "min", positive);
    const double hi = read_value(u, "max", positive);
    if (hi < lo) u.fail("max", "a number >= min (" + scalar_text(u, "min") + ")", scalar_text(u, "max"));
    return LinkDistribution{Kind::kUniform, lo, hi};
  }
  if (kind == "lognormal") {
    const Config l = dist.child("lognormal");
    const double median = read_value(l, "median", positive);
    const double sigma = read_value(l, "sigma", false);
    return LinkDistribution{Kind::kLognormal, median, sigma};
  }
  dist.fail(kind, "one of: fixed, uniform, lognormal", "'" + kind + "'");
}

}  // namespace

LinkSpec LinkSpec::parse(const Config& link) {
  const Link d{};
  LinkSpec s;
  s.uplink_bps = parse_field(link, "uplink_bps", d.uplink_bps, true);
  s.downlink_bps = parse_field(link, "downlink_bps", d.downlink_bps, true);
  s.latency_s = parse_field(link, "latency_s", d.latency_s, false);
  s.tx_j_per_bit = parse_field(link, "tx_j_per_bit", d.tx_j_per_bit, false);
  s.rx_j_per_bit = parse_field(link, "rx_j_per_bit", d.rx_j_per_bit, false);
  return s;
}

Link LinkSpec::draw(Rng& rng) const {
  Link l;
  l.uplink_bps = uplink_bps.draw(rng);
  l.downlink_bps = downlink_bps.draw(rng);
  l.latency_s = latency_s.draw(rng);
  l.tx_j_per_bit = tx_j_per_bit.draw(rng);
  l.rx_j_per_bit = rx_j_per_bit.draw(rng);
  return l;
}

Link draw_link(const Config& link_settings, Rng& rng) { return LinkSpec::parse(link_settings).draw(rng); }

}  // namespace fedsim
