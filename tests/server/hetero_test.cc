// Heterogeneous clients: device profiles, links, population, energy ledger.
// Expectations are computed by hand in the comments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "clients/device_profile.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "core/base/rng.h"
#include "server/energy.h"
#include "server/link_model.h"
#include "server/population.h"

namespace fedsim {
namespace {

constexpr double kMicro = 1e-6;

// Two classes, one client each (n = 2): client 0 "a" fp32, client 1 "b" int8.
const char* kTwoClients = R"(profiles:
  slow: {macs_per_s: {fp32: 2e9, int8: 8e9}, joules_per_mac: {fp32: 1e-9, int8: 3e-10}, idle_w: 0.3}
population:
  - name: a
    fraction: 0.5
    profile: slow
    link: {uplink_bps: 8e6, downlink_bps: 16e6, latency_s: 0.01, tx_j_per_bit: 1e-7, rx_j_per_bit: 5e-8}
    battery_j: 0.25
  - name: b
    fraction: 0.5
    profile: slow
    precision: int8
    link: {uplink_bps: 2e6, downlink_bps: 4e6, latency_s: 0.1, tx_j_per_bit: 2e-7, rx_j_per_bit: 1e-7}
)";

Population make_population(const std::string& yaml, std::size_t n, std::uint64_t seed = 1) {
  const Config root = Config::parse_string(yaml, "t.yaml");
  Population p(root, n, seed);
  root.finish();
  return p;
}

// The InputError text of building the population, or "no error".
std::string error_of(const std::string& yaml, std::size_t n = 10) {
  try {
    make_population(yaml, n);
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

// ---------------------------------------------------------------------------
// Device profiles

TEST(DeviceProfile, PrecisionNamesRoundTrip) {
  for (Precision p : kAllPrecisions) EXPECT_EQ(parse_precision(precision_name(p)), p);
  EXPECT_EQ(parse_precision("fp16"), std::nullopt);
  EXPECT_EQ(precision_bits(Precision::kInt4), 4);
}

TEST(DeviceProfile, UserTableGivesTimeAndEnergyPerMac) {
  const Population pop = make_population(kTwoClients, 2);
  const DeviceProfile& slow = *pop.client(0).profile;
  EXPECT_EQ(slow.name(), "slow");
  EXPECT_TRUE(slow.supports(Precision::kFp32));
  EXPECT_TRUE(slow.supports(Precision::kInt8));
  EXPECT_FALSE(slow.supports(Precision::kInt4));
  EXPECT_DOUBLE_EQ(slow.compute_time_s(1e6, Precision::kFp32), 0.5e-3);  // 1e6 / 2e9
  EXPECT_DOUBLE_EQ(slow.compute_time_s(1e6, Precision::kInt8), 0.125e-3);  // 1e6 / 8e9
  EXPECT_DOUBLE_EQ(slow.compute_energy_j(1e6, Precision::kFp32), 1e-3);
  EXPECT_DOUBLE_EQ(slow.compute_energy_j(1e6, Precision::kInt8), 3e-4);
  EXPECT_DOUBLE_EQ(slow.idle_power_w(), 0.3);
}

TEST(DeviceProfile, BuiltinsRegisteredWithDocumentedPrecisions) {
  const ProfileCatalog catalog;
  EXPECT_EQ(catalog.names(), (std::vector<std::string>{"edge_fpga", "edge_gpu", "phone_cpu", "phone_gpu", "pixel4xl_cpu",
                                                      "server_cpu"}));
  auto supported = [&](const std::string& name) {
    std::string out;
    for (Precision p : kAllPrecisions)
      if (catalog.find(name)->supports(p)) out += std::string(precision_name(p)) + " ";
    return out;
  };
  EXPECT_EQ(supported("phone_cpu"), "fp32 int8 int4 int2 ");
  EXPECT_EQ(supported("phone_gpu"), "fp32 ");
  EXPECT_EQ(supported("edge_gpu"), "fp32 int8 ");
  EXPECT_EQ(supported("edge_fpga"), "int8 int4 int2 ");
  EXPECT_EQ(supported("server_cpu"), "fp32 int8 int4 int2 ");
  EXPECT_EQ(supported("pixel4xl_cpu"), "fp32 int8 int4 int2 ");
  for (const std::string& name : catalog.names()) {
    const DeviceProfile& p = *catalog.find(name);
    EXPECT_GE(p.idle_power_w(), 0.0) << name;
    for (Precision q : kAllPrecisions) {
      if (!p.supports(q)) continue;
      EXPECT_GT(p.compute_time_s(1e9, q), 0.0) << name;
      EXPECT_GT(p.compute_energy_j(1e9, q), 0.0) << name;
    }
  }
}

TEST(DeviceProfile, EdgeFpgaFollowsZipmlSpeedupsOverServerCpuFloat) {
  // ZipML: FPGA 6.5x at 2 bits and 7.2x at 4 bits over float32 on a 10-thread CPU.
  const ProfileCatalog catalog;
  const DeviceProfile& cpu = *catalog.find("server_cpu");
  const DeviceProfile& fpga = *catalog.find("edge_fpga");
  const double macs = 1e9;
  EXPECT_DOUBLE_EQ(cpu.compute_time_s(macs, Precision::kFp32) / fpga.compute_time_s(macs, Precision::kInt2), 6.5);
  EXPECT_DOUBLE_EQ(cpu.compute_time_s(macs, Precision::kFp32) / fpga.compute_time_s(macs, Precision::kInt4), 7.2);
}

// ---------------------------------------------------------------------------
// Round cost

TEST(RoundCost, MatchesHandComputedTimesAndEnergies) {
  const Population pop = make_population(kTwoClients, 2);
  // Client 0: 100000 B down at 16e6 bps = 50 ms + 10 ms; 1e6 MACs at 2e9 = 0.5 ms;
  // 40000 B up at 8e6 bps = 40 ms + 10 ms. rx 8e5 bit * 5e-8 = 0.04 J,
  // compute 1e6 * 1e-9 = 0.001 J, tx 3.2e5 bit * 1e-7 = 0.032 J.
  const RoundCost a = round_cost(pop.client(0), 100000, 1e6, 40000, 0.0);
  EXPECT_NEAR(a.down_s, 0.060, kMicro);
  EXPECT_NEAR(a.compute_s, 0.0005, kMicro);
  EXPECT_NEAR(a.up_s, 0.050, kMicro);
  EXPECT_NEAR(a.busy_s(), 0.1105, kMicro);
  EXPECT_NEAR(a.energy.rx_j, 0.040, kMicro);
  EXPECT_NEAR(a.energy.compute_j, 0.001, kMicro);
  EXPECT_NEAR(a.energy.tx_j, 0.032, kMicro);
  EXPECT_NEAR(a.total_j(), 0.073, kMicro);
  // Client 1 (int8): 8e5 bit / 4e6 = 200 ms + 100 ms; 1e6 / 8e9 = 0.125 ms;
  // 3.2e5 bit / 2e6 = 160 ms + 100 ms. rx 0.08 J, compute 3e-4 J, tx 0.064 J.
  const RoundCost b = round_cost(pop.client(1), 100000, 1e6, 40000, 0.0);
  EXPECT_NEAR(b.down_s, 0.300, kMicro);
  EXPECT_NEAR(b.compute_s, 0.000125, kMicro);
  EXPECT_NEAR(b.up_s, 0.260, kMicro);
  EXPECT_NEAR(b.busy_s(), 0.560125, kMicro);
  EXPECT_NEAR(b.energy.rx_j, 0.080, kMicro);
  EXPECT_NEAR(b.energy.compute_j, 0.0003, kMicro);
  EXPECT_NEAR(b.energy.tx_j, 0.064, kMicro);
  EXPECT_NEAR(b.total_j(), 0.1443, kMicro);
}

TEST(RoundCost, ServerCapacitySharedEquallyAmongUploaders) {
  const Population pop = make_population(kTwoClients, 2);
  EXPECT_EQ(server_share_bps(0.0, 2), 0.0);  // unlimited
  EXPECT_EQ(server_share_bps(8e6, 0), 0.0);
  const double share = server_share_bps(8e6, 2);
  EXPECT_EQ(share, 4e6);
  // Client 0: min(8e6, 4e6) -> 3.2e5 bit / 4e6 = 80 ms + 10 ms. Client 1 keeps its 2e6.
  EXPECT_NEAR(round_cost(pop.client(0), 0, 0.0, 40000, share).up_s, 0.090, kMicro);
  EXPECT_NEAR(round_cost(pop.client(1), 0, 0.0, 40000, share).up_s, 0.260, kMicro);
  // Radio energy does not depend on the rate.
  EXPECT_NEAR(round_cost(pop.client(0), 0, 0.0, 40000, share).energy.tx_j, 0.032, kMicro);
}

TEST(RoundCost, EmptyMessagesTakeNoTime) {
  const Population pop = make_population(kTwoClients, 2);
  const RoundCost c = round_cost(pop.client(0), 0, 0.0, 0, 0.0);
  EXPECT_EQ(c.busy_s(), 0.0);
  EXPECT_EQ(c.total_j(), 0.0);
  EXPECT_NEAR(transfer_time_s(1, 8.0, 0.5), 1.5, 1e-12);  // 8 bit at 8 bps + latency
}

// ---------------------------------------------------------------------------
// Energy ledger

TEST(EnergyLedger, IdleEnergyAtProfileIdlePowerAndRoundSumsByClass) {
  const Population pop = make_population(kTwoClients, 2);
  EnergyLedger ledger(pop);
  const RoundCost a = round_cost(pop.client(0), 100000, 1e6, 40000, 0.0);
  const RoundCost b = round_cost(pop.client(1), 100000, 1e6, 40000, 0.0);
  // Client 0 finishes at 0.1105 s and waits for client 1 (0.560125 s): idle 0.449625 s at 0.3 W.
  EXPECT_TRUE(ledger.charge(0, 1, a, b.busy_s() - a.busy_s()));
  EXPECT_TRUE(ledger.charge(1, 1, b, 0.0));
  EXPECT_NEAR(ledger.client(0).energy.idle_j, 0.1348875, kMicro);
  EXPECT_NEAR(ledger.client(1).energy.idle_j, 0.0, kMicro);
  const RoundEnergy r = ledger.take_round();
  EXPECT_NEAR(r.energy.compute_j, 0.0013, kMicro);
  EXPECT_NEAR(r.energy.tx_j, 0.096, kMicro);
  EXPECT_NEAR(r.energy.rx_j, 0.120, kMicro);
  EXPECT_NEAR(r.energy.idle_j, 0.1348875, kMicro);
  EXPECT_NEAR(r.total_j(), 0.073 + 0.1443 + 0.1348875, kMicro);
  ASSERT_EQ(r.class_j.size(), 2u);
  EXPECT_NEAR(r.class_j[0], 0.073 + 0.1348875, kMicro);
  EXPECT_NEAR(r.class_j[1], 0.1443, kMicro);
  EXPECT_EQ(r.clients_charged, 2u);
  // Reset after take_round; the per-client totals stay.
  EXPECT_EQ(ledger.current_round().total_j(), 0.0);
  EXPECT_EQ(ledger.current_round().class_j, (std::vector<double>{0.0, 0.0}));
  EXPECT_NEAR(ledger.total_j(), 0.073 + 0.1443 + 0.1348875, kMicro);
  EXPECT_EQ(ledger.client(0).rounds, 1u);
}

TEST(EnergyLedger, BatteryExhaustedAtRoundWhereCumulativeCostReachesBudget) {
  const Population pop = make_population(kTwoClients, 2);
  EnergyLedger ledger(pop);
  const RoundCost a = round_cost(pop.client(0), 100000, 1e6, 40000, 0.0);  // 0.073 J
  // Budget 0.25 J: cumulative 0.073, 0.146, 0.219 (< 0.25), 0.292 (>= 0.25) -> exhausted in round 4.
  for (std::uint32_t round = 1; round <= 3; ++round) {
    EXPECT_TRUE(ledger.charge(0, round, a, 0.0)) << round;
    EXPECT_FALSE(ledger.exhausted(0)) << round;
  }
  EXPECT_NEAR(ledger.battery_left_j(0), 0.25 - 0.219, kMicro);
  EXPECT_FALSE(ledger.charge(0, 4, a, 0.0));
  EXPECT_TRUE(ledger.exhausted(0));
  EXPECT_EQ(ledger.client(0).exhausted_round, 4);
  EXPECT_NEAR(ledger.battery_left_j(0), 0.25 - 0.292, kMicro);
  EXPECT_EQ(ledger.num_exhausted(), 1u);
  EXPECT_EQ(ledger.take_round().clients_exhausted, 1u);
  // Client 1 has no battery: never exhausted.
  for (std::uint32_t round = 1; round <= 100; ++round) EXPECT_TRUE(ledger.charge(1, round, a, 10.0));
  EXPECT_FALSE(ledger.exhausted(1));
  EXPECT_EQ(ledger.battery_left_j(1), std::numeric_limits<double>::infinity());
}

TEST(EnergyLedger, BatteryExactlySpentCountsAsExhausted) {
  // Binary-exact costs: 4 rounds of 0.25 J + 0 idle reach 1 J exactly.
  std::string yaml = R"(population:
  - {name: a, fraction: 1, battery_j: 1}
)";
  const Population pop = make_population(yaml, 1);
  EnergyLedger ledger(pop);
  RoundCost c;
  c.energy.compute_j = 0.125;
  c.energy.tx_j = 0.0625;
  c.energy.rx_j = 0.0625;
  for (std::uint32_t round = 0; round < 3; ++round) EXPECT_TRUE(ledger.charge(0, round, c, 0.0));
  EXPECT_EQ(ledger.battery_left_j(0), 0.25);
  EXPECT_FALSE(ledger.charge(0, 3, c, 0.0));
  EXPECT_EQ(ledger.battery_left_j(0), 0.0);
  EXPECT_EQ(ledger.client(0).exhausted_round, 3);
}

TEST(EnergyLedger, ClientCsvHasOneExactRowPerClient) {
  const Population pop = make_population(kTwoClients, 2);
  EnergyLedger ledger(pop);
  RoundCost c;
  c.energy.compute_j = 0.125;
  c.energy.tx_j = 0.0625;
  c.energy.rx_j = 0.03125;  // 0.21875 J a round; battery 0.25 J -> exhausted in round 1 (0.4375)
  ledger.charge(0, 0, c, 0.0);
  ledger.charge(0, 1, c, 0.0);
  ledger.charge(1, 1, c, 2.5);  // idle 2.5 s * 0.3 W = 0.75 J
  const std::string path = ::testing::TempDir() + "/hetero_clients.csv";
  ledger.write_client_csv(path);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(),
            "client,class,profile,rounds,compute_j,tx_j,rx_j,idle_j,total_j,battery_left_j,exhausted_round,"
            "promotion_j,tail_j,grid_j\n"
            "0,a,slow,2,0.25,0.125,0.0625,0,0.4375,-0.1875,1,0,0,0\n"
            "1,b,slow,1,0.125,0.0625,0.03125,0.75,0.96875,,,0,0,0\n");
}

// ---------------------------------------------------------------------------
// Links

Config link_config(const std::string& yaml) { return Config::parse_string(yaml, "t.yaml"); }

TEST(LinkModel, FixedValuesAreExactAndOmittedFieldsTakeDefaults) {
  Rng rng(3);
  const Link l = draw_link(link_config("uplink_bps: 3e6\ndownlink_bps: {fixed: 7e6}\n"), rng);
  EXPECT_EQ(l.uplink_bps, 3e6);
  EXPECT_EQ(l.downlink_bps, 7e6);
  EXPECT_EQ(l.latency_s, 0.05);
  EXPECT_EQ(l.tx_j_per_bit, 1e-7);
  EXPECT_EQ(l.rx_j_per_bit, 5e-8);
}

TEST(LinkModel, UniformStaysWithinBoundsWithUniformMean) {
  const LinkSpec spec = LinkSpec::parse(link_config("uplink_bps: {uniform: {min: 1e6, max: 3e6}}\n"));
  Rng rng(11);
  const int n = 20000;
  double sum = 0.0, lo = 1e300, hi = 0.0;
  for (int i = 0; i < n; ++i) {
    const double x = spec.draw(rng).uplink_bps;
    sum += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  EXPECT_GE(lo, 1e6);
  EXPECT_LT(hi, 3e6);
  // Mean 2e6; std error 2e6 / sqrt(12 n) = 4.1e3.
  EXPECT_NEAR(sum / n, 2e6, 2e4);
  EXPECT_LT(lo, 1.01e6);  // covers the whole interval
  EXPECT_GT(hi, 2.99e6);
}

TEST(LinkModel, LognormalMedianAndLogSpreadMatch) {
  const LinkSpec spec = LinkSpec::parse(link_config("latency_s: {lognormal: {median: 0.08, sigma: 0.5}}\n"));
  Rng rng(12);
  const int n = 20001;
  std::vector<double> logs(n);
  for (int i = 0; i < n; ++i) logs[i] = std::log(spec.draw(rng).latency_s);
  double mean = 0.0, m2 = 0.0;
  for (double x : logs) mean += x;
  mean /= n;
  for (double x : logs) m2 += (x - mean) * (x - mean);
  std::nth_element(logs.begin(), logs.begin() + n / 2, logs.end());
  // Sample median of log: std error 1.25 * 0.5 / sqrt(n) = 0.0044; 2% ~ 4.5 std errors.
  EXPECT_NEAR(std::exp(logs[n / 2]) / 0.08, 1.0, 0.02);
  EXPECT_NEAR(std::sqrt(m2 / (n - 1)), 0.5, 0.02);  // std error 0.0025
}

TEST(LinkModel, EachClientDrawsItsOwnLinkDeterministically) {
  const std::string yaml = R"(population:
  - {name: a, fraction: 1, link: {uplink_bps: {uniform: {min: 1e6, max: 9e6}}}}
)";
  const Population p1 = make_population(yaml, 50, 7);
  const Population p2 = make_population(yaml, 50, 7);
  const Population p3 = make_population(yaml, 50, 8);
  std::vector<double> rates;
  int differ = 0;
  for (std::uint32_t c = 0; c < 50; ++c) {
    EXPECT_EQ(p1.client(c).link.uplink_bps, p2.client(c).link.uplink_bps);
    differ += p1.client(c).link.uplink_bps != p3.client(c).link.uplink_bps;
    rates.push_back(p1.client(c).link.uplink_bps);
  }
  std::sort(rates.begin(), rates.end());
  EXPECT_EQ(std::unique(rates.begin(), rates.end()), rates.end());  // all distinct
  EXPECT_EQ(differ, 50);
}

// ---------------------------------------------------------------------------
// Population

TEST(Population, ClassesGetContiguousBlocksByCumulativeRounding) {
  const std::string yaml = R"(population:
  - {name: x, fraction: 0.5}
  - {name: y, fraction: 0.3}
  - {name: z, fraction: 0.2}
)";
  auto counts = [&](std::size_t n) {
    const Population p = make_population(yaml, n);
    std::vector<std::size_t> out(p.num_classes(), 0);
    for (std::uint32_t c = 0; c < n; ++c) ++out[p.client(c).class_index];
    for (std::size_t k = 0; k < p.num_classes(); ++k)
      EXPECT_EQ(p.client_class(k).end_client - p.client_class(k).first_client, out[k]);
    return out;
  };
  EXPECT_EQ(counts(10), (std::vector<std::size_t>{5, 3, 2}));
  // n = 7: boundaries round(3.5) = 4, round(5.6) = 6, 7.
  EXPECT_EQ(counts(7), (std::vector<std::size_t>{4, 2, 1}));
  EXPECT_EQ(counts(1000), (std::vector<std::size_t>{500, 300, 200}));
  const Population p = make_population(yaml, 10);
  EXPECT_EQ(p.class_names(), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(p.client(4).class_index, 0u);
  EXPECT_EQ(p.client(5).class_index, 1u);
  EXPECT_EQ(p.client(8).class_index, 2u);
  // Thirds: round(333.333) = 333, round(666.667) = 667.
  const Population thirds = make_population(R"(population:
  - {name: x, fraction: 0.333333}
  - {name: y, fraction: 0.333333}
  - {name: z, fraction: 0.333334}
)",
                                            1000);
  EXPECT_EQ(thirds.client_class(0).end_client, 333u);
  EXPECT_EQ(thirds.client_class(1).end_client, 667u);
  EXPECT_EQ(thirds.client_class(2).end_client, 1000u);
}

