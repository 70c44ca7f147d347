#include "server/population.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "core/base/errors.h"
#include "core/base/rng.h"

namespace fedsim {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kFractionTolerance = 1e-6;
// Path tag that keeps the drop-out draw of (client, round) apart from its online draw.
constexpr std::uint64_t kDropoutTag = 1;
// Path tag that keeps a client's charging phase apart from its availability phase.
constexpr std::uint64_t kChargingPhaseTag = 1;
// Rng::derive(seed, kPopulation, {c, kDeviceRowTag}): the device-trace row of a client (assign: random).
constexpr std::uint64_t kDeviceRowTag = 2;

std::string scalar_text(const Config& config, const std::string& key) {
  const YAML::Node n = config.node()[key];
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  return n.IsScalar() ? "'" + n.Scalar() + "'" : (n.IsMap() ? "a mapping" : "a list");
}

double finite_at_least(const Config& c, const std::string& key, double fallback, double min) {
  const double v = c.get_double(key, fallback, min, kInf);
  if (!std::isfinite(v)) c.fail(key, "a finite number >= " + std::to_string(static_cast<int>(min)), scalar_text(c, key));
  return v;
}

double positive_finite(const Config& c, const std::string& key, double fallback, bool required) {
  const double v = required ? c.get_double(key, -kInf, kInf) : c.get_double(key, fallback, -kInf, kInf);
  if (!(v > 0.0) || !std::isfinite(v)) c.fail(key, "a finite number > 0", scalar_text(c, key));
  return v;
}

Availability parse_availability(const Config& a) {
  Availability out;
  if (a.has("while_charging")) {
    if (a.keys().size() != 1)
      a.fail("while_charging", "while_charging alone (no other availability keys)", "other keys beside it");
    if (!a.get_bool("while_charging", false)) a.fail("while_charging", "true (or no while_charging key)", "false");
    out.kind = Availability::Kind::kWhileCharging;
    return out;
  }
  const bool probability = a.has("online_probability");
  const bool periodic = a.has("period_s") || a.has("on_fraction") || a.has("phase");
  if (probability && periodic)
    a.fail("online_probability", "either online_probability or period_s/on_fraction/phase, not both",
           "both kinds of keys");
  if (probability) {
    out.kind = Availability::Kind::kProbability;
    out.online_probability = a.get_double("online_probability", 0.0, 1.0);
  } else if (periodic) {
    out.kind = Availability::Kind::kPeriodic;
    out.period_s = positive_finite(a, "period_s", 0.0, true);
    out.on_fraction = a.get_double("on_fraction", 0.0, 1.0);
    out.random_phase = a.get_choice("phase", "zero", {"random", "zero"}) == "random";
  }
  return out;
}

std::string supported_list(const DeviceProfile& p) {
  std::string out;
  for (Precision q : kAllPrecisions)
    if (p.supports(q)) out += (out.empty() ? "" : ", ") + std::string(precision_name(q));
  return out;
}

struct ClassSpec {
  ClientClass info;
  const DeviceProfile* profile = nullptr;
  std::uint16_t fixed_level = 0;
  LinkSpec link;
  std::unique_ptr<RadioModel> radio;
  std::unique_ptr<LinkFaults> faults;
  std::shared_ptr<const DeviceTrace> device_trace;
  bool random_device = false;
  double battery_j = 0.0;
  Availability availability;
  ChargingSchedule charging;
  bool charging_random_phase = false;
  double dropout_probability = 0.0;
  double data_weight = 1.0;
  std::unique_ptr<Attack> attack;
  double attack_fraction = 0.0;
};

// `attack: {name, fraction, the attack's keys}`.
void parse_attack(const Config& e, ClassSpec& s) {
  if (!e.has("attack")) {
    e.get_string("attack", "");  // marks the key as read
    return;
  }
  const Config a = e.child("attack");
  if (!a.is_map()) e.fail("attack", "a mapping {name: ATTACK, fraction: f, ...}", scalar_text(e, "attack"));
  s.info.attack_where = a.where("name");
  s.info.attack = a.get_string("name");
  s.attack_fraction = a.get_double("fraction", 1.0, 0.0, 1.0);
  s.attack = AttackRegistry::instance().create(a.where("name"), s.info.attack, a);
  a.finish();
}

// `battery: {capacity_j, budget_fraction}`: the job's battery budget.
double parse_battery(const Config& e) {
  if (!e.has("battery")) {
    e.get_string("battery", "");  // marks the key as read
    return finite_at_least(e, "battery_j", 0.0, 0.0);
  }
  if (e.has("battery_j")) e.fail("battery", "either battery_j or battery: {capacity_j, budget_fraction}", "both");
  const Config b = e.child("battery");
  const double capacity = positive_finite(b, "capacity_j", 0.0, true);
  const double fraction = b.get_double("budget_fraction", 1.0, 0.0, 1.0);
  if (!(fraction > 0.0)) b.fail("budget_fraction", "a fraction in (0, 1]", "'0'");
  return capacity * fraction;
}

// `charging: {period_s, plugged_fraction, phase}`.
void parse_charging(const Config& e, ClassSpec& s) {
  if (!e.has("charging")) {
    e.get_string("charging", "");  // marks the key as read
    return;
  }
  const Config c = e.child("charging");
  s.charging.period_s = positive_finite(c, "period_s", 0.0, true);
  s.charging.plugged_fraction = c.get_double("plugged_fraction", 0.0, 1.0);
  s.charging_random_phase = c.get_choice("phase", "zero", {"random", "zero"}) == "random";
}

// `frequency`: max | energy_aware | a level's frequency in Hz.
void parse_frequency(const Config& e, ClassSpec& s) {
  s.info.frequency_where = e.where("frequency");
  if (!e.has("frequency")) {
    e.get_string("frequency", "max");  // marks the key as read
    return;
  }
  const DeviceProfile& p = *s.profile;
  std::string levels;
  for (std::size_t i = 0; i < p.num_levels(); ++i)
    if (p.level_hz(i) > 0.0) levels += ", " + std::to_string(static_cast<long long>(p.level_hz(i)));
  const std::string expected = "max, energy_aware or a frequency (Hz) of profile '" + p.name() + "'" +
                               (levels.empty() ? " (it has no DVFS levels)" : levels);
  const YAML::Node n = e.node()["frequency"];
  const std::string text = n.IsScalar() ? n.Scalar() : "a mapping or list";
  if (text == "max" || text == "energy_aware") {
    e.get_string("frequency");
    if (text == "energy_aware" && p.num_levels() < 2) e.fail("frequency", expected, "'energy_aware'");
    s.info.frequency = text == "max" ? FrequencyChoice::kMax : FrequencyChoice::kEnergyAware;
    return;
  }
  double hz = 0.0;
  try {
    hz = e.get_double("frequency", -kInf, kInf);
  } catch (const InputError&) {
    e.fail("frequency", expected, "'" + text + "'");
  }
  for (std::size_t i = 0; i < p.num_levels(); ++i)
    if (p.level_hz(i) > 0.0 && p.level_hz(i) == hz) {
      s.info.frequency = FrequencyChoice::kFixed;
      s.fixed_level = static_cast<std::uint16_t>(i);
      return;
    }
  e.fail("frequency", expected, "'" + text + "'");
}

// One entry of `population:`.
ClassSpec parse_class(const Config& e, const ProfileCatalog& catalog) {
  ClassSpec s;
  s.info.name = e.get_string("name");
  s.info.fraction = e.get_double("fraction", 0.0, 1.0);
  s.profile = &catalog.get(e, "profile", "server_cpu");
  s.info.profile = s.profile->name();
  s.info.precision = get_precision(e, "precision", Precision::kFp32);
  if (!s.profile->supports(s.info.precision))
    e.fail("precision", "a precision supported by profile '" + s.profile->name() + "' (" + supported_list(*s.profile) + ")",
           "'" + std::string(precision_name(s.info.precision)) + "'" + (e.has("precision") ? "" : " (the default)"));
  parse_frequency(e, s);
  const Config link = e.child("link");
  s.link = LinkSpec::parse(link);
  s.radio = make_radio_model(link);
  s.faults = LinkFaults::parse(link);
  s.info.radio = s.radio->name();
  s.battery_j = parse_battery(e);
  parse_charging(e, s);
  s.availability = parse_availability(e.child("availability"));
  if (s.availability.kind == Availability::Kind::kWhileCharging && s.charging.period_s == 0.0)
    e.fail("availability", "a charging: {period_s, plugged_fraction} schedule for while_charging", "no charging key");
  if (e.has("device_trace")) {
    const Config d = e.child("device_trace");
    s.device_trace = DeviceTrace::load(d.get_path("file"), d.where("file"));
    s.random_device = d.get_choice("assign", "sequential", {"sequential", "random"}) == "random";
    if (e.has("availability"))
      e.fail("availability", "no availability next to device_trace (the trace's online periods are the availability)",
             "both");
    for (const char* key : {"uplink_bps", "downlink_bps", "uplink_trace", "downlink_trace"})
      if (link.has(key)) link.fail(key, "no link rate next to device_trace (the trace gives the rates)", "both");
    if (s.availability.kind == Availability::Kind::kAlways) s.availability.kind = Availability::Kind::kTrace;
  }
  s.dropout_probability = e.get_double("dropout_probability", 0.0, 0.0, 1.0);
  s.data_weight = positive_finite(e, "data_weight", 1.0, false);
  parse_attack(e, s);
  e.finish();
  return s;
}

// The `population:` list (or the single default class), validated.
std::vector<ClassSpec> parse_classes(const Config& root, const ProfileCatalog& catalog) {
  std::vector<ClassSpec> specs;
  if (!root.has("population")) {
    ClassSpec d;
    d.info.name = "default";
    d.info.profile = "server_cpu";
    d.profile = catalog.find("server_cpu");
    d.radio = make_radio_model(Config());
    d.info.radio = d.radio->name();
    root.get_string("population", "");  // mark read
    specs.push_back(std::move(d));
  } else {
    const std::vector<Config> entries = root.children("population");
    if (entries.empty()) root.fail("population", "a non-empty list of client classes", "an empty list");
    double sum = 0.0;
    for (const Config& e : entries) {
      if (!e.is_map())
        e.fail("", "a mapping describing a client class", e.is_scalar() ? "'" + e.node().Scalar() + "'" : "a list");
      ClassSpec s = parse_class(e, catalog);
      for (const ClassSpec& other : specs)
        if (other.info.name == s.info.name) e.fail("name", "a unique class name", "'" + s.info.name + "' again");
      sum += s.info.fraction;
      specs.push_back(std::move(s));
    }
    if (std::abs(sum - 1.0) > kFractionTolerance) {
      std::ostringstream found;
      found.precision(10);
      found << "fractions summing to " << sum;
      root.fail("population", "class fractions summing to 1 (+-1e-6)", found.str());
    }
  }

  return specs;
}

}  // namespace

