#include "clients/device_profile.h"

#include <cassert>
#include <cmath>
#include <limits>

#include "core/base/errors.h"

namespace fedsim {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kInt8: return "int8";
    case Precision::kInt4: return "int4";
    case Precision::kInt2: return "int2";
  }
  return "?";
}

std::optional<Precision> parse_precision(std::string_view name) {
  for (Precision p : kAllPrecisions)
    if (name == precision_name(p)) return p;
  return std::nullopt;
}

int precision_bits(Precision p) {
  switch (p) {
    case Precision::kFp32: return 32;
    case Precision::kInt8: return 8;
    case Precision::kInt4: return 4;
    case Precision::kInt2: return 2;
  }
  return 0;
}

Precision get_precision(const Config& config, const std::string& key, Precision fallback) {
  const std::string s = config.get_choice(key, precision_name(fallback), {"fp32", "int8", "int4", "int2"});
  return *parse_precision(s);
}

TableProfile::TableProfile(std::string name, const Table& table, double idle_w)
    : name_(std::move(name)), table_(table), idle_w_(idle_w) {}

bool TableProfile::supports(Precision p) const { return table_[static_cast<std::size_t>(p)].macs_per_s > 0.0; }

double TableProfile::compute_time_s(double macs, Precision p, std::size_t level) const {
  assert(supports(p) && macs >= 0.0 && level == 0);
  (void)level;
  return macs / table_[static_cast<std::size_t>(p)].macs_per_s;
}

double TableProfile::compute_energy_j(double macs, Precision p, std::size_t level) const {
  assert(supports(p) && macs >= 0.0 && level == 0);
  (void)level;
  return macs * table_[static_cast<std::size_t>(p)].joules_per_mac;
}

DvfsProfile::DvfsProfile(std::string name, const CyclesPerMac& cycles_per_mac, std::vector<Level> levels,
                         double cores, double idle_w)
    : name_(std::move(name)), cycles_per_mac_(cycles_per_mac), levels_(std::move(levels)), cores_(cores),
      idle_w_(idle_w) {
  assert(!levels_.empty() && cores_ >= 1.0);
}

double DvfsProfile::compute_time_s(double macs, Precision p, std::size_t level) const {
  assert(supports(p) && macs >= 0.0);
  return macs * cycles_per_mac_[static_cast<std::size_t>(p)] / (levels_.at(level).hz * cores_);
}

double DvfsProfile::compute_energy_j(double macs, Precision p, std::size_t level) const {
  assert(supports(p) && macs >= 0.0);
  return macs * cycles_per_mac_[static_cast<std::size_t>(p)] * levels_.at(level).joules_per_cycle;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string scalar_text(const Config& config, const std::string& key) {
  const YAML::Node n = config.node()[key];
  return n.IsScalar() ? "'" + n.Scalar() + "'" : "a mapping or list";
}

std::string precision_list() {
  std::string out;
  for (Precision p : kAllPrecisions) out += (out.empty() ? "" : ", ") + std::string(precision_name(p));
  return out;
}

}  // namespace

std::unique_ptr<TableProfile> TableProfile::from_config(const std::string& name, const Config& config) {
  Table table{};
  const Config rates = config.child("macs_per_s");
  const std::vector<std::string> rate_keys = rates.keys();
  if (rate_keys.empty())
    config.fail("macs_per_s", "a mapping precision -> MAC/s with at least one of " + precision_list(),
                config.has("macs_per_s") ? "an empty mapping" : "nothing");
  for (const std::string& k : rate_keys) {
    const auto p = parse_precision(k);
    if (!p) rates.fail(k, "a precision (" + precision_list() + ")", "'" + k + "'");
    const double rate = rates.get_double(k, -kInf, kInf);
    if (!(rate > 0.0) || !std::isfinite(rate)) rates.fail(k, "a finite number > 0 (MAC/s)", scalar_text(rates, k));
    table[static_cast<std::size_t>(*p)].macs_per_s = rate;
  }
  const Config energies = config.child("joules_per_mac");
  for (const std::string& k : energies.keys()) {
    const auto p = parse_precision(k);
    if (!p || table[static_cast<std::size_t>(*p)].macs_per_s == 0.0)
      energies.fail(k, "a precision listed under macs_per_s", "'" + k + "'");
  }
  for (Precision p : kAllPrecisions) {
    auto& row = table[static_cast<std::size_t>(p)];
    if (row.macs_per_s == 0.0) continue;
    // `fedsim calibrate` writes `unknown` where it could not measure: refused, never a silent zero.
    if (energies.has(precision_name(p)) && energies.node()[precision_name(p)].IsScalar() &&
        energies.node()[precision_name(p)].Scalar() == "unknown")
      energies.fail(precision_name(p),
                    "a finite number >= 0 (J/MAC; fedsim calibrate could not read RAPL energy counters: measure "
                    "the energy per MAC of this precision and replace 'unknown')",
                    "'unknown'");
    row.joules_per_mac = energies.get_double(precision_name(p), 0.0, kInf);
    if (!std::isfinite(row.joules_per_mac))
      energies.fail(precision_name(p), "a finite number >= 0 (J/MAC)", scalar_text(energies, precision_name(p)));
  }
  if (config.has("idle_w") && config.node()["idle_w"].IsScalar() && config.node()["idle_w"].Scalar() == "unknown")
    config.fail("idle_w",
                "a number >= 0 (W; fedsim calibrate could not read RAPL energy counters: measure the idle power "
                "and replace 'unknown')",
                "'unknown'");
  const double idle_w = config.get_double("idle_w", 0.0, 0.0, 1e9);
  return std::make_unique<TableProfile>(name, table, idle_w);
}