TEST(Population, DefaultIsOneServerCpuClassAlwaysOnline) {
  const Population p = make_population("{}\n", 3);
  ASSERT_EQ(p.num_classes(), 1u);
  EXPECT_EQ(p.class_name(0), "default");
  for (std::uint32_t c = 0; c < 3; ++c) {
    const ClientTraits& t = p.client(c);
    EXPECT_EQ(t.profile->name(), "server_cpu");
    EXPECT_EQ(t.precision, Precision::kFp32);
    EXPECT_EQ(t.link.uplink_bps, 10e6);
    EXPECT_EQ(t.link.downlink_bps, 50e6);
    EXPECT_EQ(t.link.latency_s, 0.05);
    EXPECT_EQ(t.link.tx_j_per_bit, 1e-7);
    EXPECT_EQ(t.link.rx_j_per_bit, 5e-8);
    EXPECT_EQ(t.battery_j, 0.0);
    EXPECT_EQ(t.data_weight, 1.0);
    for (std::uint32_t r = 0; r < 50; ++r) {
      EXPECT_TRUE(p.is_online(c, r, r * 37.5));
      EXPECT_FALSE(p.drops_out(c, r));
    }
  }
  EXPECT_EQ(p.server_capacity_bps(), 0.0);
}

TEST(Population, PeriodicTraceOnAndOffAtTheRightTimes) {
  const Population p = make_population(R"(population:
  - {name: a, fraction: 1, availability: {period_s: 8, on_fraction: 0.25, phase: zero}}
)",
                                       2);
  // Online on [8k, 8k + 2), offline on [8k + 2, 8k + 8).
  for (double t : {0.0, 1.0, 1.999, 8.0, 9.5, 16.0, 801.25}) EXPECT_TRUE(p.is_online(1, 0, t)) << t;
  for (double t : {2.0, 5.0, 7.999, 10.0, 15.5, 805.0}) EXPECT_FALSE(p.is_online(1, 0, t)) << t;
  // Independent of the round.
  EXPECT_TRUE(p.is_online(0, 99, 1.0));
  EXPECT_FALSE(p.is_online(0, 99, 3.0));
}