Population::Population(const Config& root, std::size_t num_clients, std::uint64_t seed) : seed_(seed) {
  assert(num_clients <= std::numeric_limits<std::uint32_t>::max());
  const Config profiles = root.child("profiles");
  catalog_ = ProfileCatalog(profiles);
  profiles.finish();
  server_capacity_bps_ = finite_at_least(root, "server_capacity_bps", 0.0, 0.0);

  std::vector<ClassSpec> specs = parse_classes(root, catalog_);

  // Contiguous blocks by cumulative rounding (see the header).
  const double n = static_cast<double>(num_clients);
  num_clients_ = num_clients;
  double cumulative = 0.0;
  std::uint32_t begin = 0;
  for (std::size_t k = 0; k < specs.size(); ++k) {
    cumulative += specs[k].info.fraction;
    std::uint32_t end = static_cast<std::uint32_t>(num_clients);
    if (k + 1 < specs.size()) {
      const double b = std::round(n * cumulative);
      end = static_cast<std::uint32_t>(std::clamp(b, static_cast<double>(begin), n));
    }
    ClassSpec& s = specs[k];
    s.info.first_client = begin;
    s.info.end_client = end;
    ClassTraits c;
    ClientTraits& t = c.shared;
    t.class_index = k;
    t.profile = s.profile;
    t.precision = s.info.precision;
    t.frequency = s.info.frequency;
    t.fixed_level = s.fixed_level;
    t.radio = s.radio.get();
    t.faults = s.faults.get();
    t.battery_j = s.battery_j;
    t.availability = s.availability;
    t.charging = s.charging;
    t.dropout_probability = s.dropout_probability;
    t.data_weight = s.data_weight;
    c.link = s.link;
    c.random_device = s.random_device;
    c.charging_random_phase = s.charging_random_phase;
    class_traits_.push_back(c);
    if (s.attack) {
      // round(f x size) attackers, uniformly among the class's ids: a partial
      // Fisher-Yates shuffle of [begin, end) whose moved entries alone are
      // kept (a sparse array: the same draws as a dense one, memory per
      // attacker, not per client).
      const std::size_t size = end - begin;
      const auto count = static_cast<std::size_t>(std::round(s.attack_fraction * static_cast<double>(size)));
      std::unordered_map<std::uint32_t, std::uint32_t> moved;
      const auto at = [&](std::uint32_t i) {
        const auto it = moved.find(i);
        return it == moved.end() ? begin + i : it->second;
      };
      Rng pick = Rng::derive(seed, Stream::kAttack, {k, 0, 0});
      for (std::size_t i = 0; i < count; ++i) {
        const auto j = static_cast<std::uint32_t>(i + pick.below(size - i));
        const std::uint32_t chosen = at(j);
        moved[j] = at(static_cast<std::uint32_t>(i));
        attackers_.push_back(chosen);
      }
      s.info.attackers = count;
    }
    classes_.push_back(s.info);
    radios_.push_back(std::move(s.radio));
    faults_.push_back(std::move(s.faults));
    device_traces_.push_back(std::move(s.device_trace));
    attacks_.push_back(std::move(s.attack));
    begin = end;
  }
  std::sort(attackers_.begin(), attackers_.end());
}