std::unique_ptr<DvfsProfile> DvfsProfile::from_config(const std::string& name, const Config& profile) {
  const Config config = profile.child("dvfs");
  CyclesPerMac cycles{};
  const Config per_mac = config.child("cycles_per_mac");
  const std::vector<std::string> keys = per_mac.keys();
  if (keys.empty())
    config.fail("cycles_per_mac", "a mapping precision -> cycles per MAC with at least one of " + precision_list(),
                config.has("cycles_per_mac") ? "an empty mapping" : "nothing");
  for (const std::string& k : keys) {
    const auto p = parse_precision(k);
    if (!p) per_mac.fail(k, "a precision (" + precision_list() + ")", "'" + k + "'");
    const double c = per_mac.get_double(k, -kInf, kInf);
    if (!(c > 0.0) || !std::isfinite(c)) per_mac.fail(k, "a finite number > 0 (cycles/MAC)", scalar_text(per_mac, k));
    cycles[static_cast<std::size_t>(*p)] = c;
  }
  const double cores = config.get_double("cores", 1.0, 1.0, 1e6);
  std::vector<Level> levels;
  const bool alpha_model = config.has("alpha") || config.has("frequencies_hz");
  if (alpha_model == config.has("levels"))
    config.fail("levels", "either levels: [{hz, w | ma}, ...] or alpha with frequencies_hz (not both)",
                alpha_model ? "both" : "neither");
  const auto check_hz = [&](const Config& where, const std::string& key, double hz) {
    if (!(hz > 0.0) || !std::isfinite(hz)) where.fail(key, "a finite frequency > 0 Hz", scalar_text(where, key));
    if (!levels.empty() && !(hz > levels.back().hz))
      where.fail(key, "frequencies in strictly increasing order", scalar_text(where, key));
  };
  if (alpha_model) {
    const double alpha = config.get_double("alpha", 0.0, kInf);
    if (!std::isfinite(alpha)) config.fail("alpha", "a finite number >= 0", scalar_text(config, "alpha"));
    const std::vector<double> hz = config.get_double_list("frequencies_hz", 0.0, kInf);
    if (hz.empty()) config.fail("frequencies_hz", "a non-empty list of frequencies (Hz)", "an empty list");
    for (double f : hz) {
      check_hz(config, "frequencies_hz", f);
      levels.push_back(Level{f, alpha * f * f});
    }
  } else {
    const bool needs_voltage = [&] {
      for (const Config& l : config.children("levels"))
        if (l.has("ma")) return true;
      return false;
    }();
    const double voltage = needs_voltage ? config.get_double("voltage_v", 0.0, 1e3) : 0.0;
    if (needs_voltage && !(voltage > 0.0)) config.fail("voltage_v", "a voltage > 0 (levels given in ma)", scalar_text(config, "voltage_v"));
    for (const Config& l : config.children("levels")) {
      if (!l.is_map()) l.fail("", "a mapping {hz: f, w: P} or {hz: f, ma: I}", "something else");
      const double hz = l.get_double("hz", -kInf, kInf);
      check_hz(l, "hz", hz);
      if (l.has("w") == l.has("ma")) l.fail("w", "exactly one of w (watts) or ma (mA per core)", l.has("w") ? "both" : "neither");
      const double w = l.has("w") ? l.get_double("w", 0.0, 1e6) : l.get_double("ma", 0.0, 1e9) * 1e-3 * voltage;
      levels.push_back(Level{hz, w / hz});
    }
    if (levels.empty()) config.fail("levels", "a non-empty list of levels", "an empty list");
  }
  const double idle_w = profile.get_double("idle_w", 0.0, 0.0, 1e9);
  return std::make_unique<DvfsProfile>(name, cycles, std::move(levels), cores, idle_w);
}