TEST(Population, RandomPhaseShiftsEachClientsTraceButKeepsOnFraction) {
  const Population p = make_population(R"(population:
  - {name: a, fraction: 1, availability: {period_s: 8, on_fraction: 0.25, phase: random}}
)",
                                       20);
  std::vector<double> phases;
  for (std::uint32_t c = 0; c < 20; ++c) {
    const double phase = p.client(c).phase_s;
    EXPECT_GE(phase, 0.0);
    EXPECT_LT(phase, 8.0);
    phases.push_back(phase);
    // On exactly 200 of 800 evenly spaced instants of one period (up to the two edges).
    int on = 0;
    for (int i = 0; i < 800; ++i) on += p.is_online(c, 0, i * 0.01);
    EXPECT_NEAR(on, 200, 1) << c;
    EXPECT_TRUE(p.is_online(c, 0, 8.0 - phase + 0.5));  // 0.5 s into its on-window
    EXPECT_FALSE(p.is_online(c, 0, 8.0 - phase + 3.0));
  }
  std::sort(phases.begin(), phases.end());
  EXPECT_EQ(std::unique(phases.begin(), phases.end()), phases.end());
}

TEST(Population, OnlineProbabilityFrequencyMatchesAndDropoutIsIndependent) {
  const std::string yaml = R"(population:
  - {name: a, fraction: 1, availability: {online_probability: 0.3}, dropout_probability: 0.1}
)";
  const Population p = make_population(yaml, 2, 5);
  const Population same = make_population(yaml, 2, 5);
  const int rounds = 40000;
  int online = 0, dropped = 0, both = 0;
  for (int r = 0; r < rounds; ++r) {
    const bool on = p.is_online(0, r, 0.0);
    const bool drop = p.drops_out(0, r);
    online += on;
    dropped += drop;
    both += on && drop;
    // One draw per (client, round): the same at any time of the round, and reproducible.
    if (r < 1000) {
      EXPECT_EQ(on, p.is_online(0, r, 1234.5));
      EXPECT_EQ(on, same.is_online(0, r, 0.0));
      EXPECT_EQ(drop, same.drops_out(0, r));
    }
  }
  // Std errors: 0.0023, 0.0015, 0.00085.
  EXPECT_NEAR(online / double(rounds), 0.3, 0.01);
  EXPECT_NEAR(dropped / double(rounds), 0.1, 0.006);
  EXPECT_NEAR(both / double(rounds), 0.03, 0.004);
  // Clients draw independently of each other.
  int agree = 0;
  for (int r = 0; r < rounds; ++r) agree += p.is_online(0, r, 0.0) == p.is_online(1, r, 0.0);
  EXPECT_NEAR(agree / double(rounds), 0.3 * 0.3 + 0.7 * 0.7, 0.01);
}

