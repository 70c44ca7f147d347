// Radio state machines (server/radio_model.h) and DVFS levels
// (clients/device_profile.h), through the ledger that charges them
// (server/energy.h). Every expectation is computed by hand in the comments
// from the parameter tables (ARO's lte.conf, imap.conf, WiFi.conf; the Pixel
// 4 XL figures of the issue).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/base/config.h"
#include "core/base/errors.h"
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/energy.h"
#include "server/metrics.h"
#include "server/population.h"
#include "server/radio_model.h"
#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

constexpr double kTol = 1e-12;
// 0.3 Mbit (a QSGD update of the issue's example) at 5 Mbit/s: 0.06 s.
constexpr std::uint64_t kUpdateBytes = 37'500;

std::string one_class(const std::string& radio, const std::string& extra = "") {
  return "population:\n  - name: phone\n    fraction: 1.0\n    profile: phone_cpu\n" + extra +
         "    link: {uplink_bps: 5e6, downlink_bps: 2e7, latency_s: 0, radio: " + radio + "}\n";
}

struct Fixture {
  Config root;
  Population population;
  EnergyLedger ledger;
  explicit Fixture(const std::string& yaml)
      : root(Config::parse_string(yaml, "t.yaml")), population(root, 1, 1), ledger(population) {
    root.finish();
  }
  // An upload of kUpdateBytes at time t (nothing down, no compute), charged to `round`.
  RoundCost upload(double t, std::uint32_t round) {
    RoundWork w;
    w.start_s = t;
    w.bytes_up = kUpdateBytes;
    const RoundCost c = ledger.round_cost(0, w);
    ledger.charge(0, round, c, 0.0);
    return c;
  }
};

// LTE tail (ARO): inactivity 0.1 s at the 1.2 W baseline, short DRX 0.02 s at
// (0.002 * 1.68 + 0.018 * 1.06) / 0.02 = 1.122 W, long DRX 10 s at
// (0.002 * 1.68 + 0.038 * 1.06) / 0.04 = 1.091 W.
constexpr double kLteTailJ = 0.1 * 1.2 + 0.02 * 1.122 + 10.0 * 1.091;  // 11.05244 J over 10.12 s
// Tail energy of the first x >= 0.12 s.
double lte_tail_j(double x) { return 0.1 * 1.2 + 0.02 * 1.122 + (x - 0.12) * 1.091; }
// Active: 1.2 W + 438.39 mW per Mbit/s at 5 Mbit/s = 3.39195 W for 0.06 s.
constexpr double kLteUploadJ = (1.2 + 0.43839 * 5.0) * 0.06;  // 0.203517 J
constexpr double kLtePromotionJ = 0.26 * 1.21;                // 0.3146 J

TEST(Radio, LteUploadPaysPromotionTransferAndTail) {
  Fixture f(one_class("{model: lte}"));
  const RoundCost c = f.upload(0.0, 1);
  EXPECT_NEAR(c.up_s, 0.26 + 0.06, kTol);  // promotion delay + 8 * 37500 / 5e6
  EXPECT_NEAR(c.energy.promotion_j, kLtePromotionJ, kTol);
  EXPECT_NEAR(c.energy.tx_j, kLteUploadJ, kTol);
  EXPECT_EQ(c.energy.tail_j, 0.0);  // the tail is spent after the message
  // Round 1 closes 5 s after the upload ended (t = 5.32): that much tail is
  // charged to it, the remaining 5.12 s to round 2.
  f.ledger.charge_tails(1, 5.32);
  const RoundEnergy r1 = f.ledger.take_round();
  EXPECT_NEAR(r1.energy.tail_j, lte_tail_j(5.0), 1e-9);  // 0.14244 + 4.88 * 1.091 = 5.46652 J
  EXPECT_NEAR(r1.energy.tail_j, 5.46652, 1e-9);
  EXPECT_NEAR(r1.total_j(), kLtePromotionJ + kLteUploadJ + 5.46652, 1e-9);
  f.ledger.charge_tails(2, 100.0);
  f.ledger.charge_tails(3, 200.0);  // the tail is over: nothing more
  EXPECT_NEAR(f.ledger.take_round().energy.tail_j, kLteTailJ - 5.46652, 1e-9);  // 5.58592 J
  EXPECT_NEAR(f.ledger.client(0).energy.tail_j, 11.05244, 1e-9);
}

