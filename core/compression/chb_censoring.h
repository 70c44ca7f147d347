// CHB's censoring rule (censored heavy ball: Chen, Blum, Takac, Sadler): a
// worker sends its new gradient only if it differs enough from the last one
// it sent, measured against the model's last movement, and the server reuses
// the last one otherwise (the server's heavy-ball step is the optimizer's,
// clients/optimizer_sgd.cc `momentum`).
//
// Rule: skip when ||v - s||^2 < threshold * ||x_t - x_{t-1}||^2, s = the last
// vector the receiver reconstructed (zero before the first message). The
// movement comes from the sender (Compressor::set_model_movement; the client
// keeps the model of its previous round, so this is x_t - x_{t-1} when it
// takes part in every round, as CHB's workers do). Without a movement (the
// client's first round) the vector is sent. The paper's threshold sums the
// last D movements with weights xi_d / (alpha^2 M^2); fedsim takes D = 1 and
// folds the constants into `threshold` (>= 0, default 1; 0 never skips).
// Unlike `censoring` (relative to ||v||^2), this threshold shrinks as the
// model settles, so a converging run still sends what moves the model.
//
// Stage "chb_censoring" (a transform, first in the uplink: only the
// outermost stage learns the movement). Wire format as `censoring`: one
// marker byte, 0 = skipped (nothing follows; the result is s), 1 = sent (the
// inner stage's payload follows; the result becomes the new s). Decoding
// throws DecodeError on an empty payload, another marker, bytes after a skip
// marker, or whatever the inner stage rejects (s then unchanged).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/compression/censoring.h"
#include "core/compression/compressor.h"

namespace fedsim {

class ChbCensoring final : public CensoringBase {
 public:
  ChbCensoring(std::unique_ptr<Compressor> inner, std::size_t dim, double threshold);
  void set_model_movement(double squared_norm) override { movement_sq_ = squared_norm; }

 private:
  bool skip(std::span<const float> v, double change_sq) override;
  double threshold_;
  double movement_sq_ = -1.0;  // < 0: unknown (send)
};

}  // namespace fedsim
