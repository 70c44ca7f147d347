// Acceptance tests of heterogeneous clients and the server policies, end to
// end through parse_scenario and Simulation. Every expected time and energy
// is computed here by hand from the documented rules (server/link_model.h,
// clients/device_profile.h, server/energy.h, server/simulation.h): bytes are
// the sizes of the serialized protobuf messages, MACs = macs_per_sample *
// samples processed, a round is down, compute, up in sequence.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/errors.h"
#include "core/models/model.h"
#include "core/data/partition.h"
#include "core/base/rng.h"
#include "server/scenario.h"
#include "server/simulation.h"
#include "wire.pb.h"  // generated from core/wire/wire.proto

namespace fedsim {
namespace {

constexpr double kMicro = 1e-6;  // one microsecond, one microjoule

// Size of the ModelDown of a plain float32 broadcast of `params` floats.
std::uint64_t model_down_bytes(std::uint32_t round, std::uint64_t version, std::size_t params) {
  wire::ModelDown down;
  down.set_round(round);
  down.set_model_version(version);
  down.set_num_params(static_cast<std::uint32_t>(params));
  down.set_payload(std::string(4 * params, 'x'));
  return down.ByteSizeLong();
}

// Size of the UpdateUp of a plain float32 update (train_loss is never 0, so
// its field is always present; a zero client id or version is not).
std::uint64_t update_up_bytes(std::uint32_t client, std::uint32_t round, std::uint64_t base_version,
                              std::uint32_t samples, std::size_t params) {
  wire::UpdateUp up;
  up.set_client_id(client);
  up.set_round(round);
  up.set_base_version(base_version);
  up.set_num_samples(samples);
  up.set_train_loss(1.0f);
  up.set_payload(std::string(4 * params, 'x'));
  return up.ByteSizeLong();
}

// A client's figures, as written in the scenario.
struct HandClient {
  double up_bps, down_bps, latency_s, tx_j_per_bit, rx_j_per_bit;
  double macs_per_s, joules_per_mac, idle_w;
};

// One round of one client by hand (server/energy.h, server/link_model.h).
struct HandRound {
  double down_s, compute_s, up_s, rx_j, compute_j, tx_j;
  double busy_s() const { return down_s + compute_s + up_s; }
  double total_j() const { return rx_j + compute_j + tx_j; }
};

HandRound by_hand(const HandClient& c, std::uint64_t bytes_down, double macs, std::uint64_t bytes_up) {
  HandRound r;
  r.down_s = 8.0 * static_cast<double>(bytes_down) / c.down_bps + c.latency_s;
  r.compute_s = macs / c.macs_per_s;
  r.up_s = 8.0 * static_cast<double>(bytes_up) / c.up_bps + c.latency_s;
  r.rx_j = 8.0 * static_cast<double>(bytes_down) * c.rx_j_per_bit;
  r.compute_j = macs * c.joules_per_mac;
  r.tx_j = 8.0 * static_cast<double>(bytes_up) * c.tx_j_per_bit;
  return r;
}

void expect_cost(const RoundCost& got, const HandRound& want, const std::string& what) {
  EXPECT_NEAR(got.down_s, want.down_s, kMicro) << what;
  EXPECT_NEAR(got.compute_s, want.compute_s, kMicro) << what;
  EXPECT_NEAR(got.up_s, want.up_s, kMicro) << what;
  EXPECT_NEAR(got.energy.rx_j, want.rx_j, kMicro) << what;
  EXPECT_NEAR(got.energy.compute_j, want.compute_j, kMicro) << what;
  EXPECT_NEAR(got.energy.tx_j, want.tx_j, kMicro) << what;
}

// The trace rows of `round`, by client id.
std::map<std::uint32_t, ArrivalRecord> rows_of(const Simulation& sim, std::uint32_t round) {
  std::map<std::uint32_t, ArrivalRecord> out;
  for (const ArrivalRecord& r : sim.trace())
    if (r.round == round) out[r.client] = r;
  return out;
}

std::set<std::uint32_t> aggregated_in(const Simulation& sim, std::uint32_t round) {
  std::set<std::uint32_t> out;
  for (const ArrivalRecord& r : sim.trace())
    if (r.round == round && r.aggregated) out.insert(r.client);
  return out;
}

std::string number17(double x) {
  std::ostringstream s;
  s << std::setprecision(17) << x;
  return s.str();
}

// ---------------------------------------------------------------------------
// 1. Round time and energy of two clients with fixed links and user profiles

// softmax_regression on dim 9, 4 classes: P = 4 * 10 = 40 parameters,
// 2 * 4 * 10 = 80 MACs per sample. iid: 100 samples per client; 3 steps of
// batch 10 = 30 samples = 2400 MACs a round.
const char* kTwoClients = R"(data: {source: synthetic_classification, train_samples: 200, test_samples: 50, dim: 9, classes: 4}
model: {name: softmax_regression}
clients: 2
clients_per_round: 2
rounds: 2
local_steps: 3
batch_size: 10
threads: 2
output: {progress: false}
profiles:
  slow_cpu: {macs_per_s: {fp32: 4000}, joules_per_mac: {fp32: 2e-4}, idle_w: 0.5}
  int_npu: {macs_per_s: {fp32: 4000, int8: 16000}, joules_per_mac: {fp32: 1e-4, int8: 2.5e-5}, idle_w: 0.2}
population:
  - name: phone
    fraction: 0.5
    profile: slow_cpu
    link: {uplink_bps: 2e4, downlink_bps: 8e4, latency_s: 0.05, tx_j_per_bit: 2e-6, rx_j_per_bit: 1e-6}
  - name: npu
    fraction: 0.5
    profile: int_npu
    precision: int8
    link: {uplink_bps: 1e4, downlink_bps: 4e4, latency_s: 0.2, tx_j_per_bit: 3e-6, rx_j_per_bit: 5e-7}
)";

TEST(HeteroRound, TimesAndEnergiesMatchHandComputation) {
  const Scenario sc = parse_scenario(kTwoClients, "two.yaml");
  Simulation sim(sc);
  const RunSummary summary = sim.run();
  ASSERT_EQ(summary.rounds.size(), 2u);
  ASSERT_EQ(sim.num_params(), 40u);

  const HandClient clients[2] = {{2e4, 8e4, 0.05, 2e-6, 1e-6, 4000, 2e-4, 0.5},     // phone, fp32
                                 {1e4, 4e4, 0.2, 3e-6, 5e-7, 16000, 2.5e-5, 0.2}};  // npu, int8
  const double macs = 80.0 * 3 * 10;
  double t0 = 0.0;
  double client_j[2] = {0.0, 0.0};
  for (std::uint32_t round = 1; round <= 2; ++round) {
    const std::string what = "round " + std::to_string(round);
    const std::uint64_t version = round - 1;  // every round aggregates
    const std::uint64_t down = model_down_bytes(round, version, 40);
    HandRound hand[2];
    for (std::uint32_t c = 0; c < 2; ++c)
      hand[c] = by_hand(clients[c], down, macs, update_up_bytes(c, round, version, 100, 40));
    const double round_time = std::max(hand[0].busy_s(), hand[1].busy_s());
    // Whoever finishes first waits online, idle, until the round ends.
    const double idle_j[2] = {(round_time - hand[0].busy_s()) * clients[0].idle_w,
                              (round_time - hand[1].busy_s()) * clients[1].idle_w};

    const auto rows = rows_of(sim, round);
    ASSERT_EQ(rows.size(), 2u) << what;
    for (std::uint32_t c = 0; c < 2; ++c) {
      const ArrivalRecord& r = rows.at(c);
      const std::string who = what + ", client " + std::to_string(c);
      EXPECT_EQ(r.bytes_down, down) << who;
      EXPECT_EQ(r.bytes_up, update_up_bytes(c, round, version, 100, 40)) << who;
      EXPECT_EQ(r.macs, macs) << who;
      EXPECT_TRUE(r.aggregated) << who;
      EXPECT_NEAR(r.start_s, t0, kMicro) << who;
      EXPECT_NEAR(r.arrive_s, t0 + hand[c].busy_s(), kMicro) << who;
      expect_cost(r.cost, hand[c], who);
      client_j[c] += hand[c].total_j() + idle_j[c];
    }

    const RoundMetrics& m = summary.rounds[round - 1];
    EXPECT_NEAR(m.round_time_s, round_time, kMicro) << what;
    EXPECT_NEAR(m.sim_time_s, t0 + round_time, kMicro) << what;
    EXPECT_NEAR(m.energy.compute_j, hand[0].compute_j + hand[1].compute_j, kMicro) << what;
    EXPECT_NEAR(m.energy.tx_j, hand[0].tx_j + hand[1].tx_j, kMicro) << what;
    EXPECT_NEAR(m.energy.rx_j, hand[0].rx_j + hand[1].rx_j, kMicro) << what;
    EXPECT_NEAR(m.energy.idle_j, idle_j[0] + idle_j[1], kMicro) << what;
    EXPECT_NEAR(m.energy.total_j(), hand[0].total_j() + hand[1].total_j() + idle_j[0] + idle_j[1], kMicro) << what;
    ASSERT_EQ(m.class_energy_j.size(), 2u);
    EXPECT_NEAR(m.class_energy_j[0], hand[0].total_j() + idle_j[0], kMicro) << what;
    EXPECT_NEAR(m.class_energy_j[1], hand[1].total_j() + idle_j[1], kMicro) << what;
    EXPECT_EQ(m.bytes_down, 2 * down) << what;
    EXPECT_EQ(m.bytes_up, rows.at(0).bytes_up + rows.at(1).bytes_up) << what;
    EXPECT_EQ(m.clients, 2u) << what;
    t0 += round_time;
  }
  EXPECT_NEAR(summary.sim_time_s, t0, kMicro);
  EXPECT_NEAR(summary.energy_j, client_j[0] + client_j[1], kMicro);
  EXPECT_NEAR(sim.ledger().client(0).total_j(), client_j[0], kMicro);
  EXPECT_NEAR(sim.ledger().client(1).total_j(), client_j[1], kMicro);
  // The construction is not degenerate: both clients idle in some round.
  EXPECT_GT(sim.ledger().client(0).energy.idle_j + sim.ledger().client(1).energy.idle_j, 1e-3);
}

// ---------------------------------------------------------------------------
// 2. Deadline

// Four clients, P = 40, 100 samples each, one step of batch 10 = 800 MACs
// at 1e4 MAC/s = 0.08 s. Fast (0, 1): ~0.31 s a round; slow (2, 3): 0.5 s
// latency each way, ~1.22 s > deadline 1 s.
const char* kDeadline = R"(data: {source: synthetic_classification, train_samples: 400, test_samples: 50, dim: 9, classes: 4}
model: {name: softmax_regression}
clients: 4
clients_per_round: 4
rounds: 3
local_steps: 1
batch_size: 10
threads: 2
output: {progress: false}
server: {policy: deadline, deadline_s: 1.0}
profiles:
  dev: {macs_per_s: {fp32: 1e4}, joules_per_mac: {fp32: 1e-5}, idle_w: 0.1}
population:
  - {name: fast, fraction: 0.5, profile: dev, link: {uplink_bps: 1e5, downlink_bps: 1e5, latency_s: 0.1}}
  - {name: slow, fraction: 0.5, profile: dev, link: {uplink_bps: 2e4, downlink_bps: 2e4, latency_s: 0.5}}
)";

