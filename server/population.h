// The client population: which device, precision, link, battery and
// availability each simulated client has.
//
// Scenario keys (read from the scenario root):
//   profiles:   {my_name: {macs_per_s: {fp32: 2e9, int8: 8e9}, joules_per_mac: {fp32: 1e-9, int8: 3e-10}, idle_w: 0.3}}
//   population: list of client classes, each
//     name                 required, unique
//     fraction             required, in [0, 1]; the fractions must sum to 1 (+-1e-6)
//     profile              device profile name (built-in or under profiles:), default server_cpu
//     precision            fp32 | int8 | int4 | int2, default fp32; the profile must support it
//     frequency            max (default) | energy_aware | a frequency in Hz, one of the
//                          profile's DVFS levels; energy_aware needs server policy deadline
//     link                 see server/link_model.h; omitted fields take the default link;
//                          its `radio:` map picks the radio model (server/radio_model.h);
//                          loss and bandwidth traces: server/network_faults.h
//     battery_j            >= 0, default 0 = unlimited: the battery energy the job may use
//     battery              {capacity_j: C > 0, budget_fraction: f in (0, 1]} instead of
//                          battery_j: the job may use f C of the battery (C = 49,284 J for
//                          the Pixel 4 XL's 3700 mAh at 3.7 V)
//     charging             {period_s: T, plugged_fraction: f, phase: random|zero}: plugged in
//                          at t iff fmod(t + phase_s, T) < f T (a diurnal model: T = 86400);
//                          energy spent while plugged in is grid energy, not battery energy
//     availability         {} (always online, default) | {online_probability: p} |
//                          {period_s: T, on_fraction: f, phase: random|zero} |
//                          {while_charging: true}: eligible only while plugged in (the class
//                          is then idle, charging and, with radio wifi, on WiFi); needs charging
//     device_trace         {file: devices.csv, assign: sequential|random}: each client takes a
//                          device's compute speed, link rates and online periods from a trace
//                          (server/device_trace.h); excludes availability and the link's rates
//     dropout_probability  in [0, 1], default 0: probability to drop out mid-round
//     data_weight          > 0, default 1: relative local data size; a client keeps the
//                          fraction w / w_max (rounded up) of its partition share
//     attack               {name: ATTACK, fraction: f in [0, 1] (default 1), the attack's keys}:
//                          round(f x class size) clients of the class, drawn uniformly, are
//                          Byzantine (clients/attack.h; `fedsim list` names the attacks)
//   server_capacity_bps:   >= 0, default 0 = unlimited (see server/link_model.h)
//
// Without `population:` there is one class "default": server_cpu, fp32, the
// default Link (10e6 bps up, 50e6 bps down, 0.05 s latency, 1e-7 J/bit tx,
// 5e-8 J/bit rx), always online, no battery, no drop-out, data_weight 1.
//
// Assignment of client ids to classes (deterministic, contiguous): with F_k the
// sum of the fractions of classes 0..k, class k gets ids
// [round(n F_{k-1}), round(n F_k)) (F_{-1} = 0; the last class ends at n), so
// class 0 gets the first round(f_0 n) ids and the last class the remainder.
//
// Randomness (all from the scenario seed, never from state):
//   link of client c:           Rng::derive(seed, Stream::kLinks, {c})
//   random phase of client c:   Rng::derive(seed, Stream::kPopulation, {c})
//   its random charging phase:  Rng::derive(seed, Stream::kPopulation, {c, 1})
//   online in round r:          Rng::derive(seed, Stream::kAvailability, {c, r}), Bernoulli(p)
//   drop-out in round r:        Rng::derive(seed, Stream::kAvailability, {c, r, 1}), Bernoulli(q)
//   packet losses, trace phase: server/network_faults.h
//   attackers of class k:       Rng::derive(seed, Stream::kAttack, {k, 0, 0}), a partial
//                               Fisher-Yates shuffle of the class's ids
//
// Memory (issue 11): nothing is stored per client. A client's traits are
// derived on demand from its class (a binary search over the class
// boundaries) and the streams above, so client(id) costs a few draws and the
// population takes O(classes + attackers) memory (4 bytes per attacker, a
// sorted list of their ids), whatever the number of clients.
// (with the async server policy, r counts the server's dispatches: one per
// refill of the clients in flight, and one per retry while nobody is)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "clients/attack.h"
#include "clients/device_profile.h"
#include "core/base/config.h"
#include "server/link_model.h"
#include "server/device_trace.h"
#include "server/network_faults.h"
#include "server/radio_model.h"

