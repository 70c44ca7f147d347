// Network faults (server/network_faults.h): packet loss with retransmission
// and bandwidth traces, alone and through the ledger and a whole run. Each
// expectation is worked out by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "server/energy.h"
#include "server/network_faults.h"
#include "server/population.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

// 1 Mbit/s on [0, 1), an outage on [1, 2), period 2 s.
std::shared_ptr<const BandwidthTrace> on_off() { return BandwidthTrace::from_rows({{0, 1e6}, {1, 0}, {2, 1e6}}, "t"); }

TEST(BandwidthTrace, TransferWaitsOutAnOutageByHand) {
  const auto trace = on_off();
  EXPECT_EQ(trace->period_s(), 2.0);
  EXPECT_EQ(trace->rate_at(0.5), 1e6);
  EXPECT_EQ(trace->rate_at(1.5), 0.0);
  EXPECT_EQ(trace->rate_at(2.5), 1e6);  // looped
  // 1.5 Mbit from t = 0.5: 0.5 Mbit by t = 1, the outage to t = 2, 1 Mbit by t = 3: 2.5 s.
  EXPECT_DOUBLE_EQ(trace->transfer_s(0.5, 1.5e6, 0.0), 2.5);
  // Started in the outage (t = 1.25): waits 0.75 s, then 0.25 Mbit takes 0.25 s.
  EXPECT_DOUBLE_EQ(trace->transfer_s(1.25, 0.25e6, 0.0), 1.0);
  // 10.5 Mbit from t = 0: 10 whole periods (20 s) and 0.5 s more.
  EXPECT_DOUBLE_EQ(trace->transfer_s(0.0, 10.5e6, 0.0), 20.5);
  // Capped at 0.5 Mbit/s: 1 Mbit from t = 0 takes 1 s at 0.5, the outage, then 1 s more: 3 s.
  EXPECT_DOUBLE_EQ(trace->transfer_s(0.0, 1e6, 0.5e6), 3.0);
  EXPECT_EQ(trace->transfer_s(0.3, 0.0, 0.0), 0.0);
}

TEST(BandwidthTrace, BadTracesAreRefusedWithTheRow) {
  const auto message = [](const std::vector<std::pair<double, double>>& rows) {
    try {
      BandwidthTrace::from_rows(rows, "up.csv");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({{0, 1e6}}), "up.csv: expected at least two rows (time 0 and the period), found 1");
  EXPECT_EQ(message({{0.5, 1e6}, {1, 1e6}}), "up.csv: row 1: expected time 0, found 0.500000");
  EXPECT_EQ(message({{0, 1e6}, {1, 2e6}, {1, 1e6}}),
            "up.csv: row 3: expected a time after the previous row's 1.000000, found 1.000000");
  EXPECT_EQ(message({{0, 1e6}, {1, -1}, {2, 1e6}}), "up.csv: row 2: expected a rate >= 0 bps, found -1.000000");
  EXPECT_EQ(message({{0, 1e6}, {2, 2e6}}),
            "up.csv: row 2: the last row is the period's end, the same instant as time 0: expected its rate "
            "1000000.000000, found 2000000.000000");
  EXPECT_EQ(message({{0, 0}, {2, 0}}),
            "up.csv: expected at least one rate > 0 (a trace that is always out moves nothing)");
}

TEST(BandwidthTrace, FileRowsAreNamedByLine) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_trace_test";
  fs::create_directories(dir);
  const fs::path good = dir / "good.csv";
  std::ofstream(good) << "time_s,bps\n# one second on, one off\n0,1e6\n1,0\n2,1e6\n";
  EXPECT_DOUBLE_EQ(BandwidthTrace::load(good.string(), "k")->transfer_s(0.5, 1.5e6, 0.0), 2.5);
  const fs::path bad = dir / "bad.csv";
  std::ofstream(bad) << "time_s,bps\n0,1e6\n1;0\n";
  try {
    BandwidthTrace::load(bad.string(), "t.yaml:3: uplink_trace");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              bad.string() + " (t.yaml:3: uplink_trace):3: expected a row 'time_s,bps' of two finite numbers, found '1;0'");
  }
  EXPECT_THROW(BandwidthTrace::load((dir / "missing.csv").string(), "k"), InputError);
  fs::remove_all(dir);
}

