// Real device traces: per-device compute speed, link rates and online
// periods, drawn by the clients of a class (`device_trace:` in a
// population entry, server/population.h).
//
// File format (CSV, one device per row; `#` comments; the header is required):
//
//   device,macs_per_s,uplink_bps,downlink_bps,period_s,online
//   17,2.1e9,1.5e6,6e6,86400,0-3600 7200-9000.5
//   18,4.0e8,8e5,2e6,86400,
//
//   device        a name (not used by the simulation; kept for the user)
//   macs_per_s    > 0: the device's rate at the class's precision and highest
//                 DVFS level; compute time is the class profile's time scaled
//                 by profile_time(1 MAC) x macs_per_s (energy per MAC stays
//                 the profile's)
//   uplink_bps, downlink_bps   > 0: the client's link rates (latency and
//                 radio energy stay the class's `link:`)
//   period_s      > 0: the length of the online trace, which loops
//   online        space-separated `start-end` intervals in [0, period_s],
//                 increasing and disjoint: the client is online at t iff
//                 fmod(t, period_s) lies in one of them ([start, end)); empty:
//                 always online
//
// `device_trace: {file: PATH, assign: sequential|random}`: client i of the
// class (i counted from the class's first id) takes row i mod rows
// (sequential, the default) or a row drawn from
// Rng::derive(seed, Stream::kPopulation, {client, 2}) (random).
// tools/fedscale_to_fedsim.py converts FedScale's trace pickles to this format.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fedsim {

struct DeviceRow {
  std::string device;
  double macs_per_s = 0.0;
  double uplink_bps = 0.0;
  double downlink_bps = 0.0;
  double period_s = 0.0;
  std::vector<std::pair<double, double>> online;  // empty: always online

  bool is_online(double t) const;
};

class DeviceTrace {
 public:
  // Reads and validates `path`; InputError naming `where`, the file and the line.
  static std::shared_ptr<const DeviceTrace> load(const std::string& path, const std::string& where);
  // From the text of such a file (`name` in messages).
  static std::shared_ptr<const DeviceTrace> parse(const std::string& text, const std::string& name);

  const std::vector<DeviceRow>& rows() const { return rows_; }

 private:
  std::vector<DeviceRow> rows_;
};

}  // namespace fedsim
