// Everything a run keeps per registered client, listed in one place: memory
// bounds, checkpoints and the placement of clients on MPI ranks all start
// from this list. Sizes are for x86-64 (tests/server/client_state_test.cc
// checks the fixed ones against sizeof, so this table cannot drift).
//
// Idle clients (never sampled so far) hold nothing (issue 11): 0 bytes per
// idle registered client with a procedural data source, 24 bytes (an empty
// IndexView) + 4 per local sample with a data set split across clients
// (tests/server/scale_test.cc measures the resident growth of 10^6 clients
// against the 64-byte bound).
//
// | owner (file)                          | what                                              | bytes per client            |
// |---------------------------------------|---------------------------------------------------|-----------------------------|
// | Population (server/population.h)      | nothing: ClientTraits (192 bytes: class, profile, | 0 (4 per attacker: the      |
// |                                       |   precision, DVFS choice, link, radio, faults,    |   sorted attacker ids)      |
// |                                       |   device row, battery, availability and phase,    |                             |
// |                                       |   charging and phase, drop-out, data weight,      |                             |
// |                                       |   attack) derived on demand by client(id)         |                             |
// | Server::views_ (server/server.h)      | partition share (data sets split across clients;  | 24 + 4 per local sample;    |
// |                                       |   none with a procedural source, whose samples    |   0 with procedural data    |
// |                                       |   are generated per round from (seed, client))    |                             |
// |---------------------------------------|---------------------------------------------------|-----------------------------|
// | only once a client has taken part (its first dispatch), in maps by client id that a checkpoint can enumerate: |
// | Server::participants_ (server.h)      | Participant: ClientState (busy until, in flight), | 192 + 48 map node           |
// |                                       |   CodecLink, ClientMemory                         |   + stage state             |
// | EnergyLedger::totals_ (energy.h)      | ClientEnergy: energy by component, grid part,      | 72 + 40 map node            |
// |                                       |   rounds, exhausted round (first charge)          |                             |
// | EnergyLedger::radio_ (energy.h)       | RadioState: end of the last message, tail charged | 16 + 40 map node, only      |
// |                                       |   up to (server/radio_model.h)                    |   when some class's radio   |
// |                                       |                                                   |   has a tail                |
// | SimClient (clients/client.h)          | id, precision, data view, attack: built per round | 0 between rounds            |
// |                                       |   on the worker thread (server.cc client_job)     |                             |
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
// Bound per participating client, stage state excluded: sizeof(Participant)
// + sizeof(ClientEnergy) + sizeof(RadioState) in three std::map nodes (32
// bytes of colour and links each, and the key padded to the value's
// alignment) = 408 bytes, under 500 with the allocator's headers
// (client_state_test checks it). Stage state
// (and scratch: a qsgd link, both ends, measured 17 KB of block buffers) comes on top. The run summary
// reports how many clients took part (RunSummary::clients_participated).
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
