#include "server/radio_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace fedsim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kBitsPerMbit = 1e6;

std::string scalar_text(const Config& config, const std::string& key) {
  const YAML::Node n = config.node()[key];
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  return n.IsScalar() ? "'" + n.Scalar() + "'" : (n.IsMap() ? "a mapping" : "a list");
}

// A finite parameter >= 0 (> 0 when `positive`), with a published default.
double param(const Config& c, const std::string& key, double fallback, bool positive = false) {
  const double v = c.get_double(key, fallback, -kInf, kInf);
  if (!std::isfinite(v) || v < 0.0 || (positive && v == 0.0))
    c.fail(key, positive ? "a finite number > 0" : "a finite number >= 0", scalar_text(c, key));
  return v;
}

// The same, without a default: the scenario must give it.
double required_param(const Config& c, const std::string& key, const std::string& why) {
  if (!c.has(key)) c.fail(key, "a finite number >= 0 (" + why + ")", "nothing");
  return param(c, key, 0.0);
}

// fedsim's original rule: J/bit each way from the client's drawn link.
class LinearRadio final : public RadioModel {
 public:
  const std::string& name() const override { return name_; }
  double transfer_energy_j(double bits, double, Direction d, const Link& link) const override {
    return bits * (d == Direction::kUp ? link.tx_j_per_bit : link.rx_j_per_bit);
  }
  Promotion promotion(double) const override { return {}; }
  double tail_s() const override { return 0.0; }
  double tail_energy_j(double, double) const override { return 0.0; }

 private:
  std::string name_ = "linear";
};

// An RRC state machine given by its table: promotion from idle, active power
// linear in throughput, then tail stages in order, each with a duration, a
// power and the promotion a message starting in it pays.
struct TailStage {
  double duration_s = 0.0;
  double power_w = 0.0;
  Promotion promotion;  // to the connected state from this stage
};

struct RadioTable {
  std::string name;
  Promotion from_idle;
  double base_w = 0.0;           // active power at zero throughput
  double up_w_per_mbps = 0.0;    // + this per Mbit/s sent
  double down_w_per_mbps = 0.0;  // + this per Mbit/s received
  std::vector<TailStage> stages;
};

class StateMachineRadio final : public RadioModel {
 public:
  explicit StateMachineRadio(RadioTable table) : t_(std::move(table)) {
    for (const TailStage& s : t_.stages) tail_s_ += s.duration_s;
  }

  const std::string& name() const override { return t_.name; }

  double transfer_energy_j(double bits, double bps, Direction d, const Link&) const override {
    const double slope = d == Direction::kUp ? t_.up_w_per_mbps : t_.down_w_per_mbps;
    return (t_.base_w + slope * bps / kBitsPerMbit) * (bits / bps);
  }

  Promotion promotion(double since_last_s) const override {
    double start = 0.0;
    for (const TailStage& s : t_.stages) {
      if (since_last_s < start + s.duration_s) return s.promotion;
      start += s.duration_s;
    }
    return t_.from_idle;
  }

  double tail_s() const override { return tail_s_; }

  double tail_energy_j(double from_s, double to_s) const override {
    from_s = std::clamp(from_s, 0.0, tail_s_);
    to_s = std::clamp(to_s, 0.0, tail_s_);
    double energy = 0.0;
    double start = 0.0;
    for (const TailStage& s : t_.stages) {
      const double overlap = std::min(to_s, start + s.duration_s) - std::max(from_s, start);
      if (overlap > 0.0) energy += overlap * s.power_w;
      start += s.duration_s;
    }
    return energy;
  }

 private:
  RadioTable t_;
  double tail_s_ = 0.0;
};

Promotion promotion_of(double delay_s, double power_w) { return Promotion{delay_s, delay_s * power_w}; }

// LTE, as AT&T's ARO implements Huang et al. (MobiSys 2012): ARO's lte.conf
// (VideoOptimizer, ARO.Core/src/main/resources/lte.conf) and its energy rule
// (ProfileFactoryImpl.energyLTE). After the last byte: the continuous-reception
// tail (inactivity timer, at the active baseline), short DRX, long DRX; each
// DRX period is one ping at drx_ping_w, the rest at tail_w.
std::unique_ptr<RadioModel> lte(const Config& c) {
  RadioTable t;
  t.name = "lte";
  const double promotion_s = param(c, "promotion_s", 0.26);
  const double promotion_w = param(c, "promotion_w", 1.21);
  t.from_idle = promotion_of(promotion_s, promotion_w);
  t.base_w = param(c, "base_w", 1.2);
  t.up_w_per_mbps = param(c, "up_w_per_mbps", 0.43839);
  t.down_w_per_mbps = param(c, "down_w_per_mbps", 0.05197);
  const double inactivity_s = param(c, "inactivity_s", 0.1);
  const double short_drx_s = param(c, "short_drx_s", 0.02);
  const double long_drx_s = param(c, "long_drx_s", 10.0);
  const double ping_s = param(c, "drx_ping_s", 0.002);
  const double short_period_s = param(c, "short_drx_period_s", 0.02, true);
  const double long_period_s = param(c, "long_drx_period_s", 0.04, true);
  const double ping_w = param(c, "drx_ping_w", 1.68);
  const double tail_w = param(c, "tail_w", 1.06);
  if (ping_s > std::min(short_period_s, long_period_s))
    c.fail("drx_ping_s", "at most the DRX periods (" + std::to_string(std::min(short_period_s, long_period_s)) + " s)",
           scalar_text(c, "drx_ping_s"));
  const auto drx_power = [&](double period_s) { return (ping_s * ping_w + (period_s - ping_s) * tail_w) / period_s; };
  t.stages = {{inactivity_s, t.base_w, {}}, {short_drx_s, drx_power(short_period_s), {}},
              {long_drx_s, drx_power(long_period_s), {}}};
  return std::make_unique<StateMachineRadio>(std::move(t));
}