TEST(DeadlinePolicy, DropsExactlyTheClientsThatCannotMakeIt) {
  const Scenario sc = parse_scenario(kDeadline, "deadline.yaml");
  Simulation sim(sc);
  const RunSummary summary = sim.run();
  ASSERT_EQ(summary.rounds.size(), 3u);
  const HandClient fast{1e5, 1e5, 0.1, 1e-7, 5e-8, 1e4, 1e-5, 0.1};
  const HandClient slow{2e4, 2e4, 0.5, 1e-7, 5e-8, 1e4, 1e-5, 0.1};
  const double deadline = 1.0, macs = 800.0;
  auto busy = [&](std::uint32_t c, std::uint32_t round, std::uint64_t version) {
    return by_hand(c < 2 ? fast : slow, model_down_bytes(round, version, 40), macs,
                   update_up_bytes(c, round, version, 100, 40));
  };

  // Round 1 (t0 = 0): all four sampled; the slow ones are late.
  const HandRound f0 = busy(0, 1, 0), f1 = busy(1, 1, 0), s2 = busy(2, 1, 0), s3 = busy(3, 1, 0);
  ASSERT_LT(std::max(f0.busy_s(), f1.busy_s()), deadline);
  ASSERT_GT(std::min(s2.busy_s(), s3.busy_s()), deadline);
  EXPECT_EQ(rows_of(sim, 1).size(), 4u);
  EXPECT_EQ(aggregated_in(sim, 1), (std::set<std::uint32_t>{0, 1}));
  const RoundMetrics& m1 = summary.rounds[0];
  EXPECT_EQ(m1.dropped_deadline, 2u);
  EXPECT_EQ(m1.clients, 2u);
  EXPECT_NEAR(m1.round_time_s, deadline, kMicro);  // closed at the deadline
  EXPECT_NEAR(m1.sim_time_s, deadline, kMicro);
  EXPECT_NEAR(rows_of(sim, 1).at(2).arrive_s, s2.busy_s(), kMicro);
  // The fast clients wait until the deadline; the late ones are charged in full, no idle.
  EXPECT_NEAR(m1.energy.idle_j, (2 * deadline - f0.busy_s() - f1.busy_s()) * 0.1, kMicro);
  EXPECT_NEAR(m1.energy.total_j() - m1.energy.idle_j, f0.total_j() + f1.total_j() + s2.total_j() + s3.total_j(), kMicro);

  // Round 2 (t0 = 1 s): the slow clients are still sending round 1's update,
  // so only the fast ones are sampled; nobody is late: the round ends at the last arrival.
  const double t2 = deadline;
  ASSERT_GT(s2.busy_s(), t2);
  const HandRound f0b = busy(0, 2, 1), f1b = busy(1, 2, 1);
  const auto rows2 = rows_of(sim, 2);
  EXPECT_EQ(rows2.size(), 2u);
  EXPECT_EQ(aggregated_in(sim, 2), (std::set<std::uint32_t>{0, 1}));
  EXPECT_NEAR(rows2.at(0).start_s, t2, kMicro);
  EXPECT_NEAR(rows2.at(1).arrive_s, t2 + f1b.busy_s(), kMicro);
  const RoundMetrics& m2 = summary.rounds[1];
  EXPECT_EQ(m2.dropped_deadline, 0u);
  EXPECT_EQ(m2.clients, 2u);
  const double round2 = std::max(f0b.busy_s(), f1b.busy_s());
  EXPECT_NEAR(m2.round_time_s, round2, kMicro);
  EXPECT_NEAR(m2.sim_time_s, t2 + round2, kMicro);

  // Round 3: everyone is free again; the slow ones miss the deadline again.
  const double t3 = t2 + round2;
  ASSERT_GE(t3, std::max(s2.busy_s(), s3.busy_s()));
  EXPECT_EQ(rows_of(sim, 3).size(), 4u);
  EXPECT_EQ(aggregated_in(sim, 3), (std::set<std::uint32_t>{0, 1}));
  EXPECT_EQ(summary.rounds[2].dropped_deadline, 2u);
  EXPECT_NEAR(summary.rounds[2].round_time_s, deadline, kMicro);
  EXPECT_NEAR(summary.sim_time_s, t3 + deadline, kMicro);
  // Round times add up to the simulated time.
  double sum = 0.0;
  for (const RoundMetrics& m : summary.rounds) sum += m.round_time_s;
  EXPECT_NEAR(sum, summary.sim_time_s, kMicro);
}

