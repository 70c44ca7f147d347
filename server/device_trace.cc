#include "server/device_trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/base/errors.h"
#include "core/base/text.h"

namespace fedsim {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(s);
  while (std::getline(in, cell, sep)) out.push_back(cell);
  if (!s.empty() && s.back() == sep) out.push_back("");
  return out;
}

constexpr const char* kHeader = "device,macs_per_s,uplink_bps,downlink_bps,period_s,online";

}  // namespace

bool DeviceRow::is_online(double t) const {
  if (online.empty()) return true;
  double x = std::fmod(t, period_s);
  if (x < 0.0) x += period_s;
  // The last interval starting at or before x.
  const auto it = std::upper_bound(online.begin(), online.end(), x,
                                   [](double v, const std::pair<double, double>& iv) { return v < iv.first; });
  return it != online.begin() && x < std::prev(it)->second;
}

std::shared_ptr<const DeviceTrace> DeviceTrace::load(const std::string& path, const std::string& where) {
  std::ifstream in(path);
  if (!in) throw InputError(where + ": cannot read device trace '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path + " (" + where + ")");
}

std::shared_ptr<const DeviceTrace> DeviceTrace::parse(const std::string& text, const std::string& name) {
  auto trace = std::make_shared<DeviceTrace>();
  std::istringstream in(text);
  std::string line;
  std::size_t number_of_line = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++number_of_line;
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const auto fail = [&](const std::string& expected, const std::string& found) {
      throw InputError(name + ":" + std::to_string(number_of_line) + ": expected " + expected + ", found " + found);
    };
    if (!header) {
      if (t != kHeader) fail(std::string("the header '") + kHeader + "'", "'" + t + "'");
      header = true;
      continue;
    }
    const std::vector<std::string> cells = split(t, ',');
    if (cells.size() != 6) fail("6 comma-separated cells", std::to_string(cells.size()) + " in '" + t + "'");
    DeviceRow row;
    row.device = trim(cells[0]);
    if (row.device.empty()) fail("a device name", "an empty cell");
    const char* names[] = {"macs_per_s", "uplink_bps", "downlink_bps", "period_s"};
    double* fields[] = {&row.macs_per_s, &row.uplink_bps, &row.downlink_bps, &row.period_s};
    for (int i = 0; i < 4; ++i)
      if (!parse_finite(cells[1 + i], *fields[i]) || !(*fields[i] > 0.0))
        fail(std::string(names[i]) + " > 0", "'" + trim(cells[1 + i]) + "'");
    std::istringstream intervals(cells[5]);
    std::string iv;
    while (intervals >> iv) {
      const auto dash = iv.find('-', 1);
      double a = 0.0;
      double b = 0.0;
      if (dash == std::string::npos || !parse_finite(iv.substr(0, dash), a) || !parse_finite(iv.substr(dash + 1), b))
        fail("online intervals 'start-end' separated by spaces", "'" + iv + "'");
      const double prev_end = row.online.empty() ? 0.0 : row.online.back().second;
      if (!(a >= prev_end) || !(b > a) || b > row.period_s)
        fail("increasing, disjoint intervals within [0, period_s = " + trim(cells[4]) + "]", "'" + iv + "'");
      row.online.emplace_back(a, b);
    }
    trace->rows_.push_back(std::move(row));
  }
  if (!header) throw InputError(name + ": expected the header '" + std::string(kHeader) + "', found an empty file");
  if (trace->rows_.empty()) throw InputError(name + ": expected at least one device row, found none");
  return trace;
}

}  // namespace fedsim
