// The uncompressed baseline: 32 bits per coordinate, little-endian.
// Values must be finite, as for every other stage: encode() throws
// std::invalid_argument on a NaN or infinity, decode() a DecodeError (so a
// corrupted exponent field cannot hand the receiver a non-finite update).
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "core/coding/bit_io.h"
#include "core/compression/compressor.h"

namespace fedsim {
namespace {

class Float32 final : public Compressor {
 public:
  void encode(std::span<const float> v, Rng&, Bytes& out, std::span<float> reconstructed) override {
    for (float x : v)
      if (!std::isfinite(x)) throw std::invalid_argument("float32: input is not finite");
    const std::size_t start = out.size();
    out.resize(start + v.size() * sizeof(float));
    std::memcpy(out.data() + start, v.data(), v.size() * sizeof(float));
    std::copy(v.begin(), v.end(), reconstructed.begin());
  }
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override {
    if (payload.size() != out.size() * sizeof(float))
      throw DecodeError("float32 payload has " + std::to_string(payload.size()) + " bytes, expected " +
                        std::to_string(out.size() * sizeof(float)));
    std::memcpy(out.data(), payload.data(), payload.size());
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!std::isfinite(out[i])) throw DecodeError("float32 payload has a non-finite value at " + std::to_string(i));
  }
  bool unbiased() const override { return true; }
};

FEDSIM_REGISTER_STAGE(
    "float32", StageKind::kQuantizer,
    [](const Config&, StageContext&) -> std::unique_ptr<Compressor> { return std::make_unique<Float32>(); },
    "no compression: 32 bits per coordinate");

}  // namespace
}  // namespace fedsim
