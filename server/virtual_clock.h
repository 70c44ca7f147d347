// Simulated time. The virtual clock is the only clock the model sees: events
// carry a time, a target and an action, and the earliest pops first. Ties
// break by target id, then by insertion order, so the order never depends on
// thread timing.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

namespace fedsim {

class VirtualClock {
 public:
  using Action = std::function<void()>;

  double now_s() const { return now_s_; }
  bool empty() const { return queue_.empty(); }
  std::size_t size() const { return queue_.size(); }
  double next_time_s() const { return queue_.top().time_s; }

  // Schedules `action` at absolute time `time_s` (>= now).
  void schedule(double time_s, std::uint64_t target, Action action) {
    queue_.push(Event{time_s < now_s_ ? now_s_ : time_s, target, next_seq_++, std::move(action)});
  }
  // Pops the earliest event, advances the clock to it and runs it.
  void run_next() {
    Event e = queue_.top();
    queue_.pop();
    now_s_ = e.time_s;
    e.action();
  }
  // Moves the clock forward (never backward) without an event.
  void advance_to(double time_s) {
    if (time_s > now_s_) now_s_ = time_s;
  }

 private:
  struct Event {
    double time_s;
    std::uint64_t target;
    std::uint64_t seq;
    Action action;
  };
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
