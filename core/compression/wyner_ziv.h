// Wyner-Ziv coding with historical side information: nested (modulo, coset)
// dithered scalar quantization, the decoder's side information being its last
// decoded update from this client (the state both ends keep, like predictive
// coding's history).
//
// The scalar code (Zamir & Shamai 1998 nested lattices, in one dimension):
// with step Delta, a dither u uniform in [0, 1) both ends know and a modulus M,
//   encoder  m = round(x / Delta + u), sends k = m mod M          (log2 M bits)
//   decoder  m^ = the integer congruent to k mod M nearest y / Delta + u,
//            x^ = Delta (m^ - u).
// Whenever |x - y| < (M - 1) Delta / 2, m^ = m and x^ is exactly the plain
// subtractive-dithered quantization Delta (m - u) of x (unbiased, error
// uniform in [-Delta/2, Delta/2]); beyond it m^ = m + j M for some j != 0, a
// wrap-around error of a multiple of M Delta (tested, wz_index/wz_decode).
//
// The stage never lets a wrap happen: the encoder knows the side information
// too, so per block of `block` coordinates it picks the smallest M = 2^w with
// which every coordinate of the block decodes exactly (checked by running the
// decoder's arithmetic), and sends w. Per layer it scales the side
// information by alpha = <x, y> / <y, y> (least squares, sent), and per block
// it uses the side information only if that needs fewer bits than without
// (y = 0). Delta is the plain `bits`-bit quantizer's: 2 max|x| / (2^bits - 2)
// per layer, so without side information w <= bits always suffices; with it
// the bits per coordinate fall by about log2(max|x| / max|x - alpha y|) per
// block. The distortion is the plain quantizer's either way (same Delta, same
// dither): the side information only saves bits.
// A decoder whose side information is not the encoder's (a lost or rejected
// message) cannot decode: every message carries a 32-bit hash of the side
// information it was coded against, and a mismatch is a DecodeError (the
// error is detected, not silently wrapped). The simulator decodes every
// message a client sends, late ones included, so the two ends stay in step.
//
// Settings (stage "wyner_ziv"): `bits` in [2, 16] (default 4; the plain
// quantizer's resolution), `block` >= 1 (default 256), `side_information`
// last | none (default last; none is the same quantizer without side
// information, for comparison).
//
// Wire format: u32 nonce (the dither is Rng::derive(shared_seed, kShared,
// {kSeedTag, nonce}), one uniform() per coordinate), u32 hash of the side
// information, then per layer f32 Delta (finite, >= 0) and f32 alpha
// (finite), then one bit stream: for each layer with Delta > 0, for each
// block a flag bit (side information used) and w - 1 in 5 bits (w <= 24),
// then the block's k, w bits each; zero-padded to a byte. DecodeError on a
// truncated or oversized payload, a hash mismatch, a bad Delta, alpha or w,
// or a non-finite reconstruction. Unbiased (subtractive dither).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

// The scalar nested code. Arithmetic in double; `dither` in [0, 1).
std::int64_t wz_quantize(double x, double step, double dither);               // m
std::uint64_t wz_index(std::int64_t m, int modulus_bits);                     // k = m mod 2^w
std::int64_t wz_decode_index(std::uint64_t k, int modulus_bits, double y, double step, double dither);  // m^
float wz_value(std::int64_t m, double step, double dither);                   // Delta (m - u), rounded to float

class WynerZiv final : public Compressor {
 public:
  static constexpr std::uint64_t kSeedTag = 0x77796e65'727a6976ULL;  // "wynerziv"
  static constexpr int kMaxWidth = 24;

  WynerZiv(std::size_t dim, std::vector<Layer> layers, int bits, std::size_t block, bool use_side_information,
           std::uint64_t shared_seed);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return true; }
  void save(StateWriter& out) const override {
    out.begin("wyner_ziv");
    out.vec(side_);
    out.put<std::uint64_t>(last_side_coordinates_);
  }
  void restore(StateReader& in) override {
    in.begin("wyner_ziv");
    in.into(std::span<float>(side_));
    last_side_coordinates_ = static_cast<std::size_t>(in.get<std::uint64_t>());
  }

  // The side information: the last update decoded (0 before the first).
  std::span<const float> side_information() const { return side_; }
  // Of the last encode()/decode(): coordinates coded with side information.
  std::size_t last_side_coordinates() const { return last_side_coordinates_; }

 private:
  void draw_dither(std::uint32_t nonce);
  std::uint32_t side_hash() const;

  std::size_t dim_;
  std::vector<Layer> layers_;
  int bits_;
  std::size_t block_;
  bool use_side_;
  std::uint64_t shared_seed_;
  std::vector<float> side_;      // y, the same on both ends
  std::vector<double> dither_;   // scratch, per message
  std::vector<float> scratch_;
  std::vector<std::int64_t> m_;  // scratch: the encoder's indices
  std::size_t last_side_coordinates_ = 0;
};

}  // namespace fedsim
