// Censoring (lazy aggregation; CHB, censored heavy ball; LAG, Chen et al.
// 2018): a sender skips a message when its vector has changed little since
// the last one it sent, and the receiver reuses that last one.
//
// Rule: skip when ||v - s||^2 <= threshold * ||v||^2, s = the last vector the
// receiver reconstructed (zero before the first message, so a non-zero first
// vector is always sent). Norms are accumulated in double. Relative to
// ||v||^2 so that one setting fits any scale; threshold in [0, 1) (with 1 or
// more a sender could stay silent forever), default 0.01, i.e. skip when the
// change is within 10% of ||v|| in norm.
//
// Stage "censoring" (a transform). Wire format: one marker byte, 0 = skipped
// (nothing follows; the result is s), 1 = sent (the inner stage's payload
// follows; the result becomes the new s). Both ends keep s; they stay in step
// because the receiver decodes every payload the sender produced. Decoding
// throws DecodeError on an empty payload, another marker, bytes after a skip
// marker, or whatever the inner stage rejects (then s is left unchanged).
// unbiased() is false.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

// The skip protocol both censoring rules share (this one and chb_censoring):
// the marker byte, the last sent vector kept on both ends, decoding and its
// checks. A rule only says when to skip.
class CensoringBase : public Compressor {
 public:
  static constexpr std::uint8_t kSkipped = 0;
  static constexpr std::uint8_t kSent = 1;

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) final;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) final;
  bool unbiased() const override { return false; }

  // Whether the last encode() or decode() was a skip (for counting censored messages).
  bool last_skipped() const override { return last_skipped_; }
  std::span<const float> last_sent() const { return last_sent_; }
  void save(StateWriter& out) const override {
    out.begin(name_);
    out.vec(last_sent_);
    out.put(last_skipped_);
    inner_->save(out);
  }
  void restore(StateReader& in) override {
    in.begin(name_);
    in.into(std::span<float>(last_sent_));
    last_skipped_ = in.get<bool>();
    inner_->restore(in);
  }

 protected:
  // `name` (a string literal) names the stage in errors.
  CensoringBase(const char* name, std::unique_ptr<Compressor> inner, std::size_t dim);
  // Whether encode() skips `v`, whose squared distance (in double) from the
  // last sent vector is `change_sq`. Called once per encode().
  virtual bool skip(std::span<const float> v, double change_sq) = 0;

 private:
  const char* name_;
  std::unique_ptr<Compressor> inner_;
  std::vector<float> last_sent_;
  bool last_skipped_ = false;
};

class Censoring final : public CensoringBase {
 public:
  Censoring(std::unique_ptr<Compressor> inner, std::size_t dim, double threshold);

 private:
  bool skip(std::span<const float> v, double change_sq) override;
  double threshold_;
};

}  // namespace fedsim
