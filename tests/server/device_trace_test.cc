// Device traces (server/device_trace.h): the CSV format, what a client of a
// class with `device_trace:` gets from its row, and the converter from
// FedScale's pickles (tools/fedscale_to_fedsim.py) on a small trace made here.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "core/base/config.h"
#include "core/base/errors.h"
#include "server/device_trace.h"
#include "server/energy.h"
#include "server/population.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

const char* kTrace =
    "# two devices\n"
    "device,macs_per_s,uplink_bps,downlink_bps,period_s,online\n"
    "a,2e9,1e6,4e6,100,10-20 50-60.5\n"
    "b,5e8,2e6,8e6,50,\n";

TEST(DeviceTrace, RowsAndOnlinePeriodsByHand) {
  const auto t = DeviceTrace::parse(kTrace, "d.csv");
  ASSERT_EQ(t->rows().size(), 2u);
  const DeviceRow& a = t->rows()[0];
  EXPECT_EQ(a.device, "a");
  EXPECT_EQ(a.macs_per_s, 2e9);
  EXPECT_EQ(a.uplink_bps, 1e6);
  EXPECT_EQ(a.downlink_bps, 4e6);
  EXPECT_EQ(a.period_s, 100.0);
  EXPECT_FALSE(a.is_online(9.99));
  EXPECT_TRUE(a.is_online(10.0));
  EXPECT_TRUE(a.is_online(19.99));
  EXPECT_FALSE(a.is_online(20.0));  // [start, end)
  EXPECT_TRUE(a.is_online(60.25));
  EXPECT_FALSE(a.is_online(60.5));
  EXPECT_TRUE(a.is_online(115.0));  // looped: 15
  EXPECT_TRUE(t->rows()[1].is_online(1e9));  // no intervals: always online
}