// ---------------------------------------------------------------------------
// Input errors: file:line: key: expected ..., found ...

TEST(HeteroErrors, NegativeBandwidth) {
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    link:
      uplink_bps: -5
)"),
            "t.yaml:5: population[0].link.uplink_bps: expected a finite number > 0, found '-5'");
}

TEST(HeteroErrors, ZeroBandwidthInsideDistribution) {
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    link:
      downlink_bps:
        uniform: {min: 0, max: 5e6}
)"),
            "t.yaml:6: population[0].link.downlink_bps.uniform.min: expected a finite number > 0, found '0'");
}

TEST(HeteroErrors, NegativeLatencyAndEnergy) {
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, link: {latency_s: -0.1}}\n"),
            "t.yaml:2: population[0].link.latency_s: expected a finite number >= 0, found '-0.1'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, link: {tx_j_per_bit: {lognormal: {median: -1, sigma: 1}}}}\n"),
            "t.yaml:2: population[0].link.tx_j_per_bit.lognormal.median: expected a finite number >= 0, found '-1'");
}

TEST(HeteroErrors, BadDistributions) {
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    link:
      latency_s: {gaussian: {mean: 1}}
)"),
            "t.yaml:5: population[0].link.latency_s.gaussian: expected one of: fixed, uniform, lognormal, found 'gaussian'");
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    link:
      uplink_bps:
        uniform:
          min: 5e6
          max: 1e6
)"),
            "t.yaml:8: population[0].link.uplink_bps.uniform.max: expected a number >= min ('5e6'), found '1e6'");
  EXPECT_NE(error_of("population:\n  - {name: a, fraction: 1, link: {uplink_bps: {fixed: 1, uniform: {min: 1, max: 2}}}}\n")
                .find("t.yaml:2: population[0].link.uplink_bps: expected a number or one of {fixed: x}"),
            std::string::npos);
}

