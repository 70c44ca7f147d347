// Simulated time. The virtual clock is the only clock the model sees: an
// event has a time, a target and an action, and the earliest pops first.
// Ties break by target id, then by insertion order, so the order never
// depends on thread timing.
//
// Events are plain data (what happens is `kind` with argument `arg`, both
// the scheduling policy's to define; the policy keeps what an event refers
// to in tables of its own), so that the queue, like the rest of a run's
// state, can be written to a checkpoint and read back.
#pragma once

#include <cstdint>
#include <queue>
#include <vector>

#include "core/base/state_io.h"

namespace fedsim {

struct Event {
  double time_s = 0.0;
  std::uint64_t target = 0;  // client id, or kServerTarget
  std::uint64_t seq = 0;     // insertion order
  std::uint32_t kind = 0;
  std::uint64_t arg = 0;
};

// Target of the server's own events (round starts, deadlines, retries): they
// come after every client event at the same time.
constexpr std::uint64_t kServerTarget = ~std::uint64_t{0};

class VirtualClock {
 public:
  double now_s() const { return now_s_; }
  bool empty() const { return queue_.empty(); }
  std::size_t size() const { return queue_.size(); }
  double next_time_s() const { return queue_.top().time_s; }

  // Schedules an event at absolute time `time_s` (an earlier time is taken as now).
  void schedule(double time_s, std::uint64_t target, std::uint32_t kind, std::uint64_t arg = 0) {
    queue_.push(Event{time_s < now_s_ ? now_s_ : time_s, target, next_seq_++, kind, arg});
  }
  // Pops the earliest event and advances the clock to it. Not empty().
  Event pop() {
    Event e = queue_.top();
    queue_.pop();
    now_s_ = e.time_s;
    return e;
  }

  // Checkpoints: the time, the insertion counter and every pending event.
  void save(StateWriter& out) const {
    out.begin("clock");
    out.put(now_s_);
    out.put(next_seq_);
    auto copy = queue_;
    out.put<std::uint64_t>(copy.size());
    for (; !copy.empty(); copy.pop()) {
      const Event& e = copy.top();
      out.put(e.time_s), out.put(e.target), out.put(e.seq), out.put(e.kind), out.put(e.arg);
    }
  }
  // Replaces this clock's state. Events keep their insertion numbers, so
  // ties pop in the order they would have.
  void restore(StateReader& in) {
    in.begin("clock");
    now_s_ = in.get<double>();
    next_seq_ = in.get<std::uint64_t>();
    queue_ = {};
    for (std::size_t n = in.count(std::size_t{1} << 40, 36); n > 0; --n) {
      Event e;
      e.time_s = in.get<double>();
      e.target = in.get<std::uint64_t>();
      e.seq = in.get<std::uint64_t>();
      e.kind = in.get<std::uint32_t>();
      e.arg = in.get<std::uint64_t>();
      if (!(e.time_s >= now_s_) || e.seq >= next_seq_)
        throw DecodeError("an event at " + std::to_string(e.time_s) + " s (insertion " + std::to_string(e.seq) +
                          ") before the clock's time or counter");
      queue_.push(e);
    }
  }

 private:
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      if (a.time_s != b.time_s) return a.time_s > b.time_s;
      if (a.target != b.target) return a.target > b.target;
      return a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  double now_s_ = 0.0;
  std::uint64_t next_seq_ = 0;
};

}  // namespace fedsim