std::string error(const std::string& text) {
  try {
    DeviceTrace::parse(text, "d.csv");
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(DeviceTrace, BadFilesNameTheLine) {
  const std::string h = "device,macs_per_s,uplink_bps,downlink_bps,period_s,online\n";
  EXPECT_EQ(error(""), "d.csv: expected the header 'device,macs_per_s,uplink_bps,downlink_bps,period_s,online', "
                       "found an empty file");
  EXPECT_EQ(error("id,speed\n"), "d.csv:1: expected the header "
                                 "'device,macs_per_s,uplink_bps,downlink_bps,period_s,online', found 'id,speed'");
  EXPECT_EQ(error(h), "d.csv: expected at least one device row, found none");
  EXPECT_EQ(error(h + "a,2e9,1e6,4e6,100\n"), "d.csv:2: expected 6 comma-separated cells, found 5 in 'a,2e9,1e6,4e6,100'");
  EXPECT_EQ(error(h + "a,0,1e6,4e6,100,\n"), "d.csv:2: expected macs_per_s > 0, found '0'");
  EXPECT_EQ(error(h + "a,1e9,fast,4e6,100,\n"), "d.csv:2: expected uplink_bps > 0, found 'fast'");
  EXPECT_EQ(error(h + "a,1e9,1e6,4e6,100,10-5\n"),
            "d.csv:2: expected increasing, disjoint intervals within [0, period_s = 100], found '10-5'");
  EXPECT_EQ(error(h + "a,1e9,1e6,4e6,100,10-30 20-40\n"),
            "d.csv:2: expected increasing, disjoint intervals within [0, period_s = 100], found '20-40'");
  EXPECT_EQ(error(h + "a,1e9,1e6,4e6,100,90-120\n"),
            "d.csv:2: expected increasing, disjoint intervals within [0, period_s = 100], found '90-120'");
  EXPECT_EQ(error(h + "a,1e9,1e6,4e6,100,10:20\n"),
            "d.csv:2: expected online intervals 'start-end' separated by spaces, found '10:20'");
}

struct TraceDir {
  fs::path dir = fs::temp_directory_path() / ("fedsim_device_trace_" + std::to_string(::getpid()));
  TraceDir() {
    fs::create_directories(dir);
    std::ofstream(dir / "devices.csv") << kTrace;
  }
  ~TraceDir() { fs::remove_all(dir); }
};

std::string trace_class(const std::string& extra = "", const std::string& link = "latency_s: 0") {
  return "population:\n  - name: traced\n    fraction: 1.0\n    profile: phone_cpu\n"
         "    device_trace: {file: devices.csv" + extra + "}\n    link: {" + link + "}\n";
}

TEST(DeviceTracePopulation, ClientsTakeRowsInTurnWithTheirRatesAndPeriods) {
  TraceDir d;
  const Config root = Config::parse_string(trace_class(), (d.dir / "s.yaml").string());
  Population p(root, 5, 1);
  root.finish();
  // Sequential: clients 0, 2, 4 take row a, clients 1, 3 row b.
  for (std::uint32_t c = 0; c < 5; ++c) {
    const ClientTraits& t = p.client(c);
    ASSERT_NE(t.device, nullptr);
    EXPECT_EQ(t.device->device, c % 2 ? "b" : "a");
    EXPECT_EQ(t.link.uplink_bps, c % 2 ? 2e6 : 1e6);
    EXPECT_EQ(t.link.downlink_bps, c % 2 ? 8e6 : 4e6);
    EXPECT_EQ(t.availability.kind, Availability::Kind::kTrace);
  }
  EXPECT_FALSE(p.is_online(0, 1, 5.0));
  EXPECT_TRUE(p.is_online(0, 1, 15.0));
  EXPECT_TRUE(p.is_online(1, 1, 5.0));
  // Compute: phone_cpu's fp32 time scaled to 2e9 MAC/s (row a) and 5e8 (row b):
  // 1e9 MACs take 0.5 s and 2 s, whatever the profile's own rate.
  EnergyLedger ledger(p);
  RoundWork w;
  w.macs = 1e9;
  EXPECT_DOUBLE_EQ(ledger.round_cost(0, w).compute_s, 0.5);
  EXPECT_DOUBLE_EQ(ledger.round_cost(1, w).compute_s, 2.0);
  // Energy per MAC stays the profile's.
  const double j_per_mac = p.client(0).profile->compute_energy_j(1.0, Precision::kFp32);
  EXPECT_DOUBLE_EQ(ledger.round_cost(0, w).energy.compute_j, 1e9 * j_per_mac);
}

TEST(DeviceTracePopulation, RandomAssignmentIsSeeded) {
  TraceDir d;
  const auto rows_of = [&](std::uint64_t seed) {
    const Config root = Config::parse_string(trace_class(", assign: random"), (d.dir / "s.yaml").string());
    Population p(root, 40, seed);
    root.finish();
    std::string s;
    for (std::uint32_t c = 0; c < 40; ++c) s += p.client(c).device->device;
    return s;
  };
  EXPECT_EQ(rows_of(3), rows_of(3));
  EXPECT_NE(rows_of(3), rows_of(4));
  EXPECT_NE(rows_of(3).find('a'), std::string::npos);
  EXPECT_NE(rows_of(3).find('b'), std::string::npos);
}

TEST(DeviceTracePopulation, ConflictingKeysAreRefused) {
  TraceDir d;
  const auto message = [&](const std::string& yaml) {
    try {
      const Config root = Config::parse_string(yaml, (d.dir / "s.yaml").string());
      Population p(root, 2, 1);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(trace_class("", "uplink_bps: 1e6")).find("uplink_bps: expected no link rate next to device_trace"),
            std::string::npos);
  EXPECT_NE(message(trace_class() + "    availability: {online_probability: 0.5}\n")
                .find("availability: expected no availability next to device_trace"),
            std::string::npos);
  EXPECT_NE(message(trace_class(", assign: shuffled")).find("assign"), std::string::npos);
  const std::string missing = trace_class();
  EXPECT_NE(message(std::string(missing).replace(missing.find("devices.csv"), 11, "none.csv"))
                .find("cannot read device trace"),
            std::string::npos);
}

// The converter on a FedScale-format pickle pair made by Debian's python.
TEST(FedScaleConverter, RoundTripsASmallHandmadeTrace) {
  const std::string python = "/usr/bin/python3";
  if (!fs::exists(python)) GTEST_SKIP() << python << " is missing";
  TraceDir d;
  const fs::path make = d.dir / "make.py";
  std::ofstream(make) << "import pickle\n"
                         "cap = {7: {'computation': 20.0, 'communication': 1500.0},\n"
                         "       3: {'computation': 80.0, 'communication': 250.5}}\n"
                         "beh = {7: {'active': [0, 300], 'inactive': [100, 450], 'finish_time': 600, 'model': 'x'},\n"
                         "       3: {'active': [50], 'inactive': [700], 'finish_time': 1000}}\n"
                         "pickle.dump(cap, open('" + (d.dir / "cap").string() + "', 'wb'))\n"
                         "pickle.dump(beh, open('" + (d.dir / "beh").string() + "', 'wb'))\n";
  ASSERT_EQ(std::system((python + " " + make.string()).c_str()), 0);
  const fs::path out = d.dir / "converted.csv";
  const std::string convert = python + " " + FEDSIM_SOURCE_DIR + "/tools/fedscale_to_fedsim.py --capacity " +
                              (d.dir / "cap").string() + " --behave " + (d.dir / "beh").string() +
                              " --reference-macs 1e6 --out " + out.string() + " > /dev/null";
  ASSERT_EQ(std::system(convert.c_str()), 0);
  const auto t = DeviceTrace::load(out.string(), "test");
  ASSERT_EQ(t->rows().size(), 2u);
  // Ascending ids: 3 then 7. macs_per_s = 1e6 * 1000 / ms; rates = kbps * 1000.
  const DeviceRow& r3 = t->rows()[0];
  EXPECT_EQ(r3.device, "3");
  EXPECT_EQ(r3.macs_per_s, 1e6 * 1000.0 / 80.0);
  EXPECT_EQ(r3.uplink_bps, 250500.0);
  EXPECT_EQ(r3.downlink_bps, 250500.0);
  EXPECT_EQ(r3.period_s, 1000.0);
  ASSERT_EQ(r3.online.size(), 1u);
  EXPECT_EQ(r3.online[0], std::make_pair(50.0, 700.0));
  const DeviceRow& r7 = t->rows()[1];
  EXPECT_EQ(r7.device, "7");
  EXPECT_EQ(r7.macs_per_s, 5e7);
  EXPECT_EQ(r7.uplink_bps, 1.5e6);
  EXPECT_EQ(r7.period_s, 600.0);
  ASSERT_EQ(r7.online.size(), 2u);
  EXPECT_EQ(r7.online[1], std::make_pair(300.0, 450.0));
  // A corrupt pickle is refused with exit code 2.
  std::ofstream(d.dir / "bad") << "not a pickle";
  const std::string bad = python + " " + FEDSIM_SOURCE_DIR + "/tools/fedscale_to_fedsim.py --capacity " +
                          (d.dir / "bad").string() + " --reference-macs 1e6 --out " + out.string() + " 2> /dev/null";
  const int rc = std::system(bad.c_str());
  EXPECT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 2);
}

}  // namespace
}  // namespace fedsim
