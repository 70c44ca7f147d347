// Randomized Hadamard rotation before quantization (Suresh et al. 2017
// "Distributed mean estimation with limited communication"; Saha et al.,
// random-subspace / Hadamard embedding): x -> H D x with D random +-1 signs
// and H the orthonormal Walsh-Hadamard matrix spreads a vector's energy so
// every coordinate is about ||x|| / sqrt(block); the quantizer then works on
// a flat vector. The receiver applies the inverse D H (H is symmetric and
// orthonormal) to what the quantizer reconstructs.
//
// The dimension is kept: the inner stage was built for n coordinates, so the
// vector is not padded. It is cut into blocks of `block` coordinates (a power
// of two; setting, default 1024), and the tail of r < block coordinates into
// power-of-two blocks following the binary digits of r, largest first (e.g.
// r = 13 -> 8, 4, 1). Each block gets its own fast Walsh-Hadamard transform,
// O(n log block); a block of 1 gets only its sign. So the map is orthonormal
// for every n; tail coordinates are mixed over smaller blocks.
//
// D is drawn once, at construction, from Rng::derive(shared_seed,
// Stream::kShared, {kSeedTag}): both ends know it, nothing is sent. The
// stage adds no bytes. unbiased() is the inner stage's (the map is linear).
// encode()/decode() throw std::invalid_argument on a vector of another size
// than the one built for. Rotating back can overflow float for values near
// its limit: decode() then throws DecodeError, and encode() (after undoing
// its output) std::invalid_argument, so that the two always agree.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/base/simd.h"
#include "core/compression/compressor.h"

namespace fedsim {

// The map itself, x -> H D x in the blocks described above, shared with the
// random-subspace quantizer (subspace.h), which draws a fresh D per message.
class RandomizedHadamard {
 public:
  struct Block {
    std::size_t offset;
    std::size_t size;
  };

  // D = +1 everywhere until draw_signs(). Throws std::invalid_argument unless
  // block is a power of two.
  RandomizedHadamard(std::size_t dim, std::size_t block);
  // D from 64 draws of rng per 64 coordinates: bit i % 64 of draw i / 64 set = -1.
  void draw_signs(Rng& rng);

  // x <- H D x and its inverse x <- D H x, blockwise, in place.
  void rotate(std::span<float> x) const;
  void unrotate(std::span<float> x) const;
  // out <- H D x (the same floats as rotate(); out must not overlap x unless
  // it is x).
  void rotate(std::span<const float> x, std::span<float> out) const;
  // unrotate(x), then whether every value of x is finite.
  bool unrotate_finite(std::span<float> x) const;
  std::size_t dim() const { return dim_; }
  // The SIMD variant of the butterflies (default simd::best_isa(); a
  // narrower one if the CPU lacks it): every variant gives the same floats.
  void use_isa(simd::Isa isa) { isa_ = isa; }
  const std::vector<Block>& blocks() const { return blocks_; }

 private:
  std::vector<Block> blocks_;
  // D: bit i % 64 of word i / 64 set = -1 (read as bytes, 8 coordinates each).
  const std::uint8_t* sign_bits() const { return reinterpret_cast<const std::uint8_t*>(sign_words_.data()); }
  static_assert(std::endian::native == std::endian::little, "sign bits are read as little-endian bytes");

  std::size_t dim_;
  std::vector<std::uint64_t> sign_words_;
  simd::Isa isa_ = simd::best_isa();
};

class HadamardRotation final : public Compressor {
 public:
  static constexpr std::uint64_t kSeedTag = 0x68616461'6d617264ULL;  // "hadamard"

  HadamardRotation(std::unique_ptr<Compressor> inner, std::size_t dim, std::size_t block, std::uint64_t shared_seed);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return inner_->unbiased(); }
  bool last_skipped() const override { return inner_->last_skipped(); }
  void save(StateWriter& out) const override { inner_->save(out); }
  void restore(StateReader& in) override { inner_->restore(in); }

  // x <- H D x and its inverse x <- D H x, blockwise, in place.
  void rotate(std::span<float> x) const { map_.rotate(x); }
  void unrotate(std::span<float> x) const { map_.unrotate(x); }

  using Block = RandomizedHadamard::Block;
  const std::vector<Block>& blocks() const { return map_.blocks(); }

 private:
  std::unique_ptr<Compressor> inner_;
  RandomizedHadamard map_;
  std::vector<float> rotated_;  // scratch
};

}  // namespace fedsim