// ---------------------------------------------------------------------------
// Built-in profiles. Sustained (not peak) rates for training-like dense
// kernels; joules_per_mac = sustained package/module power / rate. Figures are
// datasheet-order estimates; the README's "Device profiles" table gives
// their sources. CPUs have no sub-byte multiply: int4/int2 run unpacked to int8,
// at the int8 rate and energy.
namespace {

struct Row {
  Precision precision;
  double macs_per_s;
  double power_w;  // sustained power while computing at this precision
};

std::unique_ptr<DeviceProfile> make_builtin(const std::string& name, std::initializer_list<Row> rows,
                                            double idle_w) {
  TableProfile::Table table{};
  for (const Row& r : rows)
    table[static_cast<std::size_t>(r.precision)] = PrecisionFigures{r.macs_per_s, r.power_w / r.macs_per_s};
  return std::make_unique<TableProfile>(name, table, idle_w);
}

// ZipML (Zhang et al. 2017): FPGA low-precision SGD 6.5x (2-bit) and 7.2x
// (4-bit) faster than float32 on a 10-thread CPU (Xeon E5-2680 v2 of the Intel
// HARP platform). server_cpu models that CPU; edge_fpga is scaled from it.
constexpr double kServerCpuFp32MacsPerS = 1.0e11;  // 10 cores x 2.8 GHz x 8 AVX MAC/cycle = 2.24e11 peak
constexpr double kZipmlSpeedupInt2 = 6.5;
constexpr double kZipmlSpeedupInt4 = 7.2;

std::unique_ptr<DeviceProfile> phone_cpu() {
  // 4 big ARMv8.2 cores with NEON/SDOT, ~3 W sustained.
  return make_builtin("phone_cpu",
                      {{Precision::kFp32, 1.5e10, 3.0},
                       {Precision::kInt8, 3.0e10, 3.0},
                       {Precision::kInt4, 3.0e10, 3.0},
                       {Precision::kInt2, 3.0e10, 3.0}},
                      0.1);
}

std::unique_ptr<DeviceProfile> phone_gpu() {
  // Adreno 6xx-class mobile GPU: ~0.7-1 TFLOP/s fp32 peak, ~15% sustained in
  // training kernels, ~3 W. Float only (the mobile GPU path dequantizes int8).
  return make_builtin("phone_gpu", {{Precision::kFp32, 6.0e10, 3.0}}, 0.15);
}

std::unique_ptr<DeviceProfile> edge_gpu() {
  // Jetson Xavier NX class (384-core Volta GPU, 48 tensor cores; 21 TOPS int8
  // peak incl. DLAs) in its 15 W mode. Lowest precision in TensorRT: int8.
  return make_builtin("edge_gpu", {{Precision::kFp32, 2.0e11, 15.0}, {Precision::kInt8, 1.0e12, 15.0}}, 2.0);
}

std::unique_ptr<DeviceProfile> edge_fpga() {
  // Stratix V / Zynq UltraScale+ class board, ~25 W. int4 and int2 from the
  // ZipML ratios over server_cpu fp32 (the 2-bit and 4-bit figures come from
  // different workloads in the paper, hence int4 slightly faster than int2).
  // int8: half the int4 rate (bandwidth-bound engine, twice the bits per value).
  // No float datapath.
  return make_builtin("edge_fpga",
                      {{Precision::kInt8, kZipmlSpeedupInt4 * kServerCpuFp32MacsPerS / 2.0, 25.0},
                       {Precision::kInt4, kZipmlSpeedupInt4 * kServerCpuFp32MacsPerS, 25.0},
                       {Precision::kInt2, kZipmlSpeedupInt2 * kServerCpuFp32MacsPerS, 25.0}},
                      5.0);
}

std::unique_ptr<DeviceProfile> server_cpu() {
  // 10-core Xeon (115 W TDP), ~100 W sustained. int8: 16-bit SIMD multiply-add, 2x fp32.
  return make_builtin("server_cpu",
                      {{Precision::kFp32, kServerCpuFp32MacsPerS, 100.0},
                       {Precision::kInt8, 2.0 * kServerCpuFp32MacsPerS, 100.0},
                       {Precision::kInt4, 2.0 * kServerCpuFp32MacsPerS, 100.0},
                       {Precision::kInt2, 2.0 * kServerCpuFp32MacsPerS, 100.0}},
                      30.0);
}

// Google Pixel 4 XL (Snapdragon 855), from its power_profile.xml as the issue
// quotes it: 300 MHz at 39.44 mA and 2842 MHz at 223.89 mA per core. Only
// those two levels: the file's other frequencies, its cluster and idle
// currents are not among the figures available here, and no level is
// interpolated. Currents at 3.7 V (the battery figure: 3700 mAh at
// 3.7 V). Cycles per MAC from phone_cpu's sustained rates (1.5e10 fp32 and
// 3e10 int8 MAC/s on 4 cores at 2.4 GHz: 1.5625 and 3.125 MAC per cycle per
// core), an estimate, not part of the power profile. One core.
constexpr double kPixel4XlVolts = 3.7;

std::unique_ptr<DeviceProfile> pixel4xl_cpu() {
  DvfsProfile::CyclesPerMac cycles{};
  cycles[static_cast<std::size_t>(Precision::kFp32)] = 1.0 / 1.5625;
  for (Precision p : {Precision::kInt8, Precision::kInt4, Precision::kInt2})
    cycles[static_cast<std::size_t>(p)] = 1.0 / 3.125;
  const auto level = [](double mhz, double ma) {
    const double hz = mhz * 1e6;
    return DvfsProfile::Level{hz, ma * 1e-3 * kPixel4XlVolts / hz};
  };
  return std::make_unique<DvfsProfile>("pixel4xl_cpu", cycles,
                                       std::vector<DvfsProfile::Level>{level(300, 39.44), level(2842, 223.89)}, 1.0,
                                       0.0);
}

FEDSIM_REGISTER(DeviceProfileRegistry, "pixel4xl_cpu", pixel4xl_cpu,
                "Pixel 4 XL CPU core, DVFS: 300 MHz at 39.44 mA, 2842 MHz at 223.89 mA (power_profile.xml)");
FEDSIM_REGISTER(DeviceProfileRegistry, "phone_cpu", phone_cpu, "phone CPU, 4 big ARM cores (fp32, int8/4/2)");
FEDSIM_REGISTER(DeviceProfileRegistry, "phone_gpu", phone_gpu, "mobile GPU, Adreno 6xx class (fp32 only)");
FEDSIM_REGISTER(DeviceProfileRegistry, "edge_gpu", edge_gpu, "Jetson Xavier NX class, 15 W (fp32, int8)");
FEDSIM_REGISTER(DeviceProfileRegistry, "edge_fpga", edge_fpga, "FPGA low-precision engine, ZipML ratios (int8/4/2)");
FEDSIM_REGISTER(DeviceProfileRegistry, "server_cpu", server_cpu, "10-core Xeon, ZipML CPU baseline (fp32, int8/4/2)");

}  // namespace