// The loss draws of one message, replayed: tries per packet until one gets through.
struct Replayed {
  std::uint64_t sent = 0;
  std::uint64_t losses = 0;
  bool lost = false;
};
Replayed replay(std::uint64_t bytes, std::uint64_t packet, double p, std::uint32_t max_tries, Rng rng) {
  Replayed r;
  const std::uint64_t packets = (bytes + packet - 1) / packet;
  for (std::uint64_t i = 0; i < packets && !r.lost; ++i) {
    const std::uint64_t size = i + 1 < packets ? packet : bytes - (packets - 1) * packet;
    for (std::uint32_t t = 1;; ++t) {
      r.sent += size;
      if (!(rng.uniform() < p)) break;
      ++r.losses;
      if (t == max_tries) {
        r.lost = true;
        break;
      }
    }
  }
  return r;
}

TEST(PacketLoss, TimeCountsEverySendAndEveryWait) {
  LinkFaults f;
  f.loss_rate = 0.3;
  f.max_tries = 50;
  f.packet_bytes = 1000;
  f.rto_s = 0.2;
  // 10,500 bytes = 11 packets (the last 500 bytes) at 1 Mbit/s, latency 0.05 s.
  const Replayed r = replay(10'500, 1000, 0.3, 50, Rng(7));
  ASSERT_FALSE(r.lost);
  ASSERT_GT(r.losses, 0u);  // with p = 0.3 over 11 packets and this seed, some sends were lost
  Rng rng(7);
  const FaultyTransfer x = faulty_transfer(f, 10'500, 3.0, 1e6, nullptr, 0.0, 0.0, 0.05, rng);
  EXPECT_FALSE(x.lost);
  EXPECT_EQ(x.bytes_sent, r.sent);
  EXPECT_EQ(x.lost_sends, r.losses);
  EXPECT_DOUBLE_EQ(x.data_s, 8.0 * static_cast<double>(r.sent) / 1e6);
  EXPECT_DOUBLE_EQ(x.time_s, 8.0 * static_cast<double>(r.sent) / 1e6 + 0.2 * static_cast<double>(r.losses) + 0.05);
  // Without loss: exactly the faultless rule, 8 b / bps + latency.
  f.loss_rate = 0.0;
  const FaultyTransfer clean = faulty_transfer(f, 10'500, 3.0, 1e6, nullptr, 0.0, 0.0, 0.05, rng);
  EXPECT_EQ(clean.bytes_sent, 10'500u);
  EXPECT_DOUBLE_EQ(clean.time_s, 0.084 + 0.05);
}

TEST(PacketLoss, GivenUpAfterMaxTriesOfOnePacket) {
  LinkFaults f;
  f.loss_rate = 0.9;
  f.max_tries = 2;
  f.packet_bytes = 100;
  // rto_s unset: 2 x latency = 0.1 s.
  const Replayed r = replay(5'000, 100, 0.9, 2, Rng(3));
  ASSERT_TRUE(r.lost);
  Rng rng(3);
  const FaultyTransfer x = faulty_transfer(f, 5'000, 0.0, 8e5, nullptr, 0.0, 0.0, 0.05, rng);
  EXPECT_TRUE(x.lost);
  EXPECT_EQ(x.bytes_sent, r.sent);
  EXPECT_LT(x.bytes_sent, 2u * 5'000u);
  EXPECT_DOUBLE_EQ(x.time_s, 8.0 * static_cast<double>(r.sent) / 8e5 + 0.1 * static_cast<double>(r.losses) + 0.05);
}

TEST(PacketLoss, OnATraceEachSendMovesAtItsMomentsRate) {
  LinkFaults f;
  f.loss_rate = 0.5;
  f.max_tries = 100;
  f.packet_bytes = 12'500;  // 0.1 Mbit: 0.1 s at 1 Mbit/s
  f.rto_s = 0.0;
  const auto trace = on_off();
  // 10 packets from t = 0 with no waits: 1 Mbit/s for 1 s, then the outage.
  // Every send takes 0.1 s while the link is on; sends number r.sent / 12,500.
  const Replayed r = replay(125'000, 12'500, 0.5, 100, Rng(11));
  Rng rng(11);
  const FaultyTransfer x = faulty_transfer(f, 125'000, 0.0, 1.0, trace.get(), 0.0, 0.0, 0.0, rng);
  const double sends = static_cast<double>(r.sent / 12'500);
  // Whole seconds of on-time each cost one more second of outage.
  const double on_s = 0.1 * sends;
  const double expect = on_s + std::floor(on_s - 1e-9);
  EXPECT_NEAR(x.time_s, expect, 1e-9);
  EXPECT_EQ(x.bytes_sent, r.sent);
}

std::string faulty_class(const std::string& link_extra) {
  return "population:\n  - name: phone\n    fraction: 1.0\n    profile: phone_cpu\n"
         "    link: {uplink_bps: 1e6, downlink_bps: 2e6, latency_s: 0.05, tx_j_per_bit: 1e-7, rx_j_per_bit: 5e-8" +
         link_extra + "}\n";
}

TEST(PacketLoss, LedgerChargesTheResentBitsForOneClient) {
  const Config root = Config::parse_string(faulty_class(", loss_rate: 0.2, packet_bytes: 500, rto_s: 0.3"), "t.yaml");
  Population population(root, 4, 42);
  root.finish();
  EnergyLedger ledger(population);
  RoundWork w;
  w.start_s = 10.0;
  w.bytes_down = 20'000;
  w.bytes_up = 6'000;
  w.round = 5;
  const RoundCost c = ledger.round_cost(2, w);
  // The same draws by hand: Rng::derive(seed, kNetwork, {client, round, direction}).
  const Replayed down = replay(20'000, 500, 0.2, 8, Rng::derive(42, Stream::kNetwork, {2, 5, 0}));
  const Replayed up = replay(6'000, 500, 0.2, 8, Rng::derive(42, Stream::kNetwork, {2, 5, 1}));
  ASSERT_FALSE(down.lost);
  ASSERT_FALSE(up.lost);
  ASSERT_GT(down.losses + up.losses, 0u);
  EXPECT_FALSE(c.lost_down);
  EXPECT_FALSE(c.lost_up);
  EXPECT_DOUBLE_EQ(c.down_s, 8.0 * static_cast<double>(down.sent) / 2e6 + 0.3 * static_cast<double>(down.losses) + 0.05);
  EXPECT_DOUBLE_EQ(c.up_s, 8.0 * static_cast<double>(up.sent) / 1e6 + 0.3 * static_cast<double>(up.losses) + 0.05);
  EXPECT_DOUBLE_EQ(c.energy.rx_j, 8.0 * static_cast<double>(down.sent) * 5e-8);
  EXPECT_DOUBLE_EQ(c.energy.tx_j, 8.0 * static_cast<double>(up.sent) * 1e-7);
  EXPECT_FALSE(ledger.model_lost(2, w));
}

TEST(BandwidthTraceLink, OneUploadOnATraceByHand) {
  const fs::path dir = fs::temp_directory_path() / "fedsim_trace_link_test";
  fs::create_directories(dir);
  std::ofstream(dir / "up.csv") << "time_s,bps\n0,1e6\n1,0\n2,1e6\n";
  const std::string yaml =
      "population:\n  - name: phone\n    fraction: 1.0\n    profile: phone_cpu\n"
      "    link: {uplink_trace: up.csv, downlink_bps: 2e6, latency_s: 0.05, tx_j_per_bit: 1e-7}\n";
  const Config config = Config::parse_string(yaml, (dir / "t.yaml").string());
  Population population(config, 1, 1);
  config.finish();
  EnergyLedger ledger(population);
  RoundWork w;
  w.start_s = 0.25;
  w.bytes_up = 150'000;  // 1.2 Mbit
  const RoundCost c = ledger.round_cost(0, w);
  // Upload from t = 0.25: 0.75 Mbit by t = 1, the outage to t = 2, 0.45 Mbit by 2.45; + 0.05 latency.
  EXPECT_DOUBLE_EQ(c.up_s, 2.2 + 0.05);
  // Energy at 1e-7 J per bit of the 1.2 Mbit sent (per-bit radio: the rate does not matter).
  EXPECT_DOUBLE_EQ(c.energy.tx_j, 1.2e6 * 1e-7);
  fs::remove_all(dir);
}

std::string scenario_error(const std::string& link_extra) {
  try {
    const Config root = Config::parse_string(faulty_class(link_extra), "t.yaml");
    Population population(root, 2, 1);
    root.finish();
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(NetworkFaultsBadInput, EachKeyIsNamed) {
  EXPECT_NE(scenario_error(", loss_rate: 1").find("loss_rate: expected a loss probability in [0, 1)"),
            std::string::npos);
  EXPECT_NE(scenario_error(", loss_rate: -0.1").find("loss_rate"), std::string::npos);
  EXPECT_NE(scenario_error(", max_tries: 3").find("max_tries: expected loss_rate next to it"), std::string::npos);
  EXPECT_NE(scenario_error(", loss_rate: 0.1, max_tries: 0").find("max_tries"), std::string::npos);
  EXPECT_NE(scenario_error(", uplink_trace: up.csv").find("uplink_trace: expected either uplink_bps or uplink_trace"),
            std::string::npos);
  EXPECT_NE(scenario_error(", trace_phase: random").find("trace_phase: expected uplink_trace or downlink_trace"),
            std::string::npos);
  EXPECT_NE(scenario_error(", loss_rate: 0.1, rto: 1").find("rto"), std::string::npos);  // unknown key
  EXPECT_EQ(scenario_error(", loss_rate: 0.1, max_tries: 3, packet_bytes: 100, rto_s: 0"), "no error");
  EXPECT_EQ(scenario_error(", loss_rate: 0, max_tries: 3"), "no error");  // a study's clean baseline
}

const char* kLossy = R"(
seed: 4
rounds: 6
clients: 20
clients_per_round: 10
local_steps: 2
batch_size: 8
learning_rate: 0.05
threads: 2
data: {source: synthetic_classification, train_samples: 400, test_samples: 200, dim: 20, classes: 3}
model: {name: softmax_regression}
output: {progress: false}
population:
  - name: phone
    fraction: 1.0
    profile: phone_cpu
    link: {uplink_bps: 1e6, downlink_bps: 2e6, latency_s: 0.05, loss_rate: 0.3, max_tries: 2, packet_bytes: 100}
)";

TEST(NetworkFaultsRun, LostMessagesAreDropOutsCountedEachRound) {
  const Scenario s = parse_scenario(kLossy, "lossy.yaml");
  Simulation sim(s);
  const RunSummary summary = sim.run();
  std::uint64_t dropped = 0;
  std::uint64_t aggregated = 0;
  for (const RoundMetrics& m : summary.rounds) {
    dropped += m.dropped_network;
    aggregated += m.clients;
    EXPECT_EQ(m.clients + m.dropped_network + m.dropped_offline + m.dropped_deadline + m.rejected, 10u)
        << "round " << m.round;
  }
  // With p = 0.3 and 2 tries a packet is given up with probability 0.09: a
  // message of dozens of packets is usually lost, but not always.
  EXPECT_GT(dropped, 0u);
  EXPECT_GT(aggregated, 0u);
  // Every arrival the server saw was an update whose link did not give it up.
  for (const ArrivalRecord& a : sim.trace()) EXPECT_TRUE(!a.aggregated || !a.cost.lost_up);
}

TEST(NetworkFaultsRun, SameMetricsWithOneOrTwoThreads) {
  Scenario one = parse_scenario(std::string(kLossy) + "", "lossy.yaml");
  one.threads = 1;
  Scenario two = parse_scenario(kLossy, "lossy.yaml");
  const RunSummary a = Simulation(one).run();
  const RunSummary b = Simulation(two).run();
  ASSERT_EQ(a.rounds.size(), b.rounds.size());
  for (std::size_t i = 0; i < a.rounds.size(); ++i) {
    EXPECT_EQ(a.rounds[i].dropped_network, b.rounds[i].dropped_network);
    EXPECT_EQ(a.rounds[i].sim_time_s, b.rounds[i].sim_time_s);
    EXPECT_EQ(a.rounds[i].energy.total_j(), b.rounds[i].energy.total_j());
    EXPECT_EQ(a.rounds[i].test_accuracy, b.rounds[i].test_accuracy) << i;
  }
}

}  // namespace
}  // namespace fedsim
