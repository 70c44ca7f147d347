// The scenario parser must turn any bytes into a Scenario or an InputError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/base/errors.h"
#include "server/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    fedsim::Scenario s = fedsim::parse_scenario(text, "fuzz.yaml");
    s.root.finish();
  } catch (const fedsim::InputError&) {
  }
  return 0;
}