// ---------------------------------------------------------------------------

ProfileCatalog::ProfileCatalog() {
  for (const auto& [name, entry] : DeviceProfileRegistry::instance().entries()) profiles_[name] = entry.factory();
}

ProfileCatalog::ProfileCatalog(const Config& profiles) : ProfileCatalog() {
  for (const std::string& name : profiles.keys()) {
    if (profiles_.count(name))
      profiles.fail(name, "a new profile name (built-in profiles cannot be redefined)", "'" + name + "'");
    const Config entry = profiles.child(name);
    if (entry.has("dvfs"))
      profiles_[name] = DvfsProfile::from_config(name, entry);
    else
      profiles_[name] = TableProfile::from_config(name, entry);
  }
}

const DeviceProfile* ProfileCatalog::find(const std::string& name) const {
  auto it = profiles_.find(name);
  return it == profiles_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ProfileCatalog::names() const {
  std::vector<std::string> out;
  for (const auto& [name, p] : profiles_) out.push_back(name);
  return out;
}

const DeviceProfile& ProfileCatalog::get(const Config& config, const std::string& key,
                                         const std::string& fallback) const {
  const std::string name = config.get_string(key, fallback);
  const DeviceProfile* p = find(name);
  if (!p) {
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    config.fail(key, "a device profile (one of: " + known + ")", "'" + name + "'");
  }
  return *p;
}

}  // namespace fedsim
