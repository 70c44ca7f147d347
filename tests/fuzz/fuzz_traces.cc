// The trace parsers (bandwidth traces, device traces) must turn any bytes
// into a trace or an InputError; a parsed bandwidth trace must answer
// transfer times that are finite and >= 0.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/base/errors.h"
#include "server/device_trace.h"
#include "server/network_faults.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto t = fedsim::BandwidthTrace::parse(text, "fuzz.csv");
    for (double start : {0.0, 0.5 * t->period_s(), 1e6})
      for (double bits : {1.0, 1e6, 1e9}) {
        const double s = t->transfer_s(start, bits, 0.0);
        if (!std::isfinite(s) || s < 0.0) std::abort();
      }
  } catch (const fedsim::InputError&) {
  }
  try {
    const auto d = fedsim::DeviceTrace::parse(text, "fuzz.csv");
    for (const auto& row : d->rows()) (void)row.is_online(12345.0);
  } catch (const fedsim::InputError&) {
  }
  return 0;
}
