#include "core/base/rng.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fedsim {

TEST(Rng, DerivedStreamsAreReproducibleAndDistinct) {
  Rng a = Rng::derive(7, Stream::kTraining, {3, 5});
  Rng b = Rng::derive(7, Stream::kTraining, {3, 5});
  Rng c = Rng::derive(7, Stream::kTraining, {5, 3});
  for (int i = 0; i < 100; ++i) {
    const auto x = a();
    EXPECT_EQ(x, b());
    EXPECT_NE(x, c());
  }
}

TEST(Rng, UniformAndNormalMoments) {
  Rng rng(42);
  const int n = 200000;
  double sum = 0, sum2 = 0, nsum = 0, nsum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum2 += u * u;
    const double z = rng.normal();
    nsum += z;
    nsum2 += z * z;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum2 / n - 0.25, 1.0 / 12.0 - 0.0, 0.005);
  EXPECT_NEAR(nsum / n, 0.0, 0.01);
  EXPECT_NEAR(nsum2 / n, 1.0, 0.02);
}

TEST(Rng, BelowIsUniform) {
  Rng rng(1);
  int counts[7] = {};
  for (int i = 0; i < 70000; ++i) counts[rng.below(7)]++;
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
}

TEST(Rng, GammaMeanEqualsShape) {
  Rng rng(3);
  for (double shape : {0.3, 1.0, 4.5}) {
    double sum = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) sum += rng.gamma(shape);
    EXPECT_NEAR(sum / n, shape, 0.03 * shape + 0.01) << shape;
  }
}

}  // namespace fedsim