// ---------------------------------------------------------------------------
// 3. Over-selection

// One client per class, told apart by latency: arrival order 2, 0, 3, 1.
const char* kOverSelection = R"(data: {source: synthetic_classification, train_samples: 400, test_samples: 50, dim: 9, classes: 4}
model: {name: softmax_regression}
clients: 4
clients_per_round: 2
rounds: 2
local_steps: 1
batch_size: 10
threads: 2
output: {progress: false}
server: {policy: over_selection, over_selection: 2}
profiles:
  dev: {macs_per_s: {fp32: 1e4}, joules_per_mac: {fp32: 1e-5}, idle_w: 0.1}
population:
  - {name: c0, fraction: 0.25, profile: dev, link: {uplink_bps: 1e5, downlink_bps: 1e5, latency_s: 0.3}}
  - {name: c1, fraction: 0.25, profile: dev, link: {uplink_bps: 1e5, downlink_bps: 1e5, latency_s: 0.9}}
  - {name: c2, fraction: 0.25, profile: dev, link: {uplink_bps: 1e5, downlink_bps: 1e5, latency_s: 0.1}}
  - {name: c3, fraction: 0.25, profile: dev, link: {uplink_bps: 1e5, downlink_bps: 1e5, latency_s: 0.6}}
)";

TEST(OverSelectionPolicy, AggregatesTheFirstRArrivals) {
  const Scenario sc = parse_scenario(kOverSelection, "over.yaml");
  Simulation sim(sc);
  const RunSummary summary = sim.run();
  const double latency[4] = {0.3, 0.9, 0.1, 0.6};
  auto hand = [&](std::uint32_t c, std::uint32_t round, std::uint64_t version) {
    const HandClient h{1e5, 1e5, latency[c], 1e-7, 5e-8, 1e4, 1e-5, 0.1};
    return by_hand(h, model_down_bytes(round, version, 40), 800.0, update_up_bytes(c, round, version, 100, 40));
  };
  // Round 1: ceil(2 * 2) = 4 sampled, i.e. everyone.
  double arrive[4];
  for (std::uint32_t c = 0; c < 4; ++c) arrive[c] = hand(c, 1, 0).busy_s();
  std::vector<std::uint32_t> order = {0, 1, 2, 3};
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return arrive[a] < arrive[b]; });
  ASSERT_EQ(order, (std::vector<std::uint32_t>{2, 0, 3, 1}));
  const auto rows = rows_of(sim, 1);
  ASSERT_EQ(rows.size(), 4u);
  for (std::uint32_t c = 0; c < 4; ++c) EXPECT_NEAR(rows.at(c).arrive_s, arrive[c], kMicro) << c;
  EXPECT_EQ(aggregated_in(sim, 1), (std::set<std::uint32_t>{order[0], order[1]}));
  const RoundMetrics& m1 = summary.rounds[0];
  EXPECT_EQ(m1.clients, 2u);
  EXPECT_EQ(m1.dropped_deadline, 0u);
  const double end1 = arrive[order[1]];  // the round closes at the r-th arrival
  EXPECT_NEAR(m1.round_time_s, end1, kMicro);
  EXPECT_NEAR(m1.sim_time_s, end1, kMicro);
  // Only the first arrival waits; the surplus clients finish after the round closed.
  EXPECT_NEAR(m1.energy.idle_j, (end1 - arrive[order[0]]) * 0.1, kMicro);
  EXPECT_EQ(m1.bytes_down, 4 * model_down_bytes(1, 0, 40));

  // Round 2 starts at end1, while 3 and 1 are still busy with round 1.
  ASSERT_GT(arrive[3], end1);
  const auto rows2 = rows_of(sim, 2);
  ASSERT_EQ(rows2.size(), 2u);
  EXPECT_EQ(aggregated_in(sim, 2), (std::set<std::uint32_t>{0, 2}));
  const double end2 = end1 + std::max(hand(0, 2, 1).busy_s(), hand(2, 2, 1).busy_s());
  EXPECT_NEAR(rows2.at(2).start_s, end1, kMicro);
  EXPECT_NEAR(summary.rounds[1].sim_time_s, end2, kMicro);
}

