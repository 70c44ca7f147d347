// The statistics of a study: per-run figures from a metrics.csv (final and best
// accuracy, totals, and what it took to reach each target accuracy), and their
// mean and 95% confidence interval over seeds (Student t).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fedsim {

// A CSV file without quoting (fedsim's own files): a header and rows of cells.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  // The column's index; throws InputError naming `file` when it is missing.
  std::size_t column(const std::string& name, const std::string& file) const;
};
CsvTable read_csv(const std::string& file);  // throws InputError (missing file, ragged row)

// The p-quantile of Student's t distribution with `df` degrees of freedom
// (df >= 1), from the regularized incomplete beta function; 1e-10 accurate.
double student_t_quantile(double p, double df);

struct MeanCi {
  std::size_t n = 0;
  double mean = 0.0;  // NaN when n = 0
  double ci95 = 0.0;  // half-width t_{0.975, n-1} * sd / sqrt(n); NaN when n < 2
};
MeanCi mean_ci(const std::vector<double>& values);
// "mean ± ci" (just the mean when n = 1; "-" when n = 0) of the values times
// `scale`, with `digits` decimals or more, so that the mean keeps three
// significant digits (0.0211 J, not 0.0 J).
std::string format_mean_ci(const MeanCi& m, int digits, double scale = 1.0);

// What one run took to reach a target accuracy: every figure is counted up to
// and including the first evaluated round whose test accuracy is >= the target
// (so at eval_every resolution).
struct ToTarget {
  double rounds = 0.0;
  double bytes_up = 0.0;
  double bytes_down = 0.0;
  double sim_time_s = 0.0;
  double energy_j = 0.0;
};

struct RunFigures {
  double final_accuracy = 0.0;  // at the last evaluated round
  double best_accuracy = 0.0;
  double final_test_loss = 0.0;  // at the last evaluated round (the figure of regression runs)
  double bytes_up = 0.0;        // totals over the run
  double bytes_down = 0.0;
  double sim_time_s = 0.0;
  double energy_j = 0.0;
  std::vector<std::optional<ToTarget>> to_target;  // one per target; nullopt = never reached
};

// From a run's metrics.csv (as read by read_csv). Throws InputError when a
// column is missing or a cell is not a number.
RunFigures run_figures(const CsvTable& metrics, const std::vector<double>& targets, const std::string& file);

// "0.84" for a target in column names: the shortest text that reads back.
std::string target_text(double target);
// A number for a CSV cell: "" for NaN, else up to 10 significant digits.
std::string csv_number(double v);

}  // namespace fedsim