TEST(Radio, LteSecondUploadInsideTheTailReusesTheConnectionAndRestartsTheTail) {
  Fixture f(one_class("{model: lte}"));
  const RoundCost first = f.upload(0.0, 1);
  // The second starts 3 s after the first ended (t = 3.32): in long DRX, no promotion.
  const RoundCost second = f.upload(0.32 + 3.0, 2);
  EXPECT_NEAR(second.up_s, 0.06, kTol);
  EXPECT_EQ(second.energy.promotion_j, 0.0);
  EXPECT_NEAR(second.energy.tx_j, kLteUploadJ, kTol);
  // The first tail, cut at 3 s: 0.12 + 0.02244 + 2.88 * 1.091 = 3.28452 J.
  EXPECT_NEAR(second.energy.tail_j, 3.28452, 1e-9);
  f.ledger.charge_tails(2, 1000.0);  // the restarted tail runs out in full
  const ClientEnergy& e = f.ledger.client(0);
  EXPECT_NEAR(e.energy.promotion_j, 0.3146, 1e-12);  // one promotion
  EXPECT_NEAR(e.energy.tx_j, 2 * 0.203517, 1e-12);
  EXPECT_NEAR(e.energy.tail_j, 3.28452 + 11.05244, 1e-9);
  EXPECT_NEAR(first.up_s + second.up_s, 0.38, kTol);
}

TEST(Radio, Umts3gUploadCrossesDchTailAndFach) {
  Fixture f(one_class("{model: umts_3g}"));
  // From idle: IDLE -> DCH promotion 2.0 s at 0.51 W; DCH at a flat 1.02 W.
  const RoundCost first = f.upload(0.0, 1);
  EXPECT_NEAR(first.up_s, 2.0 + 0.06, kTol);
  EXPECT_NEAR(first.energy.promotion_j, 1.02, kTol);  // 2.0 * 0.51
  EXPECT_NEAR(first.energy.tx_j, 0.0612, kTol);       // 0.06 * 1.02
  // 6 s after it ended the radio is in FACH (DCH tail 4 s, then FACH): the
  // tail so far is 4 * 1.02 + 2 * 0.40 = 4.88 J, and the message pays the
  // FACH -> DCH promotion, 1.5 s at 0.71 W = 1.065 J.
  const RoundCost second = f.upload(2.06 + 6.0, 2);
  EXPECT_NEAR(second.energy.tail_j, 4.88, 1e-12);
  EXPECT_NEAR(second.energy.promotion_j, 1.065, 1e-12);
  EXPECT_NEAR(second.up_s, 1.5 + 0.06, kTol);
  // Its own full tail: DCH 4 s at 1.02 W + FACH 10 s at 0.40 W = 8.08 J.
  f.ledger.charge_tails(2, 1000.0);
  EXPECT_NEAR(f.ledger.client(0).energy.tail_j, 4.88 + 8.08, 1e-9);
}

TEST(Radio, WifiUploadHasNoPromotionAndAQuarterSecondTail) {
  Fixture f(one_class("{model: wifi}"));
  const RoundCost c = f.upload(0.0, 1);
  EXPECT_NEAR(c.up_s, 0.06, kTol);
  EXPECT_EQ(c.energy.promotion_j, 0.0);
  EXPECT_NEAR(c.energy.tx_j, 0.06 * 0.403, kTol);  // 0.02418 J
  f.ledger.charge_tails(1, 10.0);
  EXPECT_NEAR(f.ledger.client(0).energy.tail_j, 0.25 * 0.403, kTol);  // 0.10075 J
}

