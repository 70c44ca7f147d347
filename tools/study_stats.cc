#include "tools/study_stats.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "core/base/errors.h"

namespace fedsim {
namespace {

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    cells.push_back(line.substr(start, comma - start));
    if (comma == std::string::npos) return cells;
    start = comma + 1;
  }
}

// Continued fraction of the regularized incomplete beta function I_x(a, b)
// (modified Lentz), valid for x < (a + 1) / (a + b + 2).
double beta_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 300; ++m) {
    const double m2 = 2.0 * m;
    double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    for (int half = 0; half < 2; ++half) {
      d = 1.0 + num * d;
      if (std::fabs(d) < kTiny) d = kTiny;
      c = 1.0 + num / c;
      if (std::fabs(c) < kTiny) c = kTiny;
      d = 1.0 / d;
      const double step = d * c;
      h *= step;
      if (half == 1 && std::fabs(step - 1.0) < 1e-15) return h;
      num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    }
  }
  return h;
}

double incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_fraction(a, b, x) / a;
  return 1.0 - front * beta_fraction(b, a, 1.0 - x) / b;
}

// P(T <= t) for Student's t with df degrees of freedom.
double student_t_cdf(double t, double df) {
  const double tail = 0.5 * incomplete_beta(0.5 * df, 0.5, df / (df + t * t));
  return t >= 0 ? 1.0 - tail : tail;
}

double parse_number(const std::string& cell, const std::string& file, const std::string& column) {
  std::size_t used = 0;
  double v = NAN;
  try {
    v = std::stod(cell, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != cell.size() || cell.empty())
    throw InputError(file + ": column " + column + ": expected a number, found '" + cell + "'");
  return v;
}

}  // namespace

std::size_t CsvTable::column(const std::string& name, const std::string& file) const {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  throw InputError(file + ": expected a column '" + name + "', found none");
}

CsvTable read_csv(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw InputError(file + ": cannot open");
  CsvTable t;
  std::string line;
  if (!std::getline(in, line)) throw InputError(file + ": expected a header line, found an empty file");
  t.header = split(line);
  for (std::size_t n = 2; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    t.rows.push_back(split(line));
    if (t.rows.back().size() != t.header.size())
      throw InputError(file + ":" + std::to_string(n) + ": expected " + std::to_string(t.header.size()) +
                       " cells, found " + std::to_string(t.rows.back().size()));
  }
  return t;
}

double student_t_quantile(double p, double df) {
  if (!(p > 0.0 && p < 1.0) || !(df >= 1.0)) return NAN;
  if (p < 0.5) return -student_t_quantile(1.0 - p, df);
  double lo = 0.0, hi = 1.0;
  while (student_t_cdf(hi, df) < p) hi *= 2.0;
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

MeanCi mean_ci(const std::vector<double>& values) {
  MeanCi r;
  r.n = values.size();
  if (r.n == 0) return {0, NAN, NAN};
  double sum = 0.0;
  for (double v : values) sum += v;
  r.mean = sum / static_cast<double>(r.n);
  if (r.n < 2) {
    r.ci95 = NAN;
    return r;
  }
  double ss = 0.0;
  for (double v : values) ss += (v - r.mean) * (v - r.mean);
  const double sd = std::sqrt(ss / static_cast<double>(r.n - 1));
  r.ci95 = student_t_quantile(0.975, static_cast<double>(r.n - 1)) * sd / std::sqrt(static_cast<double>(r.n));
  return r;
}

std::string format_mean_ci(const MeanCi& m, int digits, double scale) {
  if (m.n == 0) return "-";
  const double mean = m.mean * scale;
  if (mean != 0.0 && std::isfinite(mean))
    digits = std::clamp(2 - static_cast<int>(std::floor(std::log10(std::fabs(mean)))), digits, 8);
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << mean;
  if (m.n > 1) o << " ± " << m.ci95 * scale;
  return o.str();
}

RunFigures run_figures(const CsvTable& metrics, const std::vector<double>& targets, const std::string& file) {
  const std::size_t round = metrics.column("round", file), acc = metrics.column("test_accuracy", file),
                    loss = metrics.column("test_loss", file), up = metrics.column("bytes_up", file), down = metrics.column("bytes_down", file),
                    time = metrics.column("sim_time_s", file), energy = metrics.column("energy_j", file);
  RunFigures f;
  f.to_target.resize(targets.size());
  bool evaluated = false;
  for (const auto& row : metrics.rows) {
    f.bytes_up += parse_number(row[up], file, "bytes_up");
    f.bytes_down += parse_number(row[down], file, "bytes_down");
    f.energy_j += parse_number(row[energy], file, "energy_j");
    f.sim_time_s = parse_number(row[time], file, "sim_time_s");
    if (row[acc].empty()) continue;
    const double a = parse_number(row[acc], file, "test_accuracy");
    f.final_accuracy = a;
    f.final_test_loss = parse_number(row[loss], file, "test_loss");
    f.best_accuracy = evaluated ? std::max(f.best_accuracy, a) : a;
    evaluated = true;
    for (std::size_t t = 0; t < targets.size(); ++t)
      if (!f.to_target[t] && a >= targets[t])
        f.to_target[t] =
            ToTarget{parse_number(row[round], file, "round"), f.bytes_up, f.bytes_down, f.sim_time_s, f.energy_j};
  }
  if (!evaluated) throw InputError(file + ": expected at least one evaluated round, found none");
  return f;
}

std::string target_text(double target) {
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream s;
    s << std::setprecision(digits) << target;
    if (std::stod(s.str()) == target) return s.str();
  }
  return std::to_string(target);
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream s;
  s << std::setprecision(10) << v;
  return s.str();
}

}  // namespace fedsim
