// A self-contained HTML report: headings, paragraphs, tables and figures, the
// figures embedded as base64 PNG so that the page is one file that opens
// anywhere (and in headless Chromium, tests/tools/report_test.cc).
#pragma once

#include <string>
#include <vector>

namespace fedsim {

class HtmlReport {
 public:
  explicit HtmlReport(std::string title);

  void heading(const std::string& text);
  void paragraph(const std::string& text);  // plain text, escaped
  // Cells are plain text, escaped; `numeric` columns are right-aligned.
  void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
             const std::vector<bool>& numeric = {});
  // Embeds the PNG file; throws std::runtime_error if it cannot be read.
  void figure(const std::string& png_file, const std::string& caption);

  // Writes the page atomically (temporary file, then rename).
  void write(const std::string& file) const;

 private:
  std::string title_;
  std::string body_;
};

std::string html_escape(const std::string& text);
std::string base64(const std::string& bytes);

// Writes `text` to `file` atomically: a temporary file in the same folder,
// fsync, rename. Throws std::runtime_error on failure.
void write_file_atomically(const std::string& file, const std::string& text);

// Runs tools/plot_study.py with `args` (found next to the installed
// executable, or in the source tree; FEDSIM_PLOT_SCRIPT and FEDSIM_PYTHON
// override). Returns "" on success, else why the figures were not made.
std::string run_plot_script(const std::vector<std::string>& args);

// A plotting script shipped with fedsim: $env_var if set, else `file` next to
// the executable's ../share/fedsim/ (an installed copy), else tools/`file` of
// the source tree; "" when none exists.
std::string find_tool_script(const char* env_var, const char* file);

}  // namespace fedsim