TEST(Radio, DownloadTailRunsDuringComputeAndTheUploadReusesIt) {
  // LTE; 1 Mbit down at 20 Mbit/s = 0.05 s after a 0.26 s promotion; compute
  // 1e9 MACs on phone_cpu fp32 (1.5e10 MAC/s) = 1/15 s, inside the tail (in
  // its first 0.1 s, at the 1.2 W baseline), so the upload pays no promotion
  // and the tail during compute, 1.2 / 15 = 0.08 J, is charged with the round.
  Fixture f(one_class("{model: lte}"));
  RoundWork w;
  w.bytes_down = 125'000;
  w.macs = 1e9;
  w.bytes_up = kUpdateBytes;
  const RoundCost c = f.ledger.round_cost(0, w);
  EXPECT_NEAR(c.down_s, 0.26 + 0.05, kTol);
  EXPECT_NEAR(c.energy.rx_j, (1.2 + 0.05197 * 20.0) * 0.05, kTol);  // 2.2394 W for 0.05 s
  EXPECT_NEAR(c.energy.promotion_j, 0.3146, kTol);                   // the download's only
  EXPECT_NEAR(c.energy.tail_j, 1.2 / 15.0, 1e-12);
  EXPECT_NEAR(c.up_s, 0.06, kTol);
}

TEST(Radio, LinearIsTheDefaultAndHasNoTail) {
  Fixture f("population:\n  - {name: a, fraction: 1.0, link: {uplink_bps: 5e6, tx_j_per_bit: 1e-7}}\n");
  EXPECT_EQ(f.population.client(0).radio->name(), "linear");
  const RoundCost c = f.upload(0.0, 1);
  EXPECT_EQ(c.up_s, 8.0 * kUpdateBytes / 5e6 + 0.05);  // the default latency
  EXPECT_EQ(c.energy.tx_j, 8.0 * kUpdateBytes * 1e-7);
  f.ledger.charge_tails(1, 100.0);
  EXPECT_EQ(f.ledger.client(0).energy.tail_j, 0.0);
  EXPECT_EQ(f.ledger.client(0).energy.promotion_j, 0.0);
}

TEST(Radio, EveryParameterCanBeOverridden) {
  Fixture f(one_class("{model: lte, promotion_s: 1.0, promotion_w: 2.0, long_drx_s: 0, tail_w: 1.0, drx_ping_w: 1.0}"));
  const RoundCost c = f.upload(0.0, 1);
  EXPECT_NEAR(c.energy.promotion_j, 2.0, kTol);
  EXPECT_NEAR(c.up_s, 1.06, kTol);
  EXPECT_NEAR(f.population.client(0).radio->tail_s(), 0.12, kTol);
  f.ledger.charge_tails(1, 100.0);
  EXPECT_NEAR(f.ledger.client(0).energy.tail_j, 0.1 * 1.2 + 0.02 * 1.0, kTol);
}

std::string error_of(const std::string& yaml) {
  try {
    Fixture f(yaml);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Radio, BadKeysAreInputErrorsWithLineAndKey) {
  EXPECT_NE(error_of(one_class("{model: lte, tail_w: -1}")).find("t.yaml:5: population[0].link.radio.tail_w"),
            std::string::npos)
      << error_of(one_class("{model: lte, tail_w: -1}"));
  EXPECT_NE(error_of(one_class("{model: lte, tial_w: 1}")).find("tial_w"), std::string::npos);
  EXPECT_NE(error_of(one_class("{model: lter}")).find("lter"), std::string::npos);
  EXPECT_NE(error_of(one_class("lte")).find("radio"), std::string::npos);
  // 5G: only the uplink fit is built in.
  EXPECT_NE(error_of(one_class("{model: nr_mmwave}")).find("down_w_per_mbps"), std::string::npos);
  Fixture nr(one_class("{model: nr_mmwave, down_w_per_mbps: 0, tail_s: 0, tail_w: 0, promotion_s: 0, promotion_w: 0}"));
  EXPECT_NEAR(nr.upload(0.0, 1).energy.tx_j, (5.62 + 0.00942 * 5.0) * 0.06, kTol);
}

// ---------------------------------------------------------------------------
// DVFS

// Alpha model (GenQSGD): E = 2e-28 * cycles * f^2, T = cycles / f; 1 cycle per MAC.
const char* kAlphaClass = R"(profiles:
  dvfs_cpu: {dvfs: {cycles_per_mac: {fp32: 1}, alpha: 2e-28, frequencies_hz: [5e8, 1e9, 2e9]}}
population:
  - name: a
    fraction: 1.0
    profile: dvfs_cpu
    frequency: energy_aware
    link: {uplink_bps: 1e6, downlink_bps: 1e7, latency_s: 0, tx_j_per_bit: 0, rx_j_per_bit: 0}
)";

