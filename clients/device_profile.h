// Device profiles: how long and how many joules a client's local computation
// takes, by arithmetic precision and, for DVFS profiles, by frequency level.
// Built-in profiles ("phone_cpu", "phone_gpu", "edge_gpu", "edge_fpga",
// "server_cpu", "pixel4xl_cpu") register themselves by name; a scenario adds
// its own under `profiles:` (see ProfileCatalog).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/config.h"
#include "core/base/registry.h"

namespace fedsim {

// Arithmetic precision of a client's local training kernels.
enum class Precision { kFp32, kInt8, kInt4, kInt2 };
inline constexpr std::size_t kNumPrecisions = 4;
inline constexpr std::array<Precision, kNumPrecisions> kAllPrecisions = {Precision::kFp32, Precision::kInt8,
                                                                         Precision::kInt4, Precision::kInt2};

// "fp32", "int8", "int4", "int2".
const char* precision_name(Precision p);
std::optional<Precision> parse_precision(std::string_view name);
// Bits per value: 32, 8, 4, 2.
int precision_bits(Precision p);
// Reads `key` as a precision name (InputError "file:line: key: expected one of: fp32, int8, int4, int2").
Precision get_precision(const Config& config, const std::string& key, Precision fallback);

// How a client class picks its DVFS level each round (population key `frequency`).
enum class FrequencyChoice : std::uint8_t {
  kMax,          // the highest level (the only one of a profile without DVFS)
  kFixed,        // one level, named by its frequency
  kEnergyAware,  // the lowest level that meets the round deadline, else the highest
};

// Contract: a profile is immutable after construction; every method is const
// and thread-safe. compute_time_s / compute_energy_j require supports(p)
// (callers validate at load time; asserted), level < num_levels() and
// macs >= 0, and are linear in macs: the device runs at a sustained rate, no
// warm-up or batching effects. Levels are ordered by frequency, lowest first.
class DeviceProfile {
 public:
  virtual ~DeviceProfile() = default;
  virtual const std::string& name() const = 0;
  virtual bool supports(Precision p) const = 0;
  // DVFS operating points; 1 for a profile without DVFS.
  virtual std::size_t num_levels() const { return 1; }
  // Frequency of a level in Hz; 0 when the profile does not say.
  virtual double level_hz(std::size_t level) const {
    (void)level;
    return 0.0;
  }
  virtual double compute_time_s(double macs, Precision p, std::size_t level) const = 0;
  virtual double compute_energy_j(double macs, Precision p, std::size_t level) const = 0;
  // Power drawn while online and waiting in a round (not computing, not transmitting).
  virtual double idle_power_w() const = 0;

  // At the highest level.
  double compute_time_s(double macs, Precision p) const { return compute_time_s(macs, p, num_levels() - 1); }
  double compute_energy_j(double macs, Precision p) const { return compute_energy_j(macs, p, num_levels() - 1); }
};

// Sustained figures for one precision; macs_per_s == 0 means unsupported.
struct PrecisionFigures {
  double macs_per_s = 0.0;
  double joules_per_mac = 0.0;
};

// A profile given by a table: time = macs / macs_per_s[p], energy = macs * joules_per_mac[p].
class TableProfile final : public DeviceProfile {
 public:
  using Table = std::array<PrecisionFigures, kNumPrecisions>;  // indexed by Precision
  TableProfile(std::string name, const Table& table, double idle_w);

  // From a scenario map {macs_per_s: {fp32: 2e9, ...}, joules_per_mac: {fp32: 1e-9, ...}, idle_w: 0.3}.
  // Both maps must list the same precisions (at least one); macs_per_s > 0,
  // joules_per_mac >= 0, idle_w >= 0 (default 0). Throws InputError with file:line: key.
  static std::unique_ptr<TableProfile> from_config(const std::string& name, const Config& config);

  using DeviceProfile::compute_energy_j;
  using DeviceProfile::compute_time_s;
  const std::string& name() const override { return name_; }
  bool supports(Precision p) const override;
  double compute_time_s(double macs, Precision p, std::size_t level) const override;
  double compute_energy_j(double macs, Precision p, std::size_t level) const override;
  double idle_power_w() const override { return idle_w_; }

  const Table& table() const { return table_; }

 private:
  std::string name_;
  Table table_;
  double idle_w_;
};

// A DVFS profile: a CPU at one of its frequency levels. Work is cycles =
// macs * cycles_per_mac[p] (over `cores` cores, so time = cycles / (f *
// cores)); energy per level is either
//   power table:  the level's active power P (given in W, or in mA per core
//                 at voltage_v, as Android's power_profile.xml lists them)
//                 times the time: E = P * cores * cycles / (f * cores)
//   alpha model:  E = alpha * cycles * f^2 (GenQSGD; time cycles / f)
// Scenario map (under profiles: NAME: {dvfs: {...}, idle_w: W}):
//   cycles_per_mac  {fp32: c, ...}, at least one precision, c > 0
//   cores           >= 1, default 1
//   levels          [{hz: f, w: P} | {hz: f, ma: I}, ...] (ma needs voltage_v),
//                   strictly increasing hz; or
//   alpha + frequencies_hz: [f, ...] (the alpha model)
class DvfsProfile final : public DeviceProfile {
 public:
  struct Level {
    double hz = 0.0;
    double joules_per_cycle = 0.0;
  };
  using CyclesPerMac = std::array<double, kNumPrecisions>;  // 0 = unsupported
  DvfsProfile(std::string name, const CyclesPerMac& cycles_per_mac, std::vector<Level> levels, double cores,
              double idle_w);

  static std::unique_ptr<DvfsProfile> from_config(const std::string& name, const Config& config);

  using DeviceProfile::compute_energy_j;
  using DeviceProfile::compute_time_s;
  const std::string& name() const override { return name_; }
  bool supports(Precision p) const override { return cycles_per_mac_[static_cast<std::size_t>(p)] > 0.0; }
  std::size_t num_levels() const override { return levels_.size(); }
  double level_hz(std::size_t level) const override { return levels_.at(level).hz; }
  double compute_time_s(double macs, Precision p, std::size_t level) const override;
  double compute_energy_j(double macs, Precision p, std::size_t level) const override;
  double idle_power_w() const override { return idle_w_; }

 private:
  std::string name_;
  CyclesPerMac cycles_per_mac_;
  std::vector<Level> levels_;
  double cores_;
  double idle_w_;
};

// Built-in profiles by name (factories take no arguments).
using DeviceProfileRegistry = Registry<DeviceProfile>;

// The profiles a scenario can name: every built-in plus the scenario's own.
// Owns them; pointers stay valid for the catalog's lifetime (also across moves).
class ProfileCatalog {
 public:
  ProfileCatalog();  // built-ins only
  // Built-ins plus each entry of the `profiles:` map (name -> TableProfile
  // map, or {dvfs: DvfsProfile map, idle_w: W}). A user name equal to a built-in name is an InputError (pick a new
  // name; built-in figures are documented and never silently replaced).
  explicit ProfileCatalog(const Config& profiles);

  const DeviceProfile* find(const std::string& name) const;  // nullptr if unknown
  std::vector<std::string> names() const;                     // sorted
  // The profile `config[key]` names, or InputError "file:line: key: expected a
  // device profile (one of: ...), found 'x'".
  const DeviceProfile& get(const Config& config, const std::string& key, const std::string& fallback) const;

 private:
  std::map<std::string, std::unique_ptr<DeviceProfile>> profiles_;
};

}  // namespace fedsim