TEST(HeteroErrors, MissingPrecisionOnProfile) {
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    profile: phone_gpu
    precision: int4
)"),
            "t.yaml:5: population[0].precision: expected a precision supported by profile 'phone_gpu' (fp32), "
            "found 'int4'");
  // The default fp32 on a profile without float.
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, profile: edge_fpga}\n"),
            "t.yaml:2: population[0].precision: expected a precision supported by profile 'edge_fpga' "
            "(int8, int4, int2), found 'fp32' (the default)");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, precision: int3}\n"),
            "t.yaml:2: population[0].precision: expected one of: fp32, int8, int4, int2, found 'int3'");
}

TEST(HeteroErrors, UnknownProfile) {
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    profile: tpu
)"),
            "t.yaml:4: population[0].profile: expected a device profile (one of: edge_fpga, edge_gpu, phone_cpu, "
            "phone_gpu, pixel4xl_cpu, server_cpu), found 'tpu'");
}

TEST(HeteroErrors, FractionsNotSummingToOne) {
  EXPECT_EQ(error_of(R"(clients: 10
population:
  - {name: a, fraction: 0.5}
  - {name: b, fraction: 0.4}
)"),
            "t.yaml:2: population: expected class fractions summing to 1 (+-1e-6), found fractions summing to 0.9");
  // Within the tolerance is fine.
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 0.5}\n  - {name: b, fraction: 0.5000005}\n"), "no error");
}