namespace fedsim {

struct Availability {
  // kTrace: the client's device-trace row's online periods (server/device_trace.h).
  enum class Kind { kAlways, kProbability, kPeriodic, kWhileCharging, kTrace } kind = Kind::kAlways;
  double online_probability = 1.0;  // kProbability: online in a round with this probability
  // kPeriodic: online at time t iff fmod(t + phase_s, period_s) < on_fraction * period_s.
  double period_s = 0.0;
  double on_fraction = 1.0;
  bool random_phase = false;  // phase: random -> phase_s uniform in [0, period_s) per client
};

// When a client is plugged in: at t iff fmod(t + phase_s, period_s) <
// plugged_fraction * period_s. period_s == 0: never (no charging model).
struct ChargingSchedule {
  double period_s = 0.0;
  double plugged_fraction = 0.0;
};

struct ClientTraits {
  std::size_t class_index = 0;
  const DeviceProfile* profile = nullptr;  // owned by the Population
  Precision precision = Precision::kFp32;
  FrequencyChoice frequency = FrequencyChoice::kMax;
  std::uint16_t fixed_level = 0;  // FrequencyChoice::kFixed: the profile's level
  Link link;
  const RadioModel* radio = nullptr;  // owned by the Population (one per class)
  const LinkFaults* faults = nullptr;  // owned by the Population (one per class); null: a faultless link
  const DeviceRow* device = nullptr;   // its device-trace row (owned by the Population); null: none
  double battery_j = 0.0;  // 0 = unlimited
  Availability availability;
  double phase_s = 0.0;  // this client's phase in its periodic trace (0 unless phase: random)
  ChargingSchedule charging;
  double charging_phase_s = 0.0;  // its phase in the charging schedule (0 unless phase: random)
  double dropout_probability = 0.0;
  double data_weight = 1.0;
  const Attack* attack = nullptr;  // owned by the Population (one per class); null: honest
};

struct ClientClass {
  std::string name;
  double fraction = 1.0;
  std::string profile;
  Precision precision = Precision::kFp32;
  FrequencyChoice frequency = FrequencyChoice::kMax;
  std::string frequency_where;     // file:line: frequency, for errors found later (energy_aware without a deadline)
  std::string radio;               // radio model name
  std::string attack;              // attack name, empty when the class has no attackers
  std::string attack_where;        // file:line: attack.name, for errors found later
  std::size_t attackers = 0;       // how many of its clients attack
  std::uint32_t first_client = 0;  // ids [first_client, end_client)
  std::uint32_t end_client = 0;
};

// Contract: immutable after construction; every const method is thread-safe
// and deterministic in (seed, client, round, time).
class Population {
 public:
  // Reads `profiles`, `population` and `server_capacity_bps` from the
  // scenario root and draws every client's traits. Throws InputError
  // (file:line: key) on bad input, including unknown keys inside population
  // entries and profiles (the caller's root.finish() covers the rest).
  Population(const Config& root, std::size_t num_clients, std::uint64_t seed);

  std::size_t num_clients() const { return num_clients_; }
  // The traits of client `id` (< num_clients()), derived on demand (see
  // "Memory" above): the same value on every call.
  ClientTraits client(std::uint32_t id) const;
  // The class of client `id` (binary search over the class boundaries).
  std::size_t class_of(std::uint32_t id) const;
  std::size_t num_classes() const { return classes_.size(); }
  const std::string& class_name(std::size_t index) const { return classes_.at(index).name; }
  const ClientClass& client_class(std::size_t index) const { return classes_.at(index); }
  std::vector<std::string> class_names() const;
  double server_capacity_bps() const { return server_capacity_bps_; }
  const ProfileCatalog& profiles() const { return catalog_; }
  // Whether any client's attack flips labels / colludes.
  bool any_label_flipping() const;
  bool is_attacker(std::uint32_t client) const;
  // Class k's attack (null: an honest class).
  const Attack* class_attack(std::size_t k) const { return attacks_.at(k).get(); }
  // The largest data_weight of a class with clients (Server: a client keeps
  // ceil(size * w / max) of its partition share).
  double max_data_weight() const;
  // Whether some client of class k can ever be online (its availability
  // model allows it at some time or round).
  bool class_may_be_online(std::size_t k) const;
  // Some class's radio has a tail (the ledger then keeps radio states).
  bool any_radio_tail() const;

  // Whether `client` is online at virtual time `time_s` in round `round`.
  // Probability model: one draw per (client, round), independent of time.
  // Periodic model: depends on time only.
  bool is_online(std::uint32_t client, std::uint32_t round, double time_s) const;
  // Whether `client`, sampled in `round`, drops out before delivering its update.
  bool drops_out(std::uint32_t client, std::uint32_t round) const;
  // Whether `client` is plugged in at virtual time `time_s` (charging schedule).
  bool is_charging(std::uint32_t client, double time_s) const;
  std::uint64_t seed() const { return seed_; }

 private:
  ProfileCatalog catalog_;
  std::vector<std::unique_ptr<RadioModel>> radios_;  // by class
  std::vector<std::unique_ptr<LinkFaults>> faults_;   // by class (null: none)
  std::vector<std::shared_ptr<const DeviceTrace>> device_traces_;  // by class (null: none)
  std::vector<std::unique_ptr<Attack>> attacks_;     // by class (null: honest class)
  std::vector<ClientClass> classes_;
  // Per class: the traits its clients share (link, phases, device row,
  // attack are filled in per client by client()), and how to draw the rest.
  struct ClassTraits {
    ClientTraits shared;
    LinkSpec link;
    bool random_device = false;
    bool charging_random_phase = false;
  };
  std::vector<ClassTraits> class_traits_;
  std::vector<std::uint32_t> attackers_;  // sorted ids of every class's attackers
  std::size_t num_clients_ = 0;
  std::uint64_t seed_;
  double server_capacity_bps_ = 0.0;
};

}  // namespace fedsim
