// GenQSGD's model reproduced exactly: scenarios/genqsgd.yaml, run end to
// end, spends the energy and time of the paper's closed forms. The
// accounting switches that match its assumptions are in the scenario:
// payload bits only (accounting: {message_bits: payload}: no protobuf
// framing), no latency (latency_s: 0), no receive energy (rx_j_per_bit: 0),
// QSGD with fixed coding and 2^14 - 1 levels on both links (sign + 14 bits
// per coordinate and one 32-bit norm: M = 32 + D + D log2 2^14), the worker's
// compute as alpha C F^2 per sample (a DVFS profile with the alpha model) and
// the server's as alpha C_0 F_0^2 per round plus p_0 M_0 / r_0 for the
// broadcast (server_energy:). Homogeneous workers, so the paper's max over
// compute plus max over communication equals fedsim's per-client max of
// their sum.
#include <gtest/gtest.h>

#include <cmath>

#include "server/scenario.h"
#include "server/simulation.h"

namespace fedsim {
namespace {

TEST(GenQsgd, TotalEnergyAndTimeEqualThePapersClosedForms) {
  constexpr int kRounds = 4;  // K_0
  const Scenario sc = load_scenario(std::string(FEDSIM_SOURCE_DIR) + "/scenarios/genqsgd.yaml",
                                    {"rounds=" + std::to_string(kRounds), "output.progress=false", "threads=2"});
  Simulation sim(sc);
  const RunSummary run = sim.run();

  // The paper's parameters (homogeneous workers).
  const double N = 10, alpha = 2e-28, C = 1e8, F = 1e9, p = 1.5, r = 5e6;
  const double C0 = 100, F0 = 3e9, p0 = 20, r0 = 75e6;
  const double D = 100'352, s = std::pow(2.0, 14);
  const double M = 32 + D + D * std::log2(s);  // 1,505,312 bits
  const double M0 = M;                          // the broadcast is quantized alike
  const double K0 = kRounds, K = static_cast<double>(sc.training.local_steps), B = static_cast<double>(sc.training.batch_size);
  ASSERT_EQ(sim.num_params(), 100'352u);
  ASSERT_EQ(sc.num_clients, 10u);
  ASSERT_EQ(sc.clients_per_round, 10u);

  const double E = K0 * (B * N * alpha * C * F * F * K + alpha * C0 * F0 * F0 + N * p * M / r + p0 * M0 / r0);
  const double T = K0 * (B * C * K / F + C0 / F0 + M / r + M0 / r0);

  double client_j = 0.0, server_j = 0.0, compute_j = 0.0, tx_j = 0.0;
  for (const RoundMetrics& m : run.rounds) {
    client_j += m.energy.total_j();
    server_j += m.server_j;
    compute_j += m.energy.compute_j;
    tx_j += m.energy.tx_j;
    EXPECT_EQ(m.clients, 10u);
  }
  ASSERT_EQ(run.rounds.size(), static_cast<std::size_t>(kRounds));
  // The parts: B K alpha C F^2 = 4 * 2 * 0.02 = 0.16 J per worker and round;
  // p M / r = 1.5 * 1,505,312 / 5e6 = 0.4515936 J per upload.
  EXPECT_NEAR(compute_j, K0 * N * B * K * alpha * C * F * F, 1e-12 * E);
  EXPECT_NEAR(tx_j, K0 * N * p * M / r, 1e-12 * E);
  EXPECT_NEAR(server_j, K0 * (alpha * C0 * F0 * F0 + p0 * M0 / r0), 1e-12 * E);
  EXPECT_NEAR(client_j + server_j, E, 1e-12 * E);
  EXPECT_NEAR(run.energy_j + run.server_energy_j, E, 1e-12 * E);
  EXPECT_NEAR(run.sim_time_s, T, 1e-12 * T);
}

}  // namespace
}  // namespace fedsim
