// The checkpoint loader (server/checkpoint.h) must refuse any bytes that are
// not a checkpoint of this scenario with an InputError, and a state that does
// not fit with a DecodeError, never crash or hang; a state it accepts must
// run to the end. Two kinds of input, by the first byte:
//   even: the bytes as a whole checkpoint file (header, CRC, state);
//   odd:  edits of a real state taken after round 2 of a small FedBuff run
//         with error feedback and predictive memory: (offset u32, bytes)
//         pairs overwrite it, and a final u16 (if any) cuts it short, so that
//         the fuzzer reaches deep into Simulation::restore past the CRC.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/base/errors.h"
#include "server/checkpoint.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace {

const char* kScenario = R"(
seed: 5
data: {source: synthetic_classification, train_samples: 200, test_samples: 50, dim: 6, classes: 3}
partition: {scheme: iid}
model: {name: softmax_regression}
clients: 8
clients_per_round: 4
local_steps: 2
batch_size: 8
rounds: 4
threads: 1
server: {policy: async, buffer_size: 2, concurrency: 3}
uplink: [error_feedback, {censoring: {threshold: 0.1}}, qsgd]
client_optimizer: {name: adam}
aggregator: {name: median}
)";

const fedsim::Scenario& scenario() {
  static const fedsim::Scenario sc = fedsim::parse_scenario(kScenario, "fuzz.yaml");
  return sc;
}

const std::string& real_state() {
  static const std::string state = [] {
    fedsim::Simulation sim(scenario());
    std::string s;
    sim.run({}, [&](std::size_t closed) {
      if (closed == 2) s = sim.save();
    });
    return s;
  }();
  return state;
}

void try_state(const std::string& state) {
  fedsim::Simulation sim(scenario());
  try {
    sim.restore(state);
  } catch (const fedsim::DecodeError&) {
    return;
  }
  // An accepted state runs to the end, or is caught contradicting itself
  // (an event naming a flight or round its policy does not hold), or stops
  // as a diverged run does (a non-finite model: InputError, exit 2).
  try {
    sim.run();
  } catch (const fedsim::DecodeError&) {
  } catch (const fedsim::InputError&) {
  } catch (const std::out_of_range&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint64_t fingerprint = fedsim::scenario_fingerprint(scenario());
  if (data[0] % 2 == 0) {
    const std::string file(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
      try_state(fedsim::parse_checkpoint(file, fingerprint, "fuzz.bin").state);
    } catch (const fedsim::InputError&) {
    }
    return 0;
  }
  std::string state = real_state();
  std::size_t i = 1;
  while (i + 5 <= size) {
    std::uint32_t offset;
    std::memcpy(&offset, data + i, 4);
    const std::size_t n = 1 + data[i + 4] % 8;
    i += 5;
    for (std::size_t k = 0; k < n && i < size; ++k, ++i)
      if (!state.empty()) state[(offset + k) % state.size()] = static_cast<char>(data[i]);
  }
  if (i + 2 == size) {
    std::uint16_t cut;
    std::memcpy(&cut, data + i, 2);
    state.resize(state.size() - std::min<std::size_t>(cut, state.size()));
  }
  try_state(state);
  return 0;
}