TEST(HeteroErrors, UnknownKeyInClassAndAvailability) {
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    batery_j: 5
)"),
            "t.yaml:4: population[0].batery_j: unknown key (not part of the schema; see the README's scenario table)");
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    availability:
      probability: 0.5
)"),
            "t.yaml:5: population[0].availability.probability: unknown key (not part of the schema; see the README's "
            "scenario table)");
  EXPECT_EQ(error_of(R"(population:
  - name: a
    fraction: 1
    availability: {online_probability: 0.5, period_s: 10}
)"),
            "t.yaml:4: population[0].availability.online_probability: expected either online_probability or "
            "period_s/on_fraction/phase, not both, found both kinds of keys");
}

TEST(HeteroErrors, OtherClassValues) {
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, battery_j: -1}\n"),
            "t.yaml:2: population[0].battery_j: expected a number >= 0, found '-1'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 0.5}\n  - {name: a, fraction: 0.5}\n"),
            "t.yaml:3: population[1].name: expected a unique class name, found 'a' again");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, dropout_probability: 1.5}\n"),
            "t.yaml:2: population[0].dropout_probability: expected a number in [0, 1], found '1.5'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, data_weight: 0}\n"),
            "t.yaml:2: population[0].data_weight: expected a finite number > 0, found '0'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, availability: {period_s: 0, on_fraction: 0.5}}\n"),
            "t.yaml:2: population[0].availability.period_s: expected a finite number > 0, found '0'");
  EXPECT_EQ(error_of("population: []\n"), "t.yaml:1: population: expected a non-empty list of client classes, found an empty list");
}

