#include "core/data/libsvm.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "core/data/data_source.h"
#include "core/base/errors.h"

namespace fedsim {
namespace {

// One file as parsed, before the dimension and label mapping are known.
struct SparseRows {
  std::vector<double> labels;
  std::vector<std::size_t> row_start;  // into index/value; size = rows + 1
  std::vector<std::uint32_t> index;    // 1-based
  std::vector<float> value;
  std::size_t max_index = 0;
};

[[noreturn]] void fail_at(const std::string& name, std::size_t line, const std::string& what) {
  throw InputError(name + ":" + std::to_string(line) + ": " + what);
}

std::string quoted(std::string_view s) {
  constexpr std::size_t kMaxShown = 40;
  if (s.size() > kMaxShown) return "'" + std::string(s.substr(0, kMaxShown)) + "...'";
  return "'" + std::string(s) + "'";
}

bool parse_real(std::string_view s, double& out) {
  // from_chars does not take a leading '+', which LIBSVM files use ("+1").
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(out) &&
         std::fabs(out) <= std::numeric_limits<float>::max();
}

bool parse_index(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

SparseRows parse_rows(std::istream& in, const std::string& name, const LibsvmOptions& options) {
  SparseRows rows;
  rows.row_start.push_back(0);
  std::string text;
  std::size_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    std::string_view rest(text);
    std::size_t token_count = 0;
    std::uint64_t previous = 0;
    while (true) {
      while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
      if (rest.empty()) break;
      if (token_count == 0 && rest.front() == '#') break;
      std::size_t len = 0;
      while (len < rest.size() && !is_space(rest[len])) ++len;
      const std::string_view token = rest.substr(0, len);
      rest.remove_prefix(len);
      if (token_count++ == 0) {
        double label = 0;
        if (!parse_real(token, label)) fail_at(name, line, "bad number " + quoted(token) + " as the label");
        rows.labels.push_back(label);
        continue;
      }
      const std::size_t colon = token.find(':');
      if (colon == std::string_view::npos)
        fail_at(name, line, "expected index:value, found " + quoted(token));
      const std::string_view index_text = token.substr(0, colon);
      const std::string_view value_text = token.substr(colon + 1);
      std::uint64_t index = 0;
      if (!parse_index(index_text, index))
        fail_at(name, line, "bad feature index " + quoted(index_text) + " (expected a positive integer)");
      if (index == 0) fail_at(name, line, "feature index 0 (indices are 1-based)");
      if (index <= previous)
        fail_at(name, line,
                "feature index " + std::to_string(index) + " after index " + std::to_string(previous) +
                    " (indices must be strictly increasing)");
      if (options.dim != 0 && index > options.dim)
        fail_at(name, line,
                "feature index " + std::to_string(index) + " > dim " + std::to_string(options.dim) +
                    " (raise data.dim or set it to 0 to infer it)");
      if (index > options.max_index)
        fail_at(name, line,
                "feature index " + std::to_string(index) + " exceeds the supported maximum " +
                    std::to_string(options.max_index));
      double value = 0;
      if (!parse_real(value_text, value))
        fail_at(name, line, "bad number " + quoted(value_text) + " as the value of feature " + std::to_string(index));
      previous = index;
      rows.index.push_back(static_cast<std::uint32_t>(index));
      rows.value.push_back(static_cast<float>(value));
    }
    if (token_count > 0) rows.row_start.push_back(rows.index.size());
    rows.max_index = std::max<std::size_t>(rows.max_index, previous);
  }
  if (in.bad()) throw InputError(name + ": read error");
  if (rows.labels.empty()) throw InputError(name + ": no samples (every line is blank or a comment)");
  return rows;
}

Dataset densify(const SparseRows& rows, std::size_t dim, const std::vector<double>& classes,
                const std::string& name) {
  Dataset d;
  d.name = name;
  const std::size_t n = rows.labels.size();
  d.features.zeros(dim, n);
  for (std::size_t r = 0; r < n; ++r) {
    float* column = d.features.colptr(r);
    for (std::size_t k = rows.row_start[r]; k < rows.row_start[r + 1]; ++k) column[rows.index[k] - 1] = rows.value[k];
  }
  if (classes.empty()) {
    d.targets.set_size(n);
    for (std::size_t r = 0; r < n; ++r) d.targets[r] = static_cast<float>(rows.labels[r]);
  } else {
    d.num_classes = static_cast<std::uint32_t>(classes.size());
    d.labels.resize(n);
    for (std::size_t r = 0; r < n; ++r) {
      const auto it = std::lower_bound(classes.begin(), classes.end(), rows.labels[r]);
      d.labels[r] = static_cast<std::uint32_t>(it - classes.begin());
    }
  }
  return d;
}

class LibsvmSource final : public DataSource {
 public:
  explicit LibsvmSource(const Config& c)
      : train_(c.get_string("train")), test_(c.get_string("test")) {
    options_.dim = static_cast<std::size_t>(c.get_int("dim", 0, 0, static_cast<std::int64_t>(options_.max_index)));
    options_.classification = c.get_choice("task", "classification", {"classification", "regression"}) == "classification";
  }
  DataSplit load(std::uint64_t) const override { return load_libsvm(train_, test_, options_); }

 private:
  std::string train_;
  std::string test_;
  LibsvmOptions options_;
};

FEDSIM_REGISTER(
    DataSourceRegistry, "libsvm",
    [](const Config& c) -> std::unique_ptr<DataSource> { return std::make_unique<LibsvmSource>(c); },
    "LIBSVM text files (train, test, dim, task: classification|regression)");

}  // namespace

DataSplit parse_libsvm(std::istream& train, std::istream& test, const LibsvmOptions& options,
                       const std::string& train_name, const std::string& test_name) {
  const SparseRows train_rows = parse_rows(train, train_name, options);
  const SparseRows test_rows = parse_rows(test, test_name, options);

  const std::size_t dim = options.dim != 0 ? options.dim : std::max(train_rows.max_index, test_rows.max_index);
  if (dim == 0) throw InputError(train_name + ": no feature indices in either file (set data.dim)");
  const std::size_t samples = train_rows.labels.size() + test_rows.labels.size();
  if (dim > options.max_dense_elements / samples)
    throw InputError(train_name + ": dense features need dim x samples = " + std::to_string(dim) + " x " +
                     std::to_string(samples) + " floats, more than the limit of " +
                     std::to_string(options.max_dense_elements));

  std::vector<double> classes;
  if (options.classification) {
    classes = train_rows.labels;
    classes.insert(classes.end(), test_rows.labels.begin(), test_rows.labels.end());
    std::sort(classes.begin(), classes.end());
    classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    if (classes.size() > options.max_classes)
      throw InputError(train_name + ": " + std::to_string(classes.size()) +
                       " distinct labels, more than the supported " + std::to_string(options.max_classes) +
                       " classes (for real-valued targets set data.task: regression)");
  }

  DataSplit split;
  split.train = densify(train_rows, dim, classes, train_name);
  split.test = densify(test_rows, dim, classes, test_name);
  return split;
}

DataSplit load_libsvm(const std::string& train_path, const std::string& test_path, const LibsvmOptions& options) {
  std::ifstream train(train_path);
  if (!train) throw InputError(train_path + ": cannot open LIBSVM training file (set data.train)");
  std::ifstream test(test_path);
  if (!test) throw InputError(test_path + ": cannot open LIBSVM test file (set data.test)");
  return parse_libsvm(train, test, options, train_path, test_path);
}

}  // namespace fedsim
