#include "core/compression/sign_compressor.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/coding/bit_io.h"

namespace fedsim {

void SignCompressor::encode(std::span<const float> v, Rng&, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = v.size();
  double l1 = 0.0;
  for (float x : v) l1 += std::fabs(static_cast<double>(x));
  const float scale = n == 0 ? 0.0f : static_cast<float>(l1 / static_cast<double>(n));
  if (!std::isfinite(scale)) throw std::invalid_argument("sign: input is not finite or its mean |v_i| overflows float");
  const std::size_t start = out.size();
  out.reserve(start + payload_bytes(n));
  put_f32(out, scale);
  out.resize(start + payload_bytes(n), 0);
  std::uint8_t* bits = out.data() + start + 4;
  for (std::size_t i = 0; i < n; ++i) {
    const bool negative = v[i] < 0.0f;
    bits[i >> 3] |= static_cast<std::uint8_t>(static_cast<unsigned>(negative) << (i & 7));
    reconstructed[i] = negative ? -scale : scale;
  }
}

void SignCompressor::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  if (payload.size() != payload_bytes(n))
    throw DecodeError("sign payload has " + std::to_string(payload.size()) + " bytes, expected " +
                      std::to_string(payload_bytes(n)));
  ByteReader header(payload.first(4));
  const float scale = header.f32();
  if (!std::isfinite(scale) || !(scale >= 0.0f))
    throw DecodeError("sign payload has scale " + std::to_string(scale) + ", expected a finite value >= 0");
  const std::uint8_t* bits = payload.data() + 4;
  if (n % 8 != 0 && (bits[n / 8] >> (n % 8)) != 0) throw DecodeError("sign payload has non-zero padding bits");
  for (std::size_t i = 0; i < n; ++i) out[i] = ((bits[i >> 3] >> (i & 7)) & 1) ? -scale : scale;
}

namespace {

FEDSIM_REGISTER_STAGE(
    "sign", StageKind::kQuantizer,
    [](const Config&, StageContext&) -> std::unique_ptr<Compressor> { return std::make_unique<SignCompressor>(); },
    "scaled sign (||v||_1/n) sgn(v_i): 1 bit per coordinate + one float; biased, use with error_feedback");

}  // namespace
}  // namespace fedsim