std::size_t Population::class_of(std::uint32_t id) const {
  if (id >= num_clients_) throw std::out_of_range("client " + std::to_string(id) + " of " + std::to_string(num_clients_));
  // The first class whose block ends after id (empty classes are skipped).
  const auto it = std::upper_bound(classes_.begin(), classes_.end(), id,
                                   [](std::uint32_t c, const ClientClass& k) { return c < k.end_client; });
  return static_cast<std::size_t>(it - classes_.begin());
}

ClientTraits Population::client(std::uint32_t c) const {
  const std::size_t k = class_of(c);
  const ClassTraits& s = class_traits_[k];
  ClientTraits t = s.shared;
  Rng link_rng = Rng::derive(seed_, Stream::kLinks, {c});
  t.link = s.link.draw(link_rng);
  if (const DeviceTrace* trace = device_traces_[k].get()) {
    const std::vector<DeviceRow>& rows = trace->rows();
    std::size_t row = (c - classes_[k].first_client) % rows.size();
    if (s.random_device) row = Rng::derive(seed_, Stream::kPopulation, {c, kDeviceRowTag}).below(rows.size());
    t.device = &rows[row];
    t.link.uplink_bps = t.device->uplink_bps;
    t.link.downlink_bps = t.device->downlink_bps;
  }
  if (t.availability.kind == Availability::Kind::kPeriodic && t.availability.random_phase) {
    Rng phase_rng = Rng::derive(seed_, Stream::kPopulation, {c});
    t.phase_s = phase_rng.uniform() * t.availability.period_s;
  }
  if (s.charging_random_phase) {
    Rng phase_rng = Rng::derive(seed_, Stream::kPopulation, {c, kChargingPhaseTag});
    t.charging_phase_s = phase_rng.uniform() * t.charging.period_s;
  }
  if (is_attacker(c)) t.attack = attacks_[k].get();
  return t;
}