TEST(HeteroErrors, BadUserProfiles) {
  EXPECT_EQ(error_of(R"(profiles:
  mine:
    macs_per_s:
      fp32: 1e9
      int8: 0
    joules_per_mac: {fp32: 1e-9, int8: 1e-10}
)"),
            "t.yaml:5: profiles.mine.macs_per_s.int8: expected a finite number > 0 (MAC/s), found '0'");
  EXPECT_EQ(error_of(R"(profiles:
  mine:
    macs_per_s: {fp32: -2e9}
    joules_per_mac: {fp32: 1e-9}
)"),
            "t.yaml:3: profiles.mine.macs_per_s.fp32: expected a finite number > 0 (MAC/s), found '-2e9'");
  EXPECT_EQ(error_of(R"(profiles:
  mine:
    macs_per_s: {fp32: 1e9, int8: 4e9}
    joules_per_mac:
      fp32: 1e-9
)"),
            "t.yaml:5: profiles.mine.joules_per_mac.int8: expected a number >= 0 (required), found nothing");
  EXPECT_EQ(error_of(R"(profiles:
  mine:
    macs_per_s: {fp16: 1e9}
)"),
            "t.yaml:3: profiles.mine.macs_per_s.fp16: expected a precision (fp32, int8, int4, int2), found 'fp16'");
  EXPECT_EQ(error_of(R"(profiles:
  mine:
    joules_per_mac: {fp32: 1e-9}
)"),
            "t.yaml:3: profiles.mine.macs_per_s: expected a mapping precision -> MAC/s with at least one of "
            "fp32, int8, int4, int2, found nothing");
  EXPECT_EQ(error_of(R"(profiles:
  phone_cpu:
    macs_per_s: {fp32: 1e9}
    joules_per_mac: {fp32: 1e-9}
)"),
            "t.yaml:2: profiles.phone_cpu: expected a new profile name (built-in profiles cannot be redefined), found "
            "'phone_cpu'");
  EXPECT_EQ(error_of(R"(profiles:
  mine:
    macs_per_s: {fp32: 1e9}
    joules_per_mac: {fp32: 1e-9}
    idle_watts: 1
)"),
            "t.yaml:5: profiles.mine.idle_watts: unknown key (not part of the schema; see the README's scenario table)");
}

}  // namespace
}  // namespace fedsim