// ---------------------------------------------------------------------------
// 4. Battery exhaustion

// Client 0 ("battery") is fast and waits for client 1 ("mains") every round
// it plays; its battery is set halfway between its cumulative energy after
// rounds 2 and 3, so it is exhausted in round 3.
std::string battery_yaml(const std::string& battery_j) {
  return R"(data: {source: synthetic_classification, train_samples: 200, test_samples: 50, dim: 9, classes: 4}
model: {name: softmax_regression}
clients: 2
clients_per_round: 2
rounds: 5
local_steps: 2
batch_size: 10
threads: 2
output: {progress: false}
profiles:
  dev: {macs_per_s: {fp32: 1e4}, joules_per_mac: {fp32: 1e-4}, idle_w: 0.4}
population:
  - name: battery
    fraction: 0.5
    profile: dev
    battery_j: )" +
         battery_j + R"(
    link: {uplink_bps: 1e5, downlink_bps: 1e5, latency_s: 0.05, tx_j_per_bit: 1e-6, rx_j_per_bit: 5e-7}
  - name: mains
    fraction: 0.5
    profile: dev
    link: {uplink_bps: 1e4, downlink_bps: 1e4, latency_s: 0.3}
)";
}

TEST(Battery, ExhaustedClientLeavesAtTheRightRound) {
  const HandClient batt{1e5, 1e5, 0.05, 1e-6, 5e-7, 1e4, 1e-4, 0.4};
  const HandClient mains{1e4, 1e4, 0.3, 1e-7, 5e-8, 1e4, 1e-4, 0.4};
  const double macs = 80.0 * 2 * 10;
  // Client 0's energy in rounds 1..3: its cost plus idle until client 1 arrives.
  double cumulative[4] = {0.0, 0.0, 0.0, 0.0};
  for (std::uint32_t round = 1; round <= 3; ++round) {
    const std::uint64_t down = model_down_bytes(round, round - 1, 40);
    const HandRound b = by_hand(batt, down, macs, update_up_bytes(0, round, round - 1, 100, 40));
    const HandRound m = by_hand(mains, down, macs, update_up_bytes(1, round, round - 1, 100, 40));
    ASSERT_GT(m.busy_s(), b.busy_s());
    cumulative[round] = cumulative[round - 1] + b.total_j() + (m.busy_s() - b.busy_s()) * batt.idle_w;
  }
  const double battery_j = 0.5 * (cumulative[2] + cumulative[3]);
  ASSERT_GT(cumulative[3] - cumulative[2], 1e-3);  // far from the edges

  const Scenario sc = parse_scenario(battery_yaml(number17(battery_j)), "battery.yaml");
  Simulation sim(sc);
  const RunSummary summary = sim.run();
  ASSERT_EQ(summary.rounds.size(), 5u);
  for (std::size_t k = 0; k < 5; ++k)
    EXPECT_EQ(summary.rounds[k].dropped_battery, k == 2 ? 1u : 0u) << "round " << k + 1;
  EXPECT_EQ(summary.clients_exhausted, 1u);
  // Its last update is still delivered and used; afterwards it is never sampled.
  EXPECT_EQ(aggregated_in(sim, 3), (std::set<std::uint32_t>{0, 1}));
  for (const ArrivalRecord& r : sim.trace()) {
    if (r.client == 0) {
      EXPECT_LE(r.round, 3u);
    }
  }
  EXPECT_EQ(rows_of(sim, 4).size(), 1u);
  EXPECT_EQ(rows_of(sim, 5).size(), 1u);
  EXPECT_EQ(summary.rounds[4].clients, 1u);

  const ClientEnergy& e = sim.ledger().client(0);
  EXPECT_EQ(e.exhausted_round, 3);
  EXPECT_EQ(e.rounds, 3u);
  EXPECT_NEAR(e.total_j(), cumulative[3], kMicro);
  EXPECT_NEAR(sim.ledger().battery_left_j(0), battery_j - cumulative[3], kMicro);
  EXPECT_EQ(sim.ledger().client(1).exhausted_round, -1);

  const std::string path = ::testing::TempDir() + "/policies_battery_clients.csv";
  sim.ledger().write_client_csv(path);
  std::ifstream in(path);
  std::string header, row0, row1;
  std::getline(in, header);
  std::getline(in, row0);
  std::getline(in, row1);
  // Column 11 (after battery_left_j); later columns (promotion_j, tail_j, grid_j) were appended.
  const auto cell = [](const std::string& line, std::size_t column) {
    std::size_t begin = 0;
    for (std::size_t i = 0; i < column; ++i) begin = line.find(',', begin) + 1;
    return line.substr(begin, line.find(',', begin) - begin);
  };
  EXPECT_EQ(cell(header, 10), "exhausted_round");
  EXPECT_TRUE(row0.starts_with("0,battery,dev,3,")) << row0;
  EXPECT_EQ(cell(row0, 10), "3");
  EXPECT_EQ(cell(row1, 10), "");  // client 1: never exhausted
}

