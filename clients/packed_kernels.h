// Packed low-precision kernels (ZipML, Zhang et al. 2017): the b-bit codes of
// stochastically rounded samples and models (clients/quantized_compute.h),
// stored bit-packed, with integer dot products and gradient accumulation that
// read the packed bytes directly.
//
// Layout: code i of a vector occupies bits [i b, (i + 1) b) of the byte
// stream, least significant bit first (b = 8: one byte per code; b = 4: code
// 2k in the low nibble of byte k; b = 2: four codes per byte, the first in the
// two lowest bits). A packed vector of n codes takes packed_bytes(n, b) bytes:
// whole chunks of 16 codes (2 b bytes), the tail padded with zero codes, so the
// kernels read whole chunks and a padding code adds nothing to a dot product
// or a sum.
//
// A value is grid.lo + code * grid.step (clients/quantized_compute.h's
// UniformGrid), so the dot product of two quantized vectors is, exactly,
//   a.b = n lo_a lo_b + lo_a s_b S_b + s_a lo_b S_a + s_a s_b D,
// with the integer sums S_a = sum k_a, S_b = sum k_b and D = sum k_a k_b.
// dot_codes and sum_codes compute D and S exactly in integers (no rounding,
// whatever the order or the instruction set); affine_dot combines them in
// double, one rounding per term. The float-grid reference (the fp32 dot
// product of the reconstructed values, summed in float) is within
// gamma_n sum |a_i b_i| (gamma_n = n u / (1 - n u), u = 2^-24) of the exact value;
// affine_dot within 8 ulp of double of its largest term: the integer kernel
// is the definition (tests/clients/packed_kernels_test.cc bounds both).
//
// SIMD: every kernel has baseline (x86-64-v2), AVX2 and AVX-512 variants
// (core/base/simd.h), chosen at run time, the dot product on VNNI's vpdpbusd
// where the CPU has it (AVX-VNNI, AVX-512 VNNI); the integer kernels are exact on
// every path, axpy_codes and axpy_codes_batch perform the same float
// operations in the same order on every path (no contraction into fused
// multiply-adds), so all results are bit-identical whichever path runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/base/simd.h"

namespace fedsim::packed {

// Bits per code the kernels take: 2, 4 or 8.
bool supported_bits(int bits);

// Bytes of a packed vector of n codes of `bits` bits (whole 16-code chunks).
inline std::size_t packed_bytes(std::size_t n, int bits) {
  return (n + 15) / 16 * 2 * static_cast<std::size_t>(bits);
}

// Packs codes[i] (each < 2^bits) into out (resized to packed_bytes, padding zero).
void pack(std::span<const std::uint8_t> codes, int bits, std::vector<std::uint8_t>& out);
// The n codes of a packed vector.
void unpack(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes);

// D = sum_i a[i] b[i] over two packed vectors of n codes of the same width; exact.
std::uint64_t dot_codes(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits);
// S = sum_i a[i]; exact.
std::uint64_t sum_codes(const std::uint8_t* a, std::size_t n, int bits);
// y[i] += alpha + beta * code[i] for i < n (float: one multiply, two adds, in that order).
void axpy_codes(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits, float* y);

// y[i] += alpha[j] + beta[j] * codes[j][i] for j = 0 .. count - 1 in that
// order, i < n: bit for bit `count` successive axpy_codes calls (the same
// float operations per coordinate, in the same order), y held in registers
// across the count packed vectors (a gradient row over a minibatch).
void axpy_codes_batch(const float* alpha, const float* beta, const std::uint8_t* const* codes, std::size_t count,
                      std::size_t n, int bits, float* y);

// The same on an explicit path (tests and benchmarks); an ISA this CPU lacks
// falls back to the widest one it has (simd::pick).
std::uint64_t dot_codes(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits, simd::Isa isa);
std::uint64_t sum_codes(const std::uint8_t* a, std::size_t n, int bits, simd::Isa isa);

// Which integer dot product kernel dot_codes(.., isa) runs on this CPU:
// "avx512-vnni" or "avx512", "avx-vnni" or "avx2", or "baseline" (fedsim
// bench kernels, calibrate).
const char* dot_kernel_name(simd::Isa isa);

// The dpbusd dot product kernels (VNNI: per 32-bit lane, acc += the sum of
// 4 products unsigned byte x signed byte), one algorithm instantiated with
// the real instructions and with an exact AVX2 emulation of them, so that the
// algorithm the VNNI paths run is tested on any AVX2 CPU. dot_codes uses the
// real ones where the CPU has them (kAvx512Vnni on the AVX-512 path,
// kAvxVnni on the AVX2 path).
enum class DpbusdKernel {
  kEmulated256,  // vpdpbusd ymm emulated in AVX2: the AVX-VNNI kernel's blocks
  kEmulated512,  // vpdpbusd zmm emulated in AVX2 (two halves): the AVX-512 VNNI kernel's blocks
  kAvxVnni,      // vpdpbusd ymm, VEX (AVX-VNNI)
  kAvx512Vnni,   // vpdpbusd zmm (AVX-512 VNNI and BW)
};
// Whether this CPU runs `kernel` (the emulations: any AVX2 CPU).
bool dpbusd_supported(DpbusdKernel kernel);
// D on `kernel` (tests); exact. Requires dpbusd_supported(kernel): without it
// (asserted) the baseline kernel runs.
std::uint64_t dot_codes_dpbusd(const std::uint8_t* a, const std::uint8_t* b, std::size_t n, int bits,
                               DpbusdKernel kernel);

void axpy_codes(float alpha, float beta, const std::uint8_t* codes, std::size_t n, int bits, float* y,
                simd::Isa isa);
void axpy_codes_batch(const float* alpha, const float* beta, const std::uint8_t* const* codes, std::size_t count,
                      std::size_t n, int bits, float* y, simd::Isa isa);

// The fp32 kernels the packed ones are measured against (fedsim bench kernels,
// fedsim calibrate), on the same dispatch: sum_i a[i] b[i] in float over 16
// lane accumulators (the same order on every path, so bit-identical), and
// y[i] += alpha * x[i].
float dot_f32(const float* a, const float* b, std::size_t n, simd::Isa isa);
void axpy_f32(float alpha, const float* x, std::size_t n, float* y, simd::Isa isa);

// A quantized vector: grid lo + code * step, codes packed, and their sum.
struct PackedVector {
  float lo = 0.0f;
  float step = 0.0f;
  int bits = 0;
  std::size_t n = 0;
  std::uint64_t code_sum = 0;
  std::vector<std::uint8_t> bytes;
};

// sum_i (a.lo + a.step a_i)(b.lo + b.step b_i) from the integer sums (see above);
// a and b have the same n and bits.
double affine_dot(const PackedVector& a, const PackedVector& b);
double affine_dot(const PackedVector& a, const PackedVector& b, simd::Isa isa);

// The float-grid fp32 fp32 dot product the kernels replace (reconstructed
// values, float products summed in float in index order): the reference of the tests.
float reference_dot(const PackedVector& a, const PackedVector& b);

}  // namespace fedsim::packed
