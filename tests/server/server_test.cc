// The server's steps as a policy composes them: it learns about an update
// only from the UpdateUp bytes, and rejects (and counts) anything corrupt or
// inconsistent with what it dispatched.
#include <gtest/gtest.h>

#include "core/base/errors.h"
#include "server/algorithm.h"
#include "server/round_policy.h"
#include "server/scenario.h"
#include "server/server.h"
#include "server/simulation.h"
#include "wire.pb.h"  // generated from core/wire/wire.proto

namespace fedsim {
namespace {

const char* const kTiny =
    "data: {source: synthetic_classification, train_samples: 400, test_samples: 100, dim: 8, classes: 3}\n"
    "model: {name: softmax_regression}\n"
    "clients: 8\nclients_per_round: 4\nlocal_steps: 2\nbatch_size: 8\nrounds: 3\nthreads: 2\n"
    "output: {progress: false}\n";

struct Dispatched {
  std::unique_ptr<Scenario> scenario;  // the server keeps a reference: must not move
  std::unique_ptr<Server> server;
  std::vector<Flight> flights;
};

Dispatched dispatch_three(const std::string& extra = "") {
  Dispatched d;
  d.scenario = std::make_unique<Scenario>(parse_scenario(std::string(kTiny) + extra, "tiny.yaml"));
  d.server = std::make_unique<Server>(*d.scenario);
  const Broadcast model = d.server->broadcast(1);
  RoundMetrics m;
  d.flights = d.server->dispatch(DispatchPlan{1, 1, 0}, {1, 4, 6}, model, m);
  EXPECT_EQ(m.dropped_offline, 0u);
  EXPECT_EQ(m.dropped_network, 0u);
  return d;
}

TEST(Server, UpdateFieldsComeFromTheWire) {
  Dispatched d = dispatch_three();
  ASSERT_EQ(d.flights.size(), 3u);
  RoundMetrics m;
  wire::UpdateUp up;
  ASSERT_TRUE(up.ParseFromString(d.flights[1].update));
  // The server believes the bytes: a client claiming 1000 samples is weighted by 1000.
  up.set_num_samples(1000);
  up.set_train_loss(7.5f);
  d.flights[1].update = up.SerializeAsString();
  const auto r = d.server->receive(d.flights[1], m);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->header.client, 4u);
  EXPECT_EQ(r->header.num_samples, 1000u);
  EXPECT_EQ(r->header.train_loss, 7.5f);
  EXPECT_EQ(m.rejected, 0u);
}

TEST(Server, CorruptOrInconsistentUpdatesAreRejectedAndCounted) {
  Dispatched d = dispatch_three();
  RoundMetrics m;
  // Truncated bytes.
  Flight truncated = d.flights[0];
  truncated.update.resize(truncated.update.size() / 3);
  EXPECT_FALSE(d.server->receive(truncated, m).has_value());
  // Another round than the one dispatched.
  wire::UpdateUp up;
  ASSERT_TRUE(up.ParseFromString(d.flights[1].update));
  up.set_round(9);
  Flight wrong_round = d.flights[1];
  wrong_round.update = up.SerializeAsString();
  EXPECT_FALSE(d.server->receive(wrong_round, m).has_value());
  // A model version the server never had.
  ASSERT_TRUE(up.ParseFromString(d.flights[2].update));
  up.set_base_version(5);
  Flight future = d.flights[2];
  future.update = up.SerializeAsString();
  EXPECT_FALSE(d.server->receive(future, m).has_value());
  EXPECT_EQ(m.rejected, 3u);
  // The genuine messages still decode.
  for (const Flight& f : d.flights) EXPECT_TRUE(d.server->receive(f, m).has_value());
  EXPECT_EQ(m.rejected, 3u);
}

TEST(Server, CensoredUpdatesAreCounted) {
  Dispatched d = dispatch_three("uplink: [{censoring: {threshold: 0.99}}]\n");
  RoundMetrics m;
  for (const Flight& f : d.flights) ASSERT_TRUE(d.server->receive(f, m).has_value());
  EXPECT_EQ(m.censored, 0u);  // first messages are always sent
}

TEST(Registries, PoliciesAndAlgorithmsAreRegisteredByName) {
  for (const char* p : {"wait_all", "deadline", "over_selection", "async"})
    EXPECT_TRUE(RoundPolicyRegistry::instance().contains(p)) << p;
  for (const char* a : {"fedpaq", "fedvote"}) EXPECT_TRUE(AlgorithmRegistry::instance().contains(a)) << a;
}

TEST(Registries, UnknownPolicyListsTheRegisteredOnes) {
  try {
    parse_scenario(std::string(kTiny) + "server: {policy: lazy}\n", "tiny.yaml");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "tiny.yaml:10: server.policy: expected one of: async, deadline, gossip, over_selection, wait_all, found 'lazy'");
  }
}

TEST(Registries, KeysOfAnotherPolicyAreUnknown) {
  try {
    const Scenario sc = parse_scenario(std::string(kTiny) + "server: {policy: wait_all, deadline_s: 2}\n", "tiny.yaml");
    Server server(sc);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tiny.yaml:10: server.deadline_s: unknown key"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fedsim

namespace fedsim {
namespace {

// Regression: the FedBuff arrival event once captured the dispatch's local
// ModelDown size by reference and read it after dispatch returned (stack
// garbage such as 106927505973368 downlink bytes in the trace). Every
// flight now carries its own.
TEST(FedBuff, TraceRecordsTheModelDownEachClientReceived) {
  const Scenario sc =
      parse_scenario(std::string(kTiny) + "server: {policy: async, buffer_size: 2, concurrency: 3}\n", "tiny.yaml");
  Simulation sim(sc);
  const RunSummary s = sim.run();
  ASSERT_EQ(s.rounds.size(), 3u);
  ASSERT_FALSE(sim.trace().empty());
  // A plain float32 ModelDown: the parameters plus a few bytes of framing
  // (which grow with the model version's varint).
  for (const ArrivalRecord& r : sim.trace()) {
    EXPECT_GT(r.bytes_down, 4u * sim.num_params()) << "client " << r.client;
    EXPECT_LT(r.bytes_down, 4u * sim.num_params() + 32) << "client " << r.client;
  }
}

}  // namespace
}  // namespace fedsim
