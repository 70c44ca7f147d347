// The per-client state table of server/client_state.h, checked against the
// types, so that the table (the basis of memory bounds, checkpoints and the
// placement of clients on MPI ranks) cannot drift from the code.
#include <gtest/gtest.h>

#include "clients/client.h"
#include "core/wire/codec_link.h"
#include "server/client_state.h"
#include "server/energy.h"
#include "server/population.h"

namespace fedsim {
namespace {

TEST(ClientState, FixedSizesMatchTheTable) {
  EXPECT_EQ(sizeof(ClientTraits), 192u);
  EXPECT_EQ(sizeof(ClientEnergy), 72u);
  EXPECT_EQ(sizeof(RadioState), 16u);
  EXPECT_EQ(sizeof(ClientState), 16u);
  EXPECT_EQ(sizeof(SimClient), 40u);
  EXPECT_EQ(sizeof(CodecLink), 32u);
}

}  // namespace
}  // namespace fedsim
