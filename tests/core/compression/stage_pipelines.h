// The compression pipelines the decoder tests and the decoder fuzz target
// exercise: every stage registered in StageRegistry, alone and composed the
// ways a scenario may compose it, plus non-default settings worth covering.
// Generated from the registry, so a new stage is covered once it registers.
#pragma once

#include <string>
#include <vector>

#include "core/compression/compressor.h"

namespace fedsim::testing_pipelines {

inline std::vector<std::string> all() {
  std::vector<std::string> out;
  for (const auto& [name, entry] : StageRegistry::instance().entries()) {
    switch (entry.meta) {
      case StageKind::kQuantizer:
        out.push_back(name);
        out.push_back("error_feedback, " + name);
        out.push_back(name + ", zstd");
        out.push_back("{hadamard_rotation: {block: 8}}, " + name);
        out.push_back("censoring, " + name);
        break;
      case StageKind::kTransform:
        out.push_back(name);  // around float32
        out.push_back(name + ", qsgd");
        out.push_back(name + ", {top_k: {k: 2}}, zstd");
        break;
      case StageKind::kCoder:
        out.push_back(name);  // around float32
        out.push_back("qsgd, " + name);
        out.push_back("sign, " + name);
        break;
    }
  }
  for (const char* variant : {
           "{qsgd: {levels: 3, bucket: 5, coding: fixed}}",
           "{qsgd: {levels: 255, norm: max}}",
           "{terngrad: {clip: 2.5}}",
           "{natural_dithering: {levels: 3, norm_p: inf, bucket: 5}}",
           "{top_k: {fraction: 0.3}}",
           "{rand_k: {k: 3}}",
           "{threshold: {threshold: 0.3, levels: 9}}",
           "{threshold: {relative: 0, levels: 2}}",
           "{log_quant: {base: 1.5, bits: 8, relative: 0.05}}",
           "{log_quant: {bits: 1}}",
           "{predictive_coding: {bits: [2, 12], predictors: [last, lms]}}",
           "{fedvote_ternary: {k: 3}}",
           "{censoring: {threshold: 0}}, sign",
           "error_feedback, {hadamard_rotation: {block: 4}}, natural, {zstd: {level: 1}}",
           "{censoring: {threshold: 0.5}}, error_feedback, {top_k: {k: 2}}, zstd",
           "{hadamard_rotation: {block: 1}}, {threshold: {relative: 0.5}}",
           "{subspace: {bits_per_dim: 0.3}}",
           "{subspace: {bits_per_dim: 2.5, rounding: stochastic, block: 4}}",
           "{subspace: {bits_per_dim: 8}}",
           "error_feedback, {subspace: {bits_per_dim: 0.5, block: 16}}",
           "{dgc: {k: 2, momentum: 0.5, clip_norm: 1, sample: 1}}",
           "{dgc: {fraction: 0.3, momentum: 0}}",
           "{powersgd: {rank: 1}}",
           "{powersgd: {rank: 8}}, zstd",
           "{wyner_ziv: {bits: 2, block: 3}}",
           "{wyner_ziv: {bits: 16, block: 1000}}",
           "{wyner_ziv: {side_information: none}}",
       })
    out.emplace_back(variant);
  return out;
}

}  // namespace fedsim::testing_pipelines