// ---------------------------------------------------------------------------
// 5. Async (FedBuff) staleness weights

// Three clients told apart by latency (round trips of about 1.0, 1.4 and
// 3.2 s), all in flight, an aggregation every 2 arrivals. Full-batch single
// steps, so a client's update is a function of its base model only.
const char* kAsync = R"(data: {source: synthetic_classification, train_samples: 90, test_samples: 30, dim: 4, classes: 3}
model: {name: softmax_regression}
clients: 3
clients_per_round: 3
rounds: 4
local_steps: 1
batch_size: 0
learning_rate: 0.5
server_learning_rate: 0.8
threads: 2
output: {progress: false}
server: {policy: async, buffer_size: 2, concurrency: 3, staleness_exponent: 0.5}
population:
  - {name: a, fraction: 0.333333, link: {latency_s: 0.5}}
  - {name: b, fraction: 0.333333, link: {latency_s: 0.7}}
  - {name: c, fraction: 0.333334, link: {latency_s: 1.6}}
)";

TEST(AsyncPolicy, StalenessWeightsAndBufferSize) {
  const Scenario sc = parse_scenario(kAsync, "async.yaml");
  Simulation sim(sc);
  std::vector<arma::fvec> versions{sim.model_params()};  // model after k aggregations
  const RunSummary summary = sim.run([&](const RoundMetrics&) { versions.push_back(sim.model_params()); });
  ASSERT_EQ(summary.rounds.size(), 4u);
  ASSERT_EQ(versions.size(), 5u);

  // Hand timeline (t in s, v = model version):
  //   0    all three start from v0
  //   1.0  client 0 arrives (v0), restarts from v0
  //   1.4  client 1 arrives (v0) -> aggregation 1 {0: s0, 1: s0}; 1 restarts from v1
  //   2.0  client 0 (v0), restarts from v1
  //   2.8  client 1 (v1)         -> aggregation 2 {0: s1, 1: s0}; 1 restarts from v2
  //   3.0  client 0 (v1), restarts from v2
  //   3.2  client 2 (v0)         -> aggregation 3 {0: s1, 2: s2}
  //   4.0  client 0 (v2)
  //   4.2  client 1 (v2)         -> aggregation 4 {0: s1, 1: s1}
  const std::vector<std::map<std::uint32_t, std::uint64_t>> staleness = {
      {{0, 0}, {1, 0}}, {{0, 1}, {1, 0}}, {{0, 1}, {2, 2}}, {{0, 1}, {1, 1}}};

  // The base version of an update: aggregations done when it was sent.
  std::vector<double> aggregation_time;
  for (const RoundMetrics& m : summary.rounds) aggregation_time.push_back(m.sim_time_s);
  auto base_version = [&](double start_s) {
    return static_cast<std::uint64_t>(std::upper_bound(aggregation_time.begin(), aggregation_time.end(), start_s) -
                                      aggregation_time.begin());
  };

  // The clients' data, split as the simulation does.
  const auto model = ModelRegistry::instance().create("", "softmax_regression", Config(), ModelInput{4, 3});
  Rng partition_rng = Rng::derive(sc.seed, Stream::kPartition);
  const std::vector<IndexView> views = IidPartitioner().split(sim.data().train, 3, partition_rng);
  auto delta = [&](std::uint32_t client, const arma::fvec& base) {
    arma::fvec x = base;
    Rng unused(0);  // full batch: no shuffling
    run_local_sgd(*model, sim.data().train, views[client], sc.training, x, unused);
    return arma::fvec(x - base);
  };

  const double a = 0.5, server_lr = 0.8;
  double weighting_matters = 0.0;
  for (std::uint32_t k = 1; k <= 4; ++k) {
    const std::string what = "aggregation " + std::to_string(k);
    EXPECT_EQ(summary.rounds[k - 1].clients, 2u) << what;  // buffer_size arrivals each
    const auto rows = rows_of(sim, k);
    ASSERT_EQ(rows.size(), 2u) << what;
    std::map<std::uint32_t, std::uint64_t> got_staleness;
    arma::vec weighted(sim.num_params(), arma::fill::zeros), plain(sim.num_params(), arma::fill::zeros);
    double total_w = 0.0, total_n = 0.0;
    double last_arrival = 0.0;
    for (const auto& [client, r] : rows) {
      const std::uint64_t base = base_version(r.start_s);
      got_staleness[client] = (k - 1) - base;
      last_arrival = std::max(last_arrival, r.arrive_s);
      // FedBuff weight (1 + s)^-a, times the sample count (weight_by_samples).
      const double n = static_cast<double>(views[client].size());
      const double w = std::pow(1.0 + static_cast<double>((k - 1) - base), -a) * n;
      const arma::vec d = arma::conv_to<arma::vec>::from(delta(client, versions[base]));
      weighted += w * d;
      plain += n * d;
      total_w += w;
      total_n += n;
    }
    EXPECT_EQ(got_staleness, staleness[k - 1]) << what;
    EXPECT_NEAR(summary.rounds[k - 1].sim_time_s, last_arrival, kMicro) << what;
    const arma::vec expected = arma::conv_to<arma::vec>::from(versions[k - 1]) + server_lr / total_w * weighted;
    const arma::vec unweighted = arma::conv_to<arma::vec>::from(versions[k - 1]) + server_lr / total_n * plain;
    const arma::vec got = arma::conv_to<arma::vec>::from(versions[k]);
    EXPECT_LT(arma::abs(got - expected).max(), 1e-6) << what;
    weighting_matters = std::max(weighting_matters, arma::abs(expected - unweighted).max());
  }
  // The staleness weights changed the model by far more than the tolerance.
  EXPECT_GT(weighting_matters, 1e-3);
}

