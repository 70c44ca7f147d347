#include "core/natural_compression.h"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/bit_io.h"

namespace fedsim {
namespace {

static_assert(std::endian::native == std::endian::little, "the 9-bit packing below assumes little endian");

// One coordinate: float bits + 23 random bits -> 9-bit code (exponent | sign << 8).
inline std::uint32_t nat_code(std::uint32_t bits, std::uint32_t random23, std::uint32_t& bad) {
  const std::uint32_t exponent = (bits >> 23) & 0xFFu;
  const std::uint32_t mantissa = bits & 0x7FFFFFu;
  bad |= exponent == 0xFFu ? 1u : 0u;
  std::uint32_t e = exponent + (random23 < mantissa ? 1u : 0u);
  e -= e == 0xFFu ? 1u : 0u;  // 2^128 is not a float: clamp to 2^127
  return e | ((bits >> 31) << 8);
}

inline float nat_value(std::uint32_t code) { return std::bit_cast<float>(((code & 0xFFu) << 23) | ((code >> 8) << 31)); }

}  // namespace

void NaturalCompression::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  if (v.size() != dim_ || reconstructed.size() != dim_)
    throw std::invalid_argument("natural: vector size mismatch");
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(dim_));
  std::uint8_t* dst = out.data() + start;
  const float* x = v.data();
  float* rec = reconstructed.data();
  std::uint32_t bad = 0;
  std::size_t i = 0;
  // Eight coordinates are 72 bits: 8 bytes + 1, no state carried over.
  for (; i + 8 <= dim_; i += 8, dst += 9) {
    std::uint32_t code[8];
    for (int k = 0; k < 8; k += 2) {
      const std::uint64_t r = rng();
      std::uint32_t b0, b1;
      std::memcpy(&b0, x + i + k, 4);
      std::memcpy(&b1, x + i + k + 1, 4);
      code[k] = nat_code(b0, static_cast<std::uint32_t>(r) & 0x7FFFFFu, bad);
      code[k + 1] = nat_code(b1, static_cast<std::uint32_t>(r >> 32) & 0x7FFFFFu, bad);
    }
    std::uint64_t lo = 0;
    for (int k = 0; k < 8; ++k) {
      lo |= static_cast<std::uint64_t>(code[k]) << (9 * k);
      rec[i + k] = nat_value(code[k]);
    }
    std::memcpy(dst, &lo, 8);
    dst[8] = static_cast<std::uint8_t>(code[7] >> 1);
  }
  if (i < dim_) {
    std::uint64_t acc = 0;
    int filled = 0;
    for (; i < dim_; i += 2) {
      const std::uint64_t r = rng();
      for (std::size_t k = i; k < i + 2 && k < dim_; ++k) {
        std::uint32_t b;
        std::memcpy(&b, x + k, 4);
        const std::uint32_t c = nat_code(b, static_cast<std::uint32_t>(r >> (k == i ? 0 : 32)) & 0x7FFFFFu, bad);
        rec[k] = nat_value(c);
        acc |= static_cast<std::uint64_t>(c) << filled;
        filled += 9;
      }
    }
    // At most 7 codes = 63 bits remain.
    for (; filled > 0; filled -= 8, acc >>= 8) *dst++ = static_cast<std::uint8_t>(acc);
  }
  if (bad) {
    out.resize(start);
    throw std::invalid_argument("natural: non-finite input");
  }
}

void NaturalCompression::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  if (out.size() != dim_) throw std::invalid_argument("natural: output size mismatch");
  if (payload.size() != payload_bytes(dim_))
    throw DecodeError("natural: payload has " + std::to_string(payload.size()) + " bytes, expected " +
                      std::to_string(payload_bytes(dim_)));
  const std::uint8_t* src = payload.data();
  float* dst = out.data();
  std::uint32_t bad = 0;
  std::size_t i = 0;
  for (; i + 8 <= dim_; i += 8, src += 9) {
    std::uint64_t lo;
    std::memcpy(&lo, src, 8);
    for (int k = 0; k < 7; ++k) {
      const auto c = static_cast<std::uint32_t>(lo >> (9 * k)) & 0x1FFu;
      bad |= (c & 0xFFu) == 0xFFu ? 1u : 0u;
      dst[i + k] = nat_value(c);
    }
    const std::uint32_t c7 = static_cast<std::uint32_t>(lo >> 63) | (static_cast<std::uint32_t>(src[8]) << 1);
    bad |= (c7 & 0xFFu) == 0xFFu ? 1u : 0u;
    dst[i + 7] = nat_value(c7);
  }
  if (i < dim_) {
    BitReader r(payload.subspan(static_cast<std::size_t>(src - payload.data())));
    for (; i < dim_; ++i) {
      const auto c = static_cast<std::uint32_t>(r.read(9));
      bad |= (c & 0xFFu) == 0xFFu ? 1u : 0u;
      dst[i] = nat_value(c);
    }
    r.expect_end();
  }
  if (bad) throw DecodeError("natural: exponent field 255 (infinity / NaN) in payload");
}

namespace {

FEDSIM_REGISTER_STAGE(
    "natural", StageKind::kQuantizer,
    [](const Config&, StageContext& ctx) -> std::unique_ptr<Compressor> {
      return std::make_unique<NaturalCompression>(ctx.dim);
    },
    "natural compression C_nat (Horvath et al. 2019): stochastic rounding to powers of two, 9 bits; unbiased");

}  // namespace
}  // namespace fedsim
