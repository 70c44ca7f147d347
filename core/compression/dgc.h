// Deep Gradient Compression (Lin, Han, Mao, Wang, Dally, ICLR 2018): top-k
// sparsification with the paper's corrections, on the sender:
//   local gradient clipping  g <- g * min(1, clip_norm / ||g||)  (clip_norm 0 = off)
//   momentum correction      u <- m u + g;  v <- v + u
//   sparsification           send the entries of v with |v_i| >= thr, where thr
//                            is estimated on a sample, then exact selection
//   momentum factor masking  u_i <- 0 and v_i <- 0 wherever v_i was sent.
// Here g is the client's update of the round (FedPAQ's x_local - x_server).
// What is not sent stays in v (DGC's local accumulation, i.e. error feedback
// with momentum), so the stage is biased; the receiver only decodes.
//
// Threshold from a sample: S = max(1, ceil(sample n)) coordinates drawn
// uniformly with replacement from the encoder's Rng; thr is the
// ceil(S k / n)-th largest |v_i| among them. Coordinates with |v_i| >= thr
// and v_i != 0 are the candidates; if there are more than k, the k largest
// (ties to the lower index) are sent (the exact selection of the paper's
// hierarchical top-k), else all of them, so a message carries at most k
// entries (fewer when the sample overestimated the threshold). With k = 1
// the largest |v_i| is always a candidate, so the selection is exact.
//
// Settings (stage "dgc"): `k` or `fraction` (default 0.01, as top_k),
// `momentum` m in [0, 1) (default 0.9), `clip_norm` >= 0 (default 0 = off),
// `sample` in (0, 1] (default 0.01).
//
// Wire format: u32 count (at most k), then the sparse entry list of
// sparse_entries.h with `count` entries. DecodeError on a count above k and
// whatever read_sparse_entries rejects. encode() throws std::invalid_argument
// on non-finite input or accumulation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim {

class Dgc final : public Compressor {
 public:
  struct Options {
    std::size_t k = 0;  // 0: use fraction
    double fraction = 0.01;
    double momentum = 0.9;
    double clip_norm = 0.0;
    double sample = 0.01;
  };
  Dgc(std::size_t dim, Options options);

  void encode(std::span<const float> v, Rng& rng, Bytes& out, std::span<float> reconstructed) override;
  void decode(std::span<const std::uint8_t> payload, std::span<float> out) override;
  bool unbiased() const override { return false; }
  void save(StateWriter& out) const override {
    out.begin("dgc");
    out.vec(momentum_);
    out.vec(accumulation_);
  }
  void restore(StateReader& in) override {
    in.begin("dgc");
    in.into(std::span<float>(momentum_));
    in.into(std::span<float>(accumulation_));
  }

  std::size_t k_for(std::size_t n) const;
  // The sender's state: u (momentum) and v (accumulated velocity).
  std::span<const float> momentum() const { return momentum_; }
  std::span<const float> accumulation() const { return accumulation_; }

 private:
  std::size_t dim_;
  Options options_;
  std::vector<float> momentum_;      // u
  std::vector<float> accumulation_;  // v
  std::vector<float> sample_;        // scratch
  std::vector<std::size_t> chosen_;  // scratch
  std::vector<float> values_;        // scratch
};

}  // namespace fedsim