// ---------------------------------------------------------------------------
// 6. Offline clients and drop-outs

// Clients 0, 1 never online; 2, 3 drop out after receiving the model; 4, 5 reliable.
const char* kOffline = R"(data: {source: synthetic_classification, train_samples: 300, test_samples: 50, dim: 9, classes: 4}
model: {name: softmax_regression}
clients: 6
clients_per_round: 5
rounds: 6
threads: 2
output: {progress: false}
population:
  - {name: off, fraction: 0.333333, availability: {online_probability: 0}}
  - {name: flaky, fraction: 0.333333, dropout_probability: 1, link: {rx_j_per_bit: 1e-6}}
  - {name: on, fraction: 0.333334}
)";

TEST(Availability, OfflineClientsNeverSampledAndDropoutsCounted) {
  const Scenario sc = parse_scenario(kOffline, "offline.yaml");
  Simulation sim(sc);
  const RunSummary summary = sim.run();
  ASSERT_EQ(summary.rounds.size(), 6u);
  for (const ArrivalRecord& r : sim.trace()) EXPECT_GE(r.client, 4u) << "round " << r.round;
  for (std::uint32_t round = 1; round <= 6; ++round) {
    const RoundMetrics& m = summary.rounds[round - 1];
    const std::uint64_t down = model_down_bytes(round, round - 1, 40);
    // 5 wanted, 4 online: 2, 3 (who then drop out) and 4, 5.
    EXPECT_EQ(m.dropped_offline, 2u) << round;
    EXPECT_EQ(m.clients, 2u) << round;
    EXPECT_EQ(m.bytes_down, 4 * down) << round;
    EXPECT_EQ(aggregated_in(sim, round), (std::set<std::uint32_t>{4, 5})) << round;
    // A drop-out paid for receiving the model, nothing else.
    ASSERT_EQ(m.class_energy_j.size(), 3u);
    EXPECT_EQ(m.class_energy_j[0], 0.0) << round;
    EXPECT_NEAR(m.class_energy_j[1], 2 * 8.0 * static_cast<double>(down) * 1e-6, kMicro) << round;
  }
  EXPECT_EQ(sim.ledger().client(0).rounds, 0u);
  EXPECT_EQ(sim.ledger().client(1).rounds, 0u);
  EXPECT_EQ(sim.ledger().client(2).rounds, 6u);
  EXPECT_EQ(sim.ledger().client(2).energy.compute_j + sim.ledger().client(2).energy.tx_j, 0.0);
}

