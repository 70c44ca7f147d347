// report.html opens in a real browser: headless Chromium (Debian `chromium`)
// loads the smoke study's report, and a script run on `load` counts the
// figures that decoded (non-zero natural size) and the table rows; the DOM is
// dumped and read back. A page with a corrupt figure is the control.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tools/report.h"

namespace {

namespace fs = std::filesystem;

const char* const kChromium = "/usr/bin/chromium";

std::string read(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "images=N loaded=M tables=T rows=R" as the browser saw the page.
std::string browser_check(const fs::path& page) {
  const fs::path dir = page.parent_path();
  std::string html = read(page);
  const std::string probe =
      "<script>window.addEventListener('load', () => {"
      "const im = [...document.images];"
      "const ok = im.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length;"
      "document.body.setAttribute('data-check', 'images=' + im.length + ' loaded=' + ok + ' tables=' +"
      "document.querySelectorAll('table').length + ' rows=' + document.querySelectorAll('tr').length);"
      "});</script>";
  const std::size_t end = html.rfind("</body>");
  EXPECT_NE(end, std::string::npos);
  html.insert(end, probe);
  const fs::path probed = dir / "probed.html";
  std::ofstream(probed) << html;
  const std::string cmd = std::string(kChromium) +
                          " --headless --no-sandbox --disable-gpu --virtual-time-budget=10000 --user-data-dir=" +
                          (dir / "chromium-profile").string() + " --dump-dom file://" + probed.string() + " 2>" +
                          (dir / "chromium.err").string();
  std::FILE* pipe = popen(cmd.c_str(), "r");
  std::string dom;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) dom.append(buf, n);
  pclose(pipe);
  const std::size_t at = dom.find("data-check=\"");
  if (at == std::string::npos) return "no result; chromium said: " + read(dir / "chromium.err").substr(0, 2000);
  return dom.substr(at + 12, dom.find('"', at + 12) - at - 12);
}

class Report : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kChromium)) GTEST_SKIP() << kChromium << " not installed (Debian package chromium; tools/install_deps.sh)";
    dir_ = fs::temp_directory_path() / ("fedsim_report_test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(Report, StudyReportRendersEveryFigureAndTheTable) {
  const fs::path out = dir_ / "smoke";
  const std::string cmd = std::string(FEDSIM_BINARY_DIR) + "/fedsim sweep " + FEDSIM_SOURCE_DIR +
                          "/scenarios/studies/smoke.yaml --quiet --jobs 2 --out " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ASSERT_TRUE(fs::exists(out / "report.html"));
  // Six figures; one table with a header row and a row per configuration.
  EXPECT_EQ(browser_check(out / "report.html"), "images=6 loaded=6 tables=1 rows=5");
}

TEST_F(Report, ACorruptFigureIsCaught) {
  std::ofstream(dir_ / "bad.png") << "not a png";
  fedsim::HtmlReport page("control");
  page.table({"a"}, {{"1"}});
  page.figure((dir_ / "bad.png").string(), "broken");
  page.write((dir_ / "bad.html").string());
  EXPECT_EQ(browser_check(dir_ / "bad.html"), "images=1 loaded=0 tables=1 rows=2");
}

}  // namespace
