#include "tools/calibrate.h"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>
#include <vector>

#include "clients/device_profile.h"
#include "core/base/errors.h"
#include "core/base/simd.h"
#include "tools/bench_kernels.h"

namespace fedsim {

namespace {

struct RaplDomain {
  std::string energy;
  double max_range_uj = 0.0;
};

// Top-level package domains: intel-rapl:N (not intel-rapl:N:M subdomains).
std::vector<RaplDomain> rapl_domains(const std::string& root) {
  std::vector<RaplDomain> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("intel-rapl:", 0) != 0 || name.find(':', 11) != std::string::npos) continue;
    RaplDomain d;
    d.energy = (entry.path() / "energy_uj").string();
    std::ifstream range(entry.path() / "max_energy_range_uj");
    if (!(range >> d.max_range_uj)) d.max_range_uj = 0.0;
    out.push_back(d);
  }
  return out;
}

std::string host_cpu() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

std::string number(double x) {
  std::ostringstream s;
  s << std::setprecision(4) << x;
  return s.str();
}

}  // namespace

std::optional<double> read_rapl_uj(const std::string& root) {
  const std::vector<RaplDomain> domains = rapl_domains(root);
  if (domains.empty()) return std::nullopt;
  double total = 0.0;
  for (const RaplDomain& d : domains) {
    std::ifstream f(d.energy);
    double uj = 0.0;
    if (!(f >> uj)) return std::nullopt;
    total += uj;
  }
  return total;
}

int run_calibrate(std::ostream& out, const CalibrateSettings& settings) {
  const KernelBenchData data = make_kernel_bench_data(settings.samples);
  const simd::Isa isa = simd::best_isa();
  // Counters wrap at max_energy_range_uj; a run of a few seconds wraps at most once.
  const std::vector<RaplDomain> domains = rapl_domains(settings.rapl_root);
  double wrap_uj = 0.0;
  for (const RaplDomain& d : domains) wrap_uj = std::max(wrap_uj, d.max_range_uj);
  auto energy_j = [&](double before, double after) {
    double d = after - before;
    if (d < 0.0 && wrap_uj > 0.0) d += wrap_uj;
    return d * 1e-6;
  };
  bool rapl = read_rapl_uj(settings.rapl_root).has_value();
  std::ostringstream rates, joules;
  for (Precision p : kAllPrecisions) {
    const auto e0 = read_rapl_uj(settings.rapl_root);
    const EpochMeasurement m = measure_epochs(data, p, isa, settings.seconds);
    const auto e1 = read_rapl_uj(settings.rapl_root);
    const double macs = m.samples_per_s * m.macs_per_sample * m.seconds;
    const std::string sep = p == Precision::kFp32 ? "" : ", ";
    rates << sep << precision_name(p) << ": " << number(m.samples_per_s * m.macs_per_sample);
    if (e0 && e1 && rapl) {
      joules << sep << precision_name(p) << ": " << number(energy_j(*e0, *e1) / macs);
    } else {
      rapl = false;
    }
    out << "calibrate: " << precision_name(p) << " " << number(m.samples_per_s * m.macs_per_sample / 1e9)
        << " GMAC/s (" << number(m.samples_per_s) << " samples/s over " << number(m.seconds) << " s)\n";
  }
  std::string idle = "unknown";
  if (rapl) {
    const auto e0 = read_rapl_uj(settings.rapl_root);
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto e1 = read_rapl_uj(settings.rapl_root);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (e0 && e1) idle = number(energy_j(*e0, *e1) / s);
    else rapl = false;
  }
  std::string joules_map;
  if (rapl) {
    joules_map = "{" + joules.str() + "}";
  } else {
    joules_map = "{";
    for (Precision p : kAllPrecisions)
      joules_map += std::string(p == Precision::kFp32 ? "" : ", ") + precision_name(p) + ": unknown";
    joules_map += "}";
    idle = "unknown";
  }
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::ostringstream yaml;
  yaml << "# fedsim calibrate, " << when << ": " << host_cpu() << ", kernels on the " << simd::isa_name(isa)
       << " path (integer dot products: " << packed::dot_kernel_name(isa) << "), one thread.\n"
       << "# macs_per_s: multiply-adds per second of least-squares SGD epochs on the packed kernels\n"
       << "# (" << data.n << " x " << data.dim << (data.fashion_mnist ? " Fashion-MNIST" : " uniform [0, 1]")
       << " samples; MACs counted as the device model bills them, double sampling included below fp32).\n";
  if (rapl) {
    yaml << "# joules_per_mac: RAPL package energy over the same runs (the whole package: other load counts too);\n"
         << "# idle_w: RAPL package power over 0.5 s asleep.\n";
  } else {
    yaml << "# joules_per_mac and idle_w: unknown (RAPL energy counters under " << settings.rapl_root
         << " not readable here).\n"
         << "# A scenario refuses this profile until you replace every `unknown` with a measured number.\n";
  }
  yaml << "# Paste under a scenario's `profiles:` (or merge this file's map into it).\n"
       << "profiles:\n"
       << "  " << settings.name << ":\n"
       << "    macs_per_s: {" << rates.str() << "}\n"
       << "    joules_per_mac: " << joules_map << "\n"
       << "    idle_w: " << idle << "\n";
  if (settings.out.empty()) {
    out << yaml.str();
  } else {
    std::ofstream f(settings.out);
    if (!f) throw InputError("--out: cannot write '" + settings.out + "'");
    f << yaml.str();
    if (!f.flush()) throw InputError("--out: cannot write '" + settings.out + "'");
    out << "calibrate: wrote profile '" << settings.name << "' to " << settings.out
        << (rapl ? "" : " (joules unknown: fill them in before a scenario uses it)") << "\n";
  }
  return 0;
}

}  // namespace fedsim
