// Radio models: what a client's radio spends, and how long it waits, to move
// a message. Registered by name; a population class picks one under its link:
//
//   link: {uplink_bps: 5e6, radio: {model: lte, tail_w: 1.0}}
//
// `linear` (the default) is fedsim's original rule: joules per bit each way
// (the link's tx_j_per_bit / rx_j_per_bit), no promotion, no tail. The other
// models are radio resource control (RRC) state machines:
//
//   idle --promotion (delay, power)--> connected: active power while bytes move
//        <--tail stages (duration, power each)-- after the last byte
//
// A message that starts inside a tail reuses the connected state (no
// promotion from idle; a stage may have its own, e.g. 3G FACH -> DCH) and
// restarts the tail when it ends. Active power is base_w + slope * Mbit/s of
// the message's rate (Huang et al., MobiSys 2012). Idle power is not charged:
// an idle radio costs the same with or without the federated job.
//
// Timing rule (server/energy.h applies it): a message of b > 0 bytes at rate
// bps takes promotion delay + 8 b / bps + latency; the radio is active for
// 8 b / bps (latency costs no radio energy, as in the linear rule); the tail
// starts when the message is complete.
//
// Every parameter is a key of the `radio:` map with the published default
// (README, "Radio models", lists them with their sources).
#pragma once

#include <memory>
#include <string>

#include "core/base/config.h"
#include "core/base/registry.h"
#include "server/link_model.h"

namespace fedsim {

enum class Direction { kUp, kDown };

// A promotion to the connected state: its delay and the energy spent in it.
struct Promotion {
  double delay_s = 0.0;
  double energy_j = 0.0;
};

// Contract: immutable after construction; every method is const, thread-safe
// and deterministic. Offsets are seconds since the end of the radio's last
// message (the start of its tail).
class RadioModel {
 public:
  virtual ~RadioModel() = default;
  virtual const std::string& name() const = 0;
  // Energy to move `bits` at `bps` in direction `d` once connected (no
  // promotion, no tail). `link` carries the linear model's J/bit.
  virtual double transfer_energy_j(double bits, double bps, Direction d, const Link& link) const = 0;
  // The promotion a message pays when it starts `since_last_s` after the
  // last message ended (+infinity: the radio has been idle all along).
  virtual Promotion promotion(double since_last_s) const = 0;
  // Length of the whole tail (0: no tail; the radio drops to idle at once).
  virtual double tail_s() const = 0;
  // Energy of the tail between offsets from_s <= to_s, both clamped to [0, tail_s()].
  virtual double tail_energy_j(double from_s, double to_s) const = 0;
};

// Factories read the model's own keys from the `radio:` map (InputError with
// file:line: key on a bad value; unknown keys are left for finish()).
using RadioModelRegistry = Registry<RadioModel, const Config&>;

// The radio a `link:` map names under `radio:` (`{model: NAME, keys...}`);
// `linear` when there is no `radio:` key.
std::unique_ptr<RadioModel> make_radio_model(const Config& link);

}  // namespace fedsim
