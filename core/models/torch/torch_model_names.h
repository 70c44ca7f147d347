// The names the LibTorch models register under (ModelRegistry, in
// core/models/torch/*.cc), for code that must know them without linking
// LibTorch: the golden test runs the scenarios of these models in its own
// executable (tests/server/golden_test.cc). A test checks that each is
// registered in builds with LibTorch.
#pragma once

#include <array>
#include <string_view>

namespace fedsim {

inline constexpr std::array<std::string_view, 2> kTorchModelNames = {"cnn", "torchscript"};

}  // namespace fedsim
