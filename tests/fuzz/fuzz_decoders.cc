// Every stage's decoder must turn any bytes into finite values or a
// DecodeError. Input layout:
//   byte 0     which pipeline (tests/core/compression/stage_pipelines.h: every registered
//              stage alone and composed)
//   bytes 1-2  the dimension, 1 + (little-endian value % 300)
//   byte 3     bit 0: two layers instead of one (the first a 3 x (n / 9)
//              matrix from n = 18 on, for powersgd); bit 1: the receiver first
//              decodes a genuine payload, so stateful stages (censoring,
//              predictive coding) have history; bit 2: decode the input twice
//   the rest   the payload
// A non-finite decoded value aborts (a crash for libFuzzer), like any
// exception other than DecodeError.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "core/compression/pipeline.h"
#include "core/base/config.h"
#include "core/base/errors.h"
#include "tests/core/compression/stage_pipelines.h"

namespace {

const std::vector<fedsim::PipelineSpec>& specs() {
  static const std::vector<fedsim::PipelineSpec> all = [] {
    std::vector<fedsim::PipelineSpec> out;
    for (const std::string& stages : fedsim::testing_pipelines::all())
      out.push_back(fedsim::PipelineSpec::parse(fedsim::Config::parse_string("uplink: [" + stages + "]\n"), "uplink"));
    return out;
  }();
  return all;
}

void decode_checked(fedsim::Compressor& decoder, std::span<const std::uint8_t> payload, std::span<float> out) {
  try {
    decoder.decode(payload, out);
  } catch (const fedsim::DecodeError&) {
    return;
  }
  for (float x : out)
    if (!std::isfinite(x)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  const auto& all = specs();
  const fedsim::PipelineSpec& spec = all[data[0] % all.size()];
  const std::size_t n = 1 + (static_cast<std::size_t>(data[1] | data[2] << 8) % 300);
  const std::uint8_t mode = data[3];
  std::vector<fedsim::Layer> layers{fedsim::Layer{"all", 0, n}};
  if ((mode & 1) && n >= 18)
    layers = {fedsim::Layer{"a", 0, 3 * (n / 9), 3, n / 9}, fedsim::Layer{"b", 3 * (n / 9), n - 3 * (n / 9)}};
  else if ((mode & 1) && n >= 4)
    layers = {fedsim::Layer{"a", 0, n / 3}, fedsim::Layer{"b", n / 3, n - n / 3}};
  constexpr std::uint64_t kSharedSeed = 0x5eed;
  auto decoder = spec.make(n, layers, kSharedSeed);
  std::vector<float> out(n);
  if (mode & 2) {
    auto encoder = spec.make(n, layers, kSharedSeed);
    fedsim::Rng rng(n);
    std::vector<float> v(n), rec(n);
    for (float& x : v) x = static_cast<float>(rng.normal());
    fedsim::Bytes genuine;
    encoder->encode(v, rng, genuine, rec);
    decoder->decode(genuine, out);
  }
  const std::span<const std::uint8_t> payload(data + 4, size - 4);
  decode_checked(*decoder, payload, out);
  if (mode & 4) decode_checked(*decoder, payload, out);
  return 0;
}
