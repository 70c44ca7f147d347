#include "core/compression/fedvote_quantizer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/base/errors.h"

namespace fedsim {
namespace {

constexpr int kTritsPerByte = 5;
constexpr std::uint8_t kPow3[kTritsPerByte + 1] = {1, 3, 9, 27, 81, 243};
constexpr float kTritValue[3] = {0.0f, 1.0f, -1.0f};

void check_size(const char* scheme, std::size_t got, std::size_t expected) {
  if (got != expected)
    throw DecodeError(std::string(scheme) + " payload has " + std::to_string(got) + " bytes, expected " +
                      std::to_string(expected));
}

}  // namespace

void FedVoteBinary::encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = h.size();
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(n), 0);
  std::uint8_t* bytes = out.data() + start;
  for (std::size_t i = 0; i < n; ++i) {
    // P(+1) = (1 + w) / 2 gives E[vote] = w. A NaN h votes -1.
    const float p_plus = 0.5f * (1.0f + std::tanh(k_ * h[i]));
    const bool plus = rng.uniform_float() < p_plus;
    bytes[i >> 3] |= static_cast<std::uint8_t>(plus) << (i & 7);
    reconstructed[i] = plus ? 1.0f : -1.0f;
  }
}

void FedVoteBinary::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  check_size("fedvote_binary", payload.size(), payload_bytes(n));
  if (n % 8 != 0 && (payload.back() >> (n % 8)) != 0)
    throw DecodeError("fedvote_binary payload has non-zero padding bits");
  for (std::size_t i = 0; i < n; ++i) out[i] = ((payload[i >> 3] >> (i & 7)) & 1) ? 1.0f : -1.0f;
}

void FedVoteTernary::encode(std::span<const float> h, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  const std::size_t n = h.size();
  const std::size_t start = out.size();
  out.resize(start + payload_bytes(n), 0);
  std::uint8_t* bytes = out.data() + start;
  for (std::size_t i = 0; i < n; ++i) {
    // Non-zero with probability |w|, with the sign of w (= sgn h): E[vote] = w.
    // A NaN h votes 0.
    const float w = std::tanh(k_ * h[i]);
    const bool nonzero = rng.uniform_float() < std::fabs(w);
    const int trit = nonzero ? (w > 0.0f ? 1 : 2) : 0;
    bytes[i / kTritsPerByte] += static_cast<std::uint8_t>(trit * kPow3[i % kTritsPerByte]);
    reconstructed[i] = kTritValue[trit];
  }
}

void FedVoteTernary::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t n = out.size();
  check_size("fedvote_ternary", payload.size(), payload_bytes(n));
  for (std::size_t b = 0; b < payload.size(); ++b) {
    const std::size_t first = b * kTritsPerByte;
    const int count = static_cast<int>(std::min<std::size_t>(kTritsPerByte, n - first));
    unsigned value = payload[b];
    if (value >= kPow3[count])
      throw DecodeError("fedvote_ternary payload byte " + std::to_string(b) + " = " + std::to_string(value) +
                        " is not a base-3 group of " + std::to_string(count) + " votes");
    for (int j = 0; j < count; ++j) {
      out[first + static_cast<std::size_t>(j)] = kTritValue[value % 3];
      value /= 3;
    }
  }
}

namespace {

float read_k(const Config& settings) {
  return static_cast<float>(settings.get_double("k", 1.5, 1e-3, 1e3));
}

FEDSIM_REGISTER_STAGE(
    "fedvote_binary", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      return std::make_unique<FedVoteBinary>(read_k(settings));
    },
    "FedVote: input latent weights h, votes +-1 with P(+1) = (1 + tanh(k h)) / 2; 1 bit per weight");

FEDSIM_REGISTER_STAGE(
    "fedvote_ternary", StageKind::kQuantizer,
    [](const Config& settings, StageContext&) -> std::unique_ptr<Compressor> {
      return std::make_unique<FedVoteTernary>(read_k(settings));
    },
    "FedVote ternary: input latent weights h, vote sgn(h) with P = |tanh(k h)|, else 0; 1.6 bits per weight");

}  // namespace
}  // namespace fedsim
