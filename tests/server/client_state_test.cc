// The per-client state table of server/client_state.h, checked against the
// types, so that the table (the basis of memory bounds, checkpoints and the
// placement of clients on MPI ranks) cannot drift from the code.
#include <gtest/gtest.h>

#include "clients/client.h"
#include "core/wire/codec_link.h"
#include "server/client_state.h"
#include "server/energy.h"
#include "server/population.h"
#include "server/server.h"

namespace fedsim {
namespace {

TEST(ClientState, FixedSizesMatchTheTable) {
  EXPECT_EQ(sizeof(ClientTraits), 192u);
  EXPECT_EQ(sizeof(ClientEnergy), 72u);
  EXPECT_EQ(sizeof(RadioState), 16u);
  EXPECT_EQ(sizeof(ClientState), 16u);
  EXPECT_EQ(sizeof(SimClient), 40u);
  EXPECT_EQ(sizeof(CodecLink), 32u);
  EXPECT_EQ(sizeof(Participant), 192u);
}

// The bound stated per participating client (stage state excluded): its
// Participant, ClientEnergy and RadioState, each in a std::map node.
TEST(ClientState, ParticipantBoundHolds) {
  constexpr std::size_t kNode = 32;  // libstdc++ _Rb_tree_node_base: colour + parent, left, right
  const std::size_t bytes = kNode + sizeof(std::pair<const std::uint32_t, Participant>) + kNode +
                            sizeof(std::pair<const std::uint32_t, ClientEnergy>) + kNode +
                            sizeof(std::pair<const std::uint32_t, RadioState>);
  EXPECT_EQ(bytes, 408u);
  EXPECT_LT(bytes + 3 * 16, 500u);  // + malloc's header per node
}

}  // namespace
}  // namespace fedsim