// UMTS 3G, ARO's imap.conf (Samsung Captivate; the figures the issue quotes):
// DCH at a flat power (ARO's energy3G), DCH -> FACH after dch_tail_s, FACH ->
// idle after fach_tail_s; a message starting in FACH pays the FACH -> DCH
// promotion. fedsim's messages exceed ARO's RLC thresholds (543 B up, 475 B
// down), so every message is sent in DCH.
std::unique_ptr<RadioModel> umts_3g(const Config& c) {
  RadioTable t;
  t.name = "umts_3g";
  const double promotion_s = param(c, "promotion_s", 2.0);
  const double promotion_w = param(c, "promotion_w", 0.51);
  t.from_idle = promotion_of(promotion_s, promotion_w);
  t.base_w = param(c, "dch_w", 1.02);
  const double fach_w = param(c, "fach_w", 0.40);
  const double dch_tail_s = param(c, "dch_tail_s", 4.0);
  const double fach_tail_s = param(c, "fach_tail_s", 10.0);
  const double fach_promotion_s = param(c, "fach_promotion_s", 1.5);
  const double fach_promotion_w = param(c, "fach_promotion_w", 0.71);
  t.stages = {{dch_tail_s, t.base_w, {}}, {fach_tail_s, fach_w, promotion_of(fach_promotion_s, fach_promotion_w)}};
  return std::make_unique<StateMachineRadio>(std::move(t));
}

// WiFi, ARO's WiFi.conf and energyWiFi: active and tail at one power, no promotion.
std::unique_ptr<RadioModel> wifi(const Config& c) {
  RadioTable t;
  t.name = "wifi";
  t.base_w = param(c, "active_w", 0.403);
  t.stages = {{param(c, "tail_s", 0.25), t.base_w, {}}};
  return std::make_unique<StateMachineRadio>(std::move(t));
}

// 5G NR (Narayanan et al., SIGCOMM 2021: whole-phone power against uplink
// throughput). Only the uplink fit is built in; the downlink slope, the tail
// and the promotion have no default here and must be given.
std::unique_ptr<RadioModel> nr(const Config& c, const std::string& name, double base_w, double up_w_per_mbps) {
  RadioTable t;
  t.name = name;
  t.base_w = param(c, "base_w", base_w);
  t.up_w_per_mbps = param(c, "up_w_per_mbps", up_w_per_mbps);
  const std::string why = "no published default built into " + name;
  t.down_w_per_mbps = required_param(c, "down_w_per_mbps", why);
  const double tail_s = required_param(c, "tail_s", why);
  const double tail_w = required_param(c, "tail_w", why);
  const double promotion_s = required_param(c, "promotion_s", why);
  const double promotion_w = required_param(c, "promotion_w", why);
  t.from_idle = promotion_of(promotion_s, promotion_w);
  t.stages = {{tail_s, tail_w, {}}};
  return std::make_unique<StateMachineRadio>(std::move(t));
}

std::unique_ptr<RadioModel> nr_lowband(const Config& c) { return nr(c, "nr_lowband", 3.20, 0.02915); }
std::unique_ptr<RadioModel> nr_mmwave(const Config& c) { return nr(c, "nr_mmwave", 5.62, 0.00942); }
std::unique_ptr<RadioModel> linear(const Config&) { return std::make_unique<LinearRadio>(); }

FEDSIM_REGISTER(RadioModelRegistry, "linear", linear, "J/bit each way (tx_j_per_bit, rx_j_per_bit); no promotion, no tail");
FEDSIM_REGISTER(RadioModelRegistry, "lte", lte, "LTE RRC machine, ARO lte.conf / Huang et al. 2012: 0.26 s promotion, 10.12 s tail");
FEDSIM_REGISTER(RadioModelRegistry, "umts_3g", umts_3g, "3G RRC machine, ARO imap.conf: 2 s promotion, DCH 4 s + FACH 10 s tail");
FEDSIM_REGISTER(RadioModelRegistry, "wifi", wifi, "WiFi, ARO WiFi.conf: 0.403 W active and 0.25 s tail");
FEDSIM_REGISTER(RadioModelRegistry, "nr_lowband", nr_lowband, "5G low-band, Narayanan et al. 2021 uplink fit (tail, promotion, downlink given)");
FEDSIM_REGISTER(RadioModelRegistry, "nr_mmwave", nr_mmwave, "5G mmWave, Narayanan et al. 2021 uplink fit (tail, promotion, downlink given)");

}  // namespace

std::unique_ptr<RadioModel> make_radio_model(const Config& link) {
  if (!link.has("radio")) {
    link.get_string("radio", "");  // marks the key as read
    return std::make_unique<LinearRadio>();
  }
  const Config radio = link.child("radio");
  if (!radio.is_map())
    link.fail("radio", "a mapping {model: NAME, its keys} with NAME one of: " + RadioModelRegistry::instance().known_names(),
              scalar_text(link, "radio"));
  const std::string name = radio.get_string("model", "linear");
  return RadioModelRegistry::instance().create(radio.where("model"), name, radio);
}

}  // namespace fedsim