// The async server keeps trying while nobody is online (fresh availability
// draws per dispatch), never dispatches to a client that is never online,
// and stops when no client can ever come back.
TEST(Availability, AsyncServerWaitsForClientsToComeOnline) {
  const std::string yaml = R"(data: {source: synthetic_classification, train_samples: 90, test_samples: 30, dim: 4, classes: 3}
model: {name: softmax_regression}
clients: 3
clients_per_round: 2
rounds: 20
threads: 2
output: {progress: false}
server: {policy: async, buffer_size: 2, concurrency: 2}
population:
  - {name: off, fraction: 0.333333, availability: {online_probability: 0}}
  - {name: rare, fraction: 0.666667, availability: {online_probability: 0.3}}
)";
  for (int seed = 1; seed <= 5; ++seed) {
    const Scenario sc = parse_scenario(yaml, "async_offline.yaml", {"seed=" + std::to_string(seed)});
    Simulation sim(sc);
    const RunSummary s = sim.run();
    EXPECT_EQ(s.rounds.size(), 20u) << seed;
    for (const ArrivalRecord& r : sim.trace()) EXPECT_NE(r.client, 0u) << seed;
  }
  std::string never_yaml = yaml;
  never_yaml.replace(never_yaml.find("online_probability: 0.3"), 23, "online_probability: 0");
  const Scenario never = parse_scenario(never_yaml, "async_offline.yaml");
  Simulation sim(never);
  EXPECT_EQ(sim.run().rounds.size(), 0u);
  EXPECT_TRUE(sim.trace().empty());
}

// ---------------------------------------------------------------------------
// 7. Determinism with 1 and 2 threads

std::string dump(const RunSummary& s, const std::vector<ArrivalRecord>& trace) {
  std::ostringstream o;
  o << std::hexfloat;
  for (const RoundMetrics& m : s.rounds) {
    o << m.round << ' ' << m.sim_time_s << ' ' << m.test_accuracy << ' ' << m.test_loss << ' ' << m.train_loss << ' '
      << m.bytes_up << ' ' << m.bytes_down << ' ' << m.clients << ' ' << m.energy.total_j() << ' ' << m.energy.compute_j << ' '
      << m.energy.tx_j << ' ' << m.energy.rx_j << ' ' << m.energy.idle_j << ' ' << m.dropped_deadline << ' ' << m.dropped_offline << ' '
      << m.dropped_battery << ' ' << m.round_time_s << ' ' << m.uplink_bits_per_coord;
    for (double e : m.class_energy_j) o << ' ' << e;
    o << '\n';
  }
  for (const ArrivalRecord& r : trace)
    o << r.round << ' ' << r.client << ' ' << r.start_s << ' ' << r.arrive_s << ' ' << r.bytes_down << ' '
      << r.bytes_up << ' ' << r.macs << ' ' << r.aggregated << ' ' << r.cost.busy_s() << ' ' << r.cost.total_j()
      << '\n';
  o << s.final_accuracy << ' ' << s.sim_time_s << ' ' << s.energy_j << ' ' << s.clients_exhausted << '\n';
  return o.str();
}

