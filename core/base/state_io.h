// The state of a run as bytes, for checkpoints (server/checkpoint.h).
//
// StateWriter appends little-endian fixed-width values; StateReader reads
// them back in the same order. Every component that keeps state across
// events writes it in save() and reads it in restore(), in one order of its
// own choosing; sections (begin("name")) mark the components, so that a
// reader that meets another component than it expects (a checkpoint of
// another pipeline, policy or optimizer) fails with a message naming both,
// instead of reading one component's numbers as another's.
//
// Contract: a StateReader never trusts a length it reads: every count is
// checked against the bytes left (and, where the reader knows it, against
// the size it expects) before anything is allocated. Any inconsistency
// throws DecodeError; the object being restored is then in an unspecified
// state and must be discarded (the checkpoint loader builds a fresh run and
// throws it away whole).
#pragma once

#include <armadillo>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/base/errors.h"

namespace fedsim {

class StateWriter {
 public:
  void begin(std::string_view section) { str(section); }

  template <typename T>
    requires std::is_arithmetic_v<T>
  void put(T v) {
    if constexpr (std::is_same_v<T, bool>) {
      bytes_.push_back(v ? 1 : 0);
    } else {
      char raw[sizeof(T)];
      std::memcpy(raw, &v, sizeof(T));  // x86-64 and every target fedsim builds for are little-endian
      bytes_.append(raw, sizeof(T));
    }
  }
  void str(std::string_view s) {
    put<std::uint64_t>(s.size());
    bytes_.append(s);
  }
  template <typename T>
    requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
  void vec(std::span<const T> v) {
    put<std::uint64_t>(v.size());
    bytes_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
  }
  template <typename T>
    requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
  void vec(const std::vector<T>& v) {
    vec(std::span<const T>(v));
  }
  template <typename T>
  void vec(const arma::Col<T>& v) {
    vec(std::span<const T>(v.memptr(), v.n_elem));
  }

  // Bytes another StateWriter made, in place (a part of the state saved elsewhere).
  void raw(std::string_view bytes) { bytes_.append(bytes); }

  const std::string& bytes() const { return bytes_; }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class StateReader {
 public:
  explicit StateReader(std::string_view bytes) : bytes_(bytes) {}

  // Reads a section mark; throws unless it is `section`.
  void begin(std::string_view section) {
    const std::string found = str(256);
    if (found != section)
      throw DecodeError("expected the state of '" + std::string(section) + "', found '" + found + "'");
  }

  template <typename T>
    requires std::is_arithmetic_v<T>
  T get() {
    if constexpr (std::is_same_v<T, bool>) {
      const std::uint8_t b = take(1)[0];
      if (b > 1) throw DecodeError("a flag is " + std::to_string(b) + ", not 0 or 1");
      return b == 1;
    } else {
      T v;
      std::memcpy(&v, take(sizeof(T)).data(), sizeof(T));
      return v;
    }
  }
  // A count, at most `max` (and never more than the bytes left could hold
  // when each item takes at least `min_item_bytes`).
  std::size_t count(std::size_t max, std::size_t min_item_bytes = 1) {
    const std::uint64_t n = get<std::uint64_t>();
    if (n > max) throw DecodeError("a count of " + std::to_string(n) + " where at most " + std::to_string(max) + " fit");
    if (min_item_bytes && n > left() / min_item_bytes)
      throw DecodeError("a count of " + std::to_string(n) + " with only " + std::to_string(left()) + " bytes left");
    return static_cast<std::size_t>(n);
  }
  std::string str(std::size_t max = std::size_t{1} << 40) {
    const std::size_t n = count(max);
    const std::string_view s = take(n);
    return std::string(s);
  }
  // A vector of any length (bounded by the bytes left) or, with `expected`,
  // of exactly that length.
  template <typename T>
  std::vector<T> vec(std::size_t expected = kAny) {
    const std::size_t n = count(expected == kAny ? std::size_t{1} << 40 : expected, sizeof(T));
    if (expected != kAny && n != expected)
      throw DecodeError("a vector of " + std::to_string(n) + " values where " + std::to_string(expected) +
                        " were expected");
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), take(n * sizeof(T)).data(), n * sizeof(T));
    return v;
  }
  template <typename T>
  arma::Col<T> col(std::size_t expected = kAny) {
    const std::vector<T> v = vec<T>(expected);
    return arma::Col<T>(v);
  }
  // Reads into `out`, whose length must match.
  template <typename T>
  void into(std::span<T> out) {
    const std::size_t n = count(out.size(), sizeof(T));
    if (n != out.size())
      throw DecodeError("a vector of " + std::to_string(n) + " values where " + std::to_string(out.size()) +
                        " were expected");
    if (n) std::memcpy(out.data(), take(n * sizeof(T)).data(), n * sizeof(T));
  }

  std::size_t left() const { return bytes_.size() - pos_; }
  bool done() const { return pos_ == bytes_.size(); }

  static constexpr std::size_t kAny = ~std::size_t{0};

 private:
  std::string_view take(std::size_t n) {
    if (n > left()) throw DecodeError("the state ends early (" + std::to_string(left()) + " bytes left, " +
                                      std::to_string(n) + " needed)");
    const std::string_view s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  std::string_view bytes_;
  std::size_t pos_ = 0;
};

// The client ids of a map saved in key order (a std::map's iteration): each
// must be a registered client (below `limit`) and above the one before;
// DecodeError naming `what` (e.g. "the ledger's totals") otherwise.
class OrderedIds {
 public:
  OrderedIds(StateReader& in, std::size_t limit, std::string what)
      : in_(in), limit_(limit), what_(std::move(what)) {}
  std::uint32_t next() {
    const auto id = in_.get<std::uint32_t>();
    if (id >= limit_ || static_cast<std::int64_t>(id) <= last_)
      throw DecodeError(what_ + " name client " + std::to_string(id) + " out of order or not registered");
    last_ = id;
    return id;
  }

 private:
  StateReader& in_;
  std::size_t limit_;
  std::string what_;
  std::int64_t last_ = -1;
};

}  // namespace fedsim