// 1 Mbit down (0.1 s), 1e9 cycles, 1 Mbit up (1 s).
RoundCost dvfs_round(Fixture& f, double deadline_s) {
  RoundWork w;
  w.bytes_down = 125'000;
  w.macs = 1e9;
  w.bytes_up = 125'000;
  w.deadline_s = deadline_s;
  return f.ledger.round_cost(0, w);
}

TEST(Dvfs, EnergyAwarePicksTheCheapestLevelThatMeetsTheDeadline) {
  Fixture f(kAlphaClass);
  // Round times 0.1 + {2, 1, 0.5} + 1 = {3.1, 2.1, 1.6} s; compute energies
  // 2e-28 * 1e9 * f^2 = {0.05, 0.2, 0.8} J.
  const RoundCost roomy = dvfs_round(f, 10.0);
  EXPECT_EQ(roomy.level, 0u);
  EXPECT_NEAR(roomy.compute_s, 2.0, kTol);
  EXPECT_NEAR(roomy.energy.compute_j, 0.05, 1e-15);
  const RoundCost tight = dvfs_round(f, 2.5);  // 500 MHz misses it (3.1 s), 1 GHz makes it
  EXPECT_EQ(tight.level, 1u);
  EXPECT_NEAR(tight.busy_s(), 2.1, kTol);
  EXPECT_NEAR(tight.energy.compute_j, 0.2, 1e-15);
  const RoundCost hopeless = dvfs_round(f, 1.0);  // nobody makes 1 s: the highest level
  EXPECT_EQ(hopeless.level, 2u);
  EXPECT_NEAR(hopeless.energy.compute_j, 0.8, 1e-15);
}

TEST(Dvfs, Pixel4XlLevelsFromThePowerProfile) {
  // 300 MHz at 39.44 mA and 2842 MHz at 223.89 mA, at 3.7 V; 0.64 cycles per fp32 MAC.
  Fixture pixel(
      "population:\n  - {name: p, fraction: 1.0, profile: pixel4xl_cpu, frequency: energy_aware,\n"
      "     link: {uplink_bps: 1e6, downlink_bps: 1e7, latency_s: 0, tx_j_per_bit: 0, rx_j_per_bit: 0}}\n");
  const DeviceProfile& p = *pixel.population.client(0).profile;
  ASSERT_EQ(p.num_levels(), 2u);
  EXPECT_EQ(p.level_hz(0), 300e6);
  EXPECT_EQ(p.level_hz(1), 2842e6);
  // 1e9 MACs = 6.4e8 cycles: 300 MHz takes 2.1333 s for 6.4e8 * 0.14593 W / 3e8 = 0.31131 J;
  // 2842 MHz 0.22519 s for 6.4e8 * 0.82839 W / 2.842e9 = 0.18655 J (less: static
  // power makes the slow level dearer per cycle).
  EXPECT_NEAR(p.compute_energy_j(1e9, Precision::kFp32, 0), 6.4e8 * 0.03944 * 3.7 / 3e8, 1e-12);
  EXPECT_NEAR(p.compute_energy_j(1e9, Precision::kFp32, 1), 6.4e8 * 0.22389 * 3.7 / 2.842e9, 1e-12);
  const RoundCost c = dvfs_round(pixel, 5.0);  // both levels make 5 s: the cheaper, 2842 MHz
  EXPECT_EQ(c.level, 1u);
  EXPECT_NEAR(c.compute_s, 6.4e8 / 2.842e9, kTol);
}

