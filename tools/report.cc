#include "tools/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tools/process.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

const char* const kStyle =
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:0.3em 0.6em}th{background:#f0f0f0}td.n{text-align:right}"
    "figure{margin:1.5em 0}figure img{max-width:100%}figcaption{font-size:0.9em;color:#555}";


std::string find_python() {
  if (const char* s = std::getenv("FEDSIM_PYTHON")) return s;
  // Debian's python3-matplotlib is installed for Debian's interpreter, which
  // another python3 earlier in PATH (pyenv, a virtualenv) may hide.
  if (fs::exists("/usr/bin/python3")) return "/usr/bin/python3";
  return "python3";
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string base64(const std::string& bytes) {
  static const char* const kDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

HtmlReport::HtmlReport(std::string title) : title_(std::move(title)) {}

void HtmlReport::heading(const std::string& text) { body_ += "<h2>" + html_escape(text) + "</h2>\n"; }

void HtmlReport::paragraph(const std::string& text) { body_ += "<p>" + html_escape(text) + "</p>\n"; }

void HtmlReport::table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                       const std::vector<bool>& numeric) {
  body_ += "<table>\n<tr>";
  for (const std::string& h : header) body_ += "<th>" + html_escape(h) + "</th>";
  body_ += "</tr>\n";
  for (const auto& row : rows) {
    body_ += "<tr>";
    for (std::size_t i = 0; i < row.size(); ++i)
      body_ += (i < numeric.size() && numeric[i] ? "<td class=\"n\">" : "<td>") + html_escape(row[i]) + "</td>";
    body_ += "</tr>\n";
  }
  body_ += "</table>\n";
}

void HtmlReport::figure(const std::string& png_file, const std::string& caption) {
  std::ifstream in(png_file, std::ios::binary);
  if (!in) throw std::runtime_error(png_file + ": cannot read figure");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  body_ += "<figure><img alt=\"" + html_escape(caption) + "\" src=\"data:image/png;base64," + base64(bytes.str()) +
           "\"><figcaption>" + html_escape(caption) + "</figcaption></figure>\n";
}

void HtmlReport::write(const std::string& file) const {
  write_file_atomically(file, "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>" +
                                  html_escape(title_) + "</title><style>" + kStyle + "</style></head>\n<body>\n<h1>" +
                                  html_escape(title_) + "</h1>\n" + body_ + "</body>\n</html>\n");
}

void write_file_atomically(const std::string& file, const std::string& text) {
  const std::string tmp = file + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error(tmp + ": cannot create");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error(tmp + ": write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw std::runtime_error(tmp + ": fsync failed");
  if (std::rename(tmp.c_str(), file.c_str()) != 0) throw std::runtime_error(file + ": rename failed");
}

std::string run_plot_script(const std::vector<std::string>& args) {
  const std::string script = find_tool_script("FEDSIM_PLOT_SCRIPT", "plot_study.py");
  if (script.empty()) return "tools/plot_study.py not found (set FEDSIM_PLOT_SCRIPT)";
  std::vector<std::string> argv{find_python(), script};
  argv.insert(argv.end(), args.begin(), args.end());
  int code = 0;
  try {
    code = run_process(argv);
  } catch (const std::exception& e) {
    return e.what();
  }
  if (code == 0) return "";
  if (code == 3) return argv[0] + " cannot import matplotlib (install python3-matplotlib)";
  return script + " failed with exit code " + std::to_string(code);
}

std::string find_tool_script(const char* env_var, const char* file) {
  if (const char* s = std::getenv(env_var)) return s;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = exe.parent_path() / ".." / "share" / "fedsim" / file;
    if (fs::exists(installed)) return installed.lexically_normal().string();
  }
#ifdef FEDSIM_SOURCE_DIR
  const fs::path source = fs::path(FEDSIM_SOURCE_DIR) / "tools" / file;
  if (fs::exists(source)) return source.string();
#endif
  return "";
}

}  // namespace fedsim