std::string run_with_threads(const std::string& yaml, int threads) {
  const Scenario sc = parse_scenario(yaml, "det.yaml", {"threads=" + std::to_string(threads)});
  Simulation sim(sc);
  const RunSummary s = sim.run();
  std::string out = dump(s, sim.trace());
  for (float x : std::vector<float>(sim.model_params().begin(), sim.model_params().end())) {
    std::ostringstream o;
    o << std::hexfloat << x << ' ';
    out += o.str();
  }
  return out;
}

const char* kHeteroPopulation = R"(data: {source: synthetic_classification, train_samples: 1200, test_samples: 100, dim: 12, classes: 4}
partition: {scheme: dirichlet, alpha: 0.5}
model: {name: softmax_regression}
clients: 30
clients_per_round: 10
rounds: 8
local_steps: 2
batch_size: 8
eval_every: 4
output: {progress: false}
uplink: [error_feedback, {qsgd: {levels: 4, bucket: 16}}]
profiles:
  npu: {macs_per_s: {fp32: 1e5, int8: 4e5}, joules_per_mac: {fp32: 1e-6, int8: 2e-7}, idle_w: 0.05}
population:
  - name: phones
    fraction: 0.5
    profile: npu
    precision: int8
    link: {uplink_bps: {lognormal: {median: 2e5, sigma: 0.8}}, downlink_bps: {uniform: {min: 5e5, max: 2e6}}, latency_s: {uniform: {min: 0.01, max: 0.3}}}
    availability: {online_probability: 0.7}
    dropout_probability: 0.1
    battery_j: 0.05
  - name: edge
    fraction: 0.5
    profile: npu
    link: {uplink_bps: 1e6, latency_s: {lognormal: {median: 0.05, sigma: 0.5}}}
    availability: {period_s: 3, on_fraction: 0.6, phase: random}
)";

TEST(Determinism, HeterogeneousDeadlineRunIndependentOfThreads) {
  const std::string yaml = std::string(kHeteroPopulation) + "server: {policy: deadline, deadline_s: 0.25}\n";
  const std::string one = run_with_threads(yaml, 1);
  EXPECT_EQ(one, run_with_threads(yaml, 2));
  // Not a trivial run: some updates were late.
  const Scenario sc = parse_scenario(yaml, "det.yaml", {"threads=2"});
  Simulation sim(sc);
  const RunSummary s = sim.run();
  std::uint64_t late = 0, aggregated = 0;
  for (const RoundMetrics& m : s.rounds) {
    late += m.dropped_deadline;
    aggregated += m.clients;
  }
  EXPECT_GT(late, 0u);
  EXPECT_GT(aggregated, 0u);
}

TEST(Determinism, AsyncRunIndependentOfThreads) {
  const std::string yaml =
      std::string(kHeteroPopulation) + "server: {policy: async, buffer_size: 3, concurrency: 8}\n";
  EXPECT_EQ(run_with_threads(yaml, 1), run_with_threads(yaml, 2));
}

// ---------------------------------------------------------------------------
// Bad profile and link settings through the full scenario path

const char* kBase = R"(data: {source: synthetic_classification, train_samples: 100, test_samples: 20, dim: 4, classes: 2}
clients: 2
clients_per_round: 2
rounds: 1
output: {progress: false}
profiles:
  mine: {macs_per_s: {fp32: 1e9}, joules_per_mac: {fp32: 1e-9}}
)";

std::string error_of(const std::string& population) {
  try {
    const Scenario sc = parse_scenario(std::string(kBase) + population, "bad.yaml");
    Simulation sim(sc);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(PolicyScenarioErrors, BadProfilesAndLinksNameFileLineAndKey) {
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, profile: mine, link: {downlink_bps: -1e6}}\n"),
            "bad.yaml:9: population[0].link.downlink_bps: expected a finite number > 0, found '-1e6'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, profile: mine, precision: int8}\n"),
            "bad.yaml:9: population[0].precision: expected a precision supported by profile 'mine' (fp32), found "
            "'int8'");
  // The list of known profiles includes the scenario's own.
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, profile: mien}\n"),
            "bad.yaml:9: population[0].profile: expected a device profile (one of: edge_fpga, edge_gpu, mine, "
            "phone_cpu, phone_gpu, pixel4xl_cpu, server_cpu), found 'mien'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, profile: mine}\n"), "no error");
}

}  // namespace
}  // namespace fedsim
