// Checkpoints of a run (`fedsim run --checkpoint-every K`, `--resume DIR`).
//
// A checkpoint is the whole state of a Simulation between two events, right
// after a round closed: the model and its version, the virtual clock with
// its pending events, the round policy's tables (flights in the air with
// their update bytes, open rounds, FedBuff's buffer), every client's server
// bookkeeping, codec link ends (stage memory on both ends), optimizer state,
// the downlink's references, the aggregator's state, the energy ledger, the
// trace of arrivals and the metrics of every round so far. Everything else
// (data, partition, population, profiles, links) is rebuilt from the
// scenario and seed, and every random draw comes from counter-based streams
// (core/base/rng.h) keyed by (seed, purpose, client, round), so there are no
// generator positions to save. A resumed run therefore continues bit for
// bit: its metrics files are byte-identical to an uninterrupted run's.
//
// File (little-endian):
//   "FEDSIMCK"             8 bytes
//   format version         u32 (kCheckpointVersion)
//   scenario fingerprint   u64 (scenario_fingerprint)
//   round                  u64 (rounds closed when it was written)
//   state length           u64
//   state                  (Simulation::save)
//   CRC-32C                u32 of everything before it
// Written atomically: DIR/checkpoint.tmp, fsync, rename to
// DIR/checkpoint.bin, fsync of DIR. A crash leaves the previous checkpoint
// or the new one, never a mix.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/state_io.h"
#include "core/wire/codec_link.h"
#include "server/metrics.h"
#include "server/scenario.h"
#include "server/server.h"

namespace fedsim {

constexpr std::uint32_t kCheckpointVersion = 2;  // 2: a participant's decoder end before its client side

// Hash of the scenario as parsed (every key after --set overrides), except
// the keys that do not change its numbers: threads and output.
std::uint64_t scenario_fingerprint(const Scenario& scenario);

// CRC-32C (Castagnoli) of `bytes`.
std::uint32_t crc32c(std::string_view bytes);

// The checkpoint file in an output folder.
std::string checkpoint_path(const std::string& dir);

// Writes atomically (see above). Throws InputError when the folder cannot be written.
void write_checkpoint(const std::string& dir, std::uint64_t fingerprint, std::uint64_t round, std::string_view state);

struct LoadedCheckpoint {
  std::uint64_t round = 0;
  std::string state;
};

// Reads DIR/checkpoint.bin and checks it before anything is restored.
// Throws InputError naming the file and the fault, each with its own
// message: missing, truncated, not a fedsim checkpoint, another format
// version, checksum mismatch (corrupt), written for another scenario.
LoadedCheckpoint read_checkpoint(const std::string& dir, std::uint64_t fingerprint);
// The same checks on a checkpoint file's bytes (`path` names it in errors).
LoadedCheckpoint parse_checkpoint(const std::string& file, std::uint64_t fingerprint, const std::string& path);

// State codecs of the structs several components keep (sizes are checked at
// compile time in checkpoint.cc, so a new field cannot be forgotten).
void save_state(StateWriter& out, const EnergyBreakdown& e);
void restore_state(StateReader& in, EnergyBreakdown& e);
void save_state(StateWriter& out, const RoundCost& c);
void restore_state(StateReader& in, RoundCost& c);
void save_state(StateWriter& out, const RoundMetrics& m);
void restore_state(StateReader& in, RoundMetrics& m);
void save_state(StateWriter& out, const Flight& f);
void restore_state(StateReader& in, Flight& f);
void save_state(StateWriter& out, const ReceivedUpdate& u);
void restore_state(StateReader& in, ReceivedUpdate& u, std::size_t dim);
void save_state(StateWriter& out, const ArrivalRecord& a);
void restore_state(StateReader& in, ArrivalRecord& a);

}  // namespace fedsim
