// Everything a run keeps per registered client, listed in one place: memory
// bounds, checkpoints and the placement of clients on MPI ranks all start
// from this list. Sizes are for x86-64 (tests/server/client_state_test.cc
// checks the fixed ones against sizeof, so this table cannot drift).
//
// | owner (file)                          | what                                              | bytes per client            |
// |---------------------------------------|---------------------------------------------------|-----------------------------|
// | Population (server/population.h)      | ClientTraits: class, profile, precision, DVFS      | 192                         |
// |                                       |   choice, drawn link, radio, faults, device row,  |                             |
// |                                       |   battery, availability, phase, charging schedule |                             |
// |                                       |   and phase, drop-out, data weight, attack        |                             |
// | EnergyLedger (server/energy.h)        | ClientEnergy: energy by component, grid part,      | 72                          |
// |                                       |   rounds, exhausted round                         |                             |
// |                                       | RadioState: end of the last message, tail charged | 16, only when some class's  |
// |                                       |   up to (server/radio_model.h)                    |   radio has a tail, else 0  |
// | Server (this file)                    | ClientState: busy until, in flight                | 16                          |
// | SimClient (clients/client.h)          | id, precision, data view, attack                  | 40 + 4 per local sample     |
// | ClientMemory (clients/client.h)       | client_optimizer state (momentum: 4 dim, adagrad: | 0 until first used          |
// |                                       |   4 dim (+8 dim rda), adam: 8 dim, amsgrad 12 dim)|                             |
// |                                       |   and, with chb_censoring, the last model, 4 dim  |                             |
// | CodecLink (core/wire/codec_link.h)    | spec pointer, id, both uplink ends (created on    | 32 + stage state            |
// |                                       |   first use)                                      |                             |
// | stage state, per end, once created    | error_feedback: residual, 4 dim                   |                             |
// |                                       | censoring, chb_censoring: last sent vector, 4 dim |                             |
// |                                       | predictive_coding: history, 4 dim per kept step   |                             |
// |                                       | hadamard_rotation, quantizers, zstd: none beyond  |                             |
// |                                       |   scratch buffers                                 |                             |
// | BroadcastLink (one for all clients)   | server and client references, 4 dim each          | 0 (shared)                  |
//
// Everything else (model, data, aggregator state, the event queue and the
// policy's tables of flights, the trace of arrivals) is per run or per
// message, not per client; the trace
// (Simulation::trace) grows by one ArrivalRecord per client round.
#pragma once

namespace fedsim {

// The server's own bookkeeping of one client.
struct ClientState {
  double busy_until_s = 0.0;  // when its last update arrives; not sampled before (sync policies)
  bool in_flight = false;     // dispatched and its update not yet arrived (FedBuff)
};

}  // namespace fedsim