bool Population::is_attacker(std::uint32_t client) const {
  return std::binary_search(attackers_.begin(), attackers_.end(), client);
}

double Population::max_data_weight() const {
  double w = 0.0;
  for (std::size_t k = 0; k < classes_.size(); ++k)
    if (classes_[k].end_client > classes_[k].first_client) w = std::max(w, class_traits_[k].shared.data_weight);
  return w;
}

bool Population::class_may_be_online(std::size_t k) const {
  const ClientTraits& t = class_traits_.at(k).shared;
  const Availability& a = t.availability;
  return !(a.kind == Availability::Kind::kProbability && a.online_probability <= 0.0) &&
         !(a.kind == Availability::Kind::kPeriodic && a.on_fraction <= 0.0) &&
         !(a.kind == Availability::Kind::kWhileCharging && t.charging.plugged_fraction <= 0.0);
}

bool Population::any_radio_tail() const {
  for (std::size_t k = 0; k < classes_.size(); ++k)
    if (classes_[k].end_client > classes_[k].first_client && radios_[k]->tail_s() > 0.0) return true;
  return false;
}

std::vector<std::string> Population::class_names() const {
  std::vector<std::string> out;
  for (const ClientClass& c : classes_) out.push_back(c.name);
  return out;
}

bool Population::any_label_flipping() const {
  for (const auto& a : attacks_)
    if (a && a->flips_labels()) return true;
  return false;
}

