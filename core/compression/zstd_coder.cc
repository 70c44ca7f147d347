#include "core/compression/zstd_coder.h"

#include <zstd.h>

#include <stdexcept>
#include <string>

#include "core/base/errors.h"

namespace fedsim {

ZstdCoder::ZstdCoder(std::unique_ptr<Compressor> inner, int level)
    : inner_(std::move(inner)), level_(level), cctx_(ZSTD_createCCtx()), dctx_(ZSTD_createDCtx()) {
  if (!cctx_ || !dctx_) {
    ZSTD_freeCCtx(cctx_);
    ZSTD_freeDCtx(dctx_);
    throw std::bad_alloc();
  }
}

ZstdCoder::~ZstdCoder() {
  ZSTD_freeCCtx(cctx_);
  ZSTD_freeDCtx(dctx_);
}

void ZstdCoder::encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) {
  inner_bytes_.clear();
  inner_->encode(v, rng, inner_bytes_, reconstructed);
  const std::size_t start = out.size();
  const std::size_t bound = ZSTD_compressBound(inner_bytes_.size());
  out.resize(start + bound);
  const std::size_t written =
      ZSTD_compressCCtx(cctx_, out.data() + start, bound, inner_bytes_.data(), inner_bytes_.size(), level_);
  if (ZSTD_isError(written)) throw std::runtime_error(std::string("zstd: compression failed: ") + ZSTD_getErrorName(written));
  out.resize(start + written);
}

void ZstdCoder::decode(std::span<const std::uint8_t> payload, std::span<float> out) {
  const std::size_t cap = max_inner_bytes(out.size());
  if (payload.size() < 4) throw DecodeError("zstd payload of " + std::to_string(payload.size()) + " bytes is too short");
  const std::uint32_t magic = static_cast<std::uint32_t>(payload[0]) | static_cast<std::uint32_t>(payload[1]) << 8 |
                              static_cast<std::uint32_t>(payload[2]) << 16 | static_cast<std::uint32_t>(payload[3]) << 24;
  if (magic != ZSTD_MAGICNUMBER) throw DecodeError("zstd payload does not start with a zstd frame");
  const unsigned long long content = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (content == ZSTD_CONTENTSIZE_ERROR) throw DecodeError("zstd payload has a malformed frame header");
  if (content == ZSTD_CONTENTSIZE_UNKNOWN) throw DecodeError("zstd frame does not record its content size");
  if (content > cap)
    throw DecodeError("zstd frame claims " + std::to_string(content) + " bytes, more than the " + std::to_string(cap) +
                      " any stage produces for " + std::to_string(out.size()) + " coordinates");
  const std::size_t frame = ZSTD_findFrameCompressedSize(payload.data(), payload.size());
  if (ZSTD_isError(frame)) throw DecodeError(std::string("zstd payload is malformed: ") + ZSTD_getErrorName(frame));
  if (frame != payload.size())
    throw DecodeError("zstd payload has " + std::to_string(payload.size() - frame) + " bytes after its frame");
  inner_bytes_.resize(static_cast<std::size_t>(content));
  const std::size_t got = ZSTD_decompressDCtx(dctx_, inner_bytes_.data(), inner_bytes_.size(), payload.data(), payload.size());
  if (ZSTD_isError(got)) throw DecodeError(std::string("zstd payload does not decompress: ") + ZSTD_getErrorName(got));
  if (got != content)
    throw DecodeError("zstd frame decompressed to " + std::to_string(got) + " bytes, its header says " +
                      std::to_string(content));
  inner_->decode(inner_bytes_, out);
}

namespace {

FEDSIM_REGISTER_STAGE(
    "zstd", StageKind::kCoder,
    [](const Config& settings, StageContext& ctx) -> std::unique_ptr<Compressor> {
      const int level = static_cast<int>(settings.get_int("level", 3, 1, 19));
      return std::make_unique<ZstdCoder>(std::move(ctx.inner), level);
    },
    "lossless Zstandard coding of the quantizer's bytes (level 1..19, default 3)");

}  // namespace
}  // namespace fedsim
