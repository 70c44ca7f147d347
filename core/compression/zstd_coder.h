// Lossless byte coding of the inner stage's payload with Zstandard.
//
// Stage "zstd" (a coder), setting `level` in [1, 19] (default 3). The
// payload is one zstd frame with its content size recorded and no checksum
// (integrity is the transport's job; a corrupted frame either fails to
// decode or yields bytes the inner decoder validates).
// decode() refuses, with DecodeError: anything but exactly one zstd frame
// (bad magic, trailing bytes, skippable frames), a frame without a content
// size, a content size above max_inner_bytes(n) = 8 n + 1024 (more than any
// stage of fedsim produces for n coordinates, so nothing larger is ever
// allocated), and any zstd decompression error. unbiased() is the inner
// stage's.
#pragma once

#include <cstddef>
#include <memory>

#include "core/compression/compressor.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace fedsim {

class ZstdCoder final : public Compressor {
 public:
  ZstdCoder(std::unique_ptr<Compressor> inner, int level);
  ~ZstdCoder() override;
  ZstdCoder(const ZstdCoder&) = delete;
  ZstdCoder& operator=(const ZstdCoder&) = delete;

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return inner_->unbiased(); }
  bool last_skipped() const override { return inner_->last_skipped(); }
  void save(StateWriter& out) const override { inner_->save(out); }
  void restore(StateReader& in) override { inner_->restore(in); }

  static std::size_t max_inner_bytes(std::size_t n) { return 8 * n + 1024; }

 private:
  std::unique_ptr<Compressor> inner_;
  int level_;
  ZSTD_CCtx_s* cctx_;
  ZSTD_DCtx_s* dctx_;
  Bytes inner_bytes_;  // scratch
};

}  // namespace fedsim