TEST(Dvfs, FixedFrequencyMustBeALevel) {
  Fixture fixed(std::string(kAlphaClass).replace(std::string(kAlphaClass).find("energy_aware"), 12, "1e9"));
  EXPECT_EQ(dvfs_round(fixed, 0.0).level, 1u);
  const std::string bad = std::string(kAlphaClass).replace(std::string(kAlphaClass).find("energy_aware"), 12, "7e8");
  EXPECT_NE(error_of(bad).find("t.yaml:7: population[0].frequency"), std::string::npos) << error_of(bad);
  // A profile without levels has only max.
  EXPECT_NE(error_of(one_class("{model: linear}", "    frequency: energy_aware\n")).find("no DVFS levels"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// End to end: tails that cross rounds keep runs deterministic; new keys are checked.

const char* kSmallRun =
    "data: {source: synthetic_classification, train_samples: 400, test_samples: 100, dim: 8, classes: 3}\n"
    "model: {name: softmax_regression}\nclients: 12\nclients_per_round: 4\nrounds: 6\nlocal_steps: 2\n"
    "output: {progress: false}\n";

std::string run_metrics(const std::string& yaml, const std::vector<std::string>& overrides, const std::string& tag) {
  const Scenario sc = parse_scenario(yaml, "run.yaml", overrides);
  Simulation sim(sc);
  const std::string dir = (std::filesystem::temp_directory_path() / ("fedsim_radio_" + tag)).string();
  {
    MetricsWriter writer(dir, sim.population().class_names());
    sim.run([&](const RoundMetrics& m) { writer.write(m); });
  }
  std::ifstream in(dir + "/metrics.csv");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(Radio, LteRunsAreIdenticalWithOneAndTwoThreads) {
  const std::string yaml = std::string(kSmallRun) +
                           "population:\n  - {name: phone, fraction: 1, profile: phone_cpu, link: {uplink_bps: 2e6, "
                           "radio: {model: lte}}}\n";
  for (const char* policy : {"server.policy=wait_all", "server={policy: async, buffer_size: 2, concurrency: 4}"}) {
    const std::string one = run_metrics(yaml, {policy, "threads=1"}, "t1");
    const std::string two = run_metrics(yaml, {policy, "threads=2"}, "t2");
    EXPECT_EQ(one, two) << policy;
    EXPECT_NE(one.find("tail_j"), std::string::npos);
  }
}

TEST(Radio, ClientsExhaustedByATailAreCountedAsDroppedForBattery) {
  // 1.5 J batteries: a participation costs about 0.4 J on LTE (one promotion, tiny
  // messages), the tail 1.09 W for seconds after it: most batteries run out in a tail.
  const std::string yaml = std::string(kSmallRun) +
                           "population:\n  - {name: phone, fraction: 1, profile: phone_cpu, battery_j: 1.5, "
                           "link: {uplink_bps: 2e6, radio: {model: lte}}}\n";
  for (const char* policy : {"server.policy=wait_all", "server={policy: async, buffer_size: 2, concurrency: 2}"}) {
    const Scenario sc = parse_scenario(yaml, "run.yaml", {policy, "rounds=12"});
    Simulation sim(sc);
    const RunSummary run = sim.run();
    std::size_t dropped = 0;
    for (const RoundMetrics& m : run.rounds) dropped += m.dropped_battery;
    EXPECT_GT(run.clients_exhausted, 0u) << policy;
    EXPECT_EQ(dropped, run.clients_exhausted) << policy;
  }
}

std::string run_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    const Scenario sc = parse_scenario(yaml, "run.yaml", overrides);
    Simulation sim(sc);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ScenarioKeys, EnergyAwareNeedsADeadlineAndSwitchesAreChecked) {
  const std::string dvfs = std::string(kSmallRun) +
                           "population:\n  - {name: p, fraction: 1, profile: pixel4xl_cpu, frequency: energy_aware}\n";
  EXPECT_NE(run_error(dvfs).find("run.yaml:9: population[0].frequency: expected a server policy with a round deadline"),
            std::string::npos)
      << run_error(dvfs);
  EXPECT_EQ(run_error(dvfs, {"server={policy: deadline, deadline_s: 5}"}), "no error");
  EXPECT_NE(run_error(kSmallRun, {"accounting={message_bits: bits}"}).find("accounting.message_bits"), std::string::npos);
  EXPECT_NE(run_error(kSmallRun, {"server_energy={frequency_hz: 0}"}).find("server_energy.frequency_hz"),
            std::string::npos);
  EXPECT_NE(run_error(kSmallRun, {"server_energy={cycles: 5}"}).find("cycles"), std::string::npos);
}

}  // namespace
}  // namespace fedsim