// The availability and charging models need the class and the client's
// phases only: no link draw (these run for every candidate of a sample).
bool Population::is_online(std::uint32_t client, std::uint32_t round, double time_s) const {
  const std::size_t k = class_of(client);
  const ClientTraits& t = class_traits_[k].shared;
  const Availability& a = t.availability;
  switch (a.kind) {
    case Availability::Kind::kAlways:
      return true;
    case Availability::Kind::kProbability: {
      Rng rng = Rng::derive(seed_, Stream::kAvailability, {client, round});
      return rng.bernoulli(a.online_probability);
    }
    case Availability::Kind::kPeriodic: {
      const double phase_s =
          a.random_phase ? Rng::derive(seed_, Stream::kPopulation, {client}).uniform() * a.period_s : 0.0;
      double x = std::fmod(time_s + phase_s, a.period_s);
      if (x < 0.0) x += a.period_s;
      return x < a.on_fraction * a.period_s;
    }
    case Availability::Kind::kWhileCharging:
      return is_charging(client, time_s);
    case Availability::Kind::kTrace:
      return this->client(client).device->is_online(time_s);
  }
  return true;
}

bool Population::is_charging(std::uint32_t client, double time_s) const {
  const ClassTraits& c = class_traits_[class_of(client)];
  const ChargingSchedule& charging = c.shared.charging;
  if (charging.period_s <= 0.0) return false;
  const double phase_s = c.charging_random_phase
                             ? Rng::derive(seed_, Stream::kPopulation, {client, kChargingPhaseTag}).uniform() *
                                   charging.period_s
                             : 0.0;
  double x = std::fmod(time_s + phase_s, charging.period_s);
  if (x < 0.0) x += charging.period_s;
  return x < charging.plugged_fraction * charging.period_s;
}

bool Population::drops_out(std::uint32_t client, std::uint32_t round) const {
  const double p = class_traits_[class_of(client)].shared.dropout_probability;
  if (p <= 0.0) return false;
  Rng rng = Rng::derive(seed_, Stream::kAvailability, {client, round, kDropoutTag});
  return rng.bernoulli(p);
}

}  // namespace fedsim