// ---------------------------------------------------------------------------
// Charging and batteries

namespace fedsim {
namespace {

// Budget 0.1 * 100 J = 10 J; plugged in for the first 50 s of every 100 s.
const char* kCharging = R"(population:
  - name: p
    fraction: 1
    battery: {capacity_j: 100, budget_fraction: 0.1}
    charging: {period_s: 100, plugged_fraction: 0.5}
    availability: {while_charging: true}
)";

RoundCost compute_only(double joules) {
  RoundCost c;
  c.energy.compute_j = joules;
  return c;
}

TEST(Charging, EnergyDrawnWhilePluggedInIsGridEnergyNotBattery) {
  const Population pop = make_population(kCharging, 1);
  EXPECT_DOUBLE_EQ(pop.client(0).battery_j, 10.0);
  EnergyLedger ledger(pop);
  EXPECT_TRUE(ledger.charge(0, 1, compute_only(4.0), 0.0, 10.0));  // plugged in (10 < 50)
  EXPECT_DOUBLE_EQ(ledger.client(0).grid_j, 4.0);
  EXPECT_DOUBLE_EQ(ledger.battery_left_j(0), 10.0);  // nothing from the battery
  EXPECT_TRUE(ledger.charge(0, 2, compute_only(4.0), 0.0, 60.0));  // unplugged (60 >= 50)
  EXPECT_DOUBLE_EQ(ledger.battery_left_j(0), 6.0);
  EXPECT_TRUE(ledger.charge(0, 3, compute_only(40.0), 0.0, 120.0));  // plugged again (120 mod 100 = 20)
  EXPECT_DOUBLE_EQ(ledger.battery_left_j(0), 6.0);
  EXPECT_FALSE(ledger.charge(0, 4, compute_only(6.0), 0.0, 170.0));  // 10 J from the battery: exhausted
  EXPECT_EQ(ledger.client(0).exhausted_round, 4);
  EXPECT_DOUBLE_EQ(ledger.client(0).total_j(), 54.0);
  EXPECT_DOUBLE_EQ(ledger.client(0).grid_j, 44.0);
  const RoundEnergy r = ledger.take_round();
  EXPECT_DOUBLE_EQ(r.grid_j, 44.0);
}

TEST(Charging, WhileChargingClientsAreOnlineOnlyWhilePluggedIn) {
  const Population pop = make_population(kCharging, 1);
  EXPECT_TRUE(pop.is_online(0, 1, 0.0));
  EXPECT_TRUE(pop.is_online(0, 1, 49.9));
  EXPECT_FALSE(pop.is_online(0, 1, 50.0));
  EXPECT_FALSE(pop.is_online(0, 1, 99.9));
  EXPECT_TRUE(pop.is_online(0, 2, 100.0));
}

TEST(Charging, KeysAreChecked) {
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, availability: {while_charging: true}}\n"),
            "t.yaml:2: population[0].availability: expected a charging: {period_s, plugged_fraction} schedule for "
            "while_charging, found no charging key");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, battery_j: 5, battery: {capacity_j: 9}}\n"),
            "t.yaml:2: population[0].battery: expected either battery_j or battery: {capacity_j, budget_fraction}, "
            "found both");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, battery: {capacity_j: 9, budget_fraction: 0}}\n"),
            "t.yaml:2: population[0].battery.budget_fraction: expected a fraction in (0, 1], found '0'");
  EXPECT_EQ(error_of("population:\n  - {name: a, fraction: 1, charging: {period_s: 0, plugged_fraction: 0.5}}\n"),
            "t.yaml:2: population[0].charging.period_s: expected a finite number > 0, found '0'");
}

}  // namespace
}  // namespace fedsim
