#include "tools/sweep.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/base/errors.h"
#include "tools/process.h"
#include "tools/report.h"
#include "tools/study_stats.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string duration_text(double s) {
  const long t = std::lround(s);
  std::ostringstream o;
  if (t >= 3600) o << t / 3600 << "h";
  if (t >= 60) o << (t % 3600) / 60 << "m";
  o << t % 60 << "s";
  return o.str();
}

}  // namespace

StudyLock::StudyLock(const std::string& dir) {
  fs::create_directories(dir);
  const std::string file = (fs::path(dir) / ".lock").string();
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd_ < 0) throw InputError(file + ": cannot create the study's lock file");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    throw InputError(dir + ": another fedsim sweep or tune is working in this folder");
  }
}

StudyLock::~StudyLock() { ::close(fd_); }

SweepCounts execute_jobs(const std::vector<RunJob>& jobs, const SweepOptions& options, const std::string& what) {
  const fs::path dir(options.out_dir);
  const fs::path runs = dir / "runs", tmp = dir / "tmp";
  // Runs in flight when a sweep was killed: those with a checkpoint continue
  // from it, the others start over.
  std::set<std::string> resumable;
  if (fs::exists(tmp))
    for (const fs::directory_entry& e : fs::directory_iterator(tmp)) {
      if (options.checkpoint_every && fs::exists(e.path() / "checkpoint.bin"))
        resumable.insert(e.path().filename().string());
      else
        fs::remove_all(e.path());
    }
  fs::create_directories(runs);
  fs::create_directories(tmp);
  std::FILE* log = std::fopen((dir / "sweep.log").c_str(), "a");
  if (!log) throw std::runtime_error((dir / "sweep.log").string() + ": cannot open");
  auto log_line = [&](const std::string& line) {
    std::fprintf(log, "%s\n", line.c_str());
    std::fflush(log);
  };

  SweepCounts counts;
  counts.total = jobs.size();
  std::vector<const RunJob*> pending;
  for (const RunJob& job : jobs) {
    if (fs::exists(runs / job.id))
      ++counts.already_done;
    else
      pending.push_back(&job);
  }
  log_line("start pid=" + std::to_string(::getpid()) + " jobs=" + std::to_string(options.jobs) + " pending=" +
           std::to_string(pending.size()) + " " + what);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t threads = std::max<std::size_t>(1, cores / std::max<std::size_t>(1, options.jobs));

  const auto start = std::chrono::steady_clock::now();
  std::map<pid_t, const RunJob*> running;
  std::string failure;
  std::size_t next = 0;
  auto draw = [&]() {
    if (!options.progress) return;
    constexpr int kWidth = 30;
    const std::size_t done = counts.already_done + counts.executed;
    const int filled = counts.total ? static_cast<int>(kWidth * done / counts.total) : kWidth;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string eta = "-";
    if (counts.executed > 0) eta = duration_text(elapsed / double(counts.executed) * double(pending.size() - counts.executed));
    std::fprintf(stderr, "\r%s [%s%s] %zu/%zu runs, %zu running, elapsed %s, eta %s   ", what.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), done, counts.total,
                 running.size(), duration_text(elapsed).c_str(), eta.c_str());
  };
  draw();
  while (next < pending.size() || !running.empty()) {
    while (failure.empty() && next < pending.size() && running.size() < options.jobs) {
      const RunJob& job = *pending[next++];
      const fs::path work = tmp / job.id;
      const bool resume = resumable.count(job.id) > 0;
      fs::create_directories(work);
      std::vector<std::string> argv{options.fedsim_exe, "run", job.scenario, "--quiet",
                                    resume ? "--resume" : "--out", work.string()};
      for (const std::string& o : job.overrides) argv.insert(argv.end(), {"--set", o});
      argv.insert(argv.end(), {"--set", "threads=" + std::to_string(threads)});
      if (options.checkpoint_every)
        argv.insert(argv.end(), {"--checkpoint-every", std::to_string(options.checkpoint_every)});
      running[start_process(argv, (work / "log.txt").string())] = &job;  // the log is appended to
      counts.resumed += resume;
      log_line((resume ? "resume " : "begin ") + job.id);
    }
    draw();
    if (running.empty()) break;
    int code = 0;
    const pid_t pid = wait_any_process(&code);
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const RunJob& job = *it->second;
    running.erase(it);
    const fs::path work = tmp / job.id;
    if (code == 0) {
      fs::remove(work / "checkpoint.bin");  // of no use once the run is done
      fs::remove(work / "checkpoint.tmp");  // left by a run killed while writing one
      fs::rename(work, runs / job.id);  // publishes the run: one atomic step
      ++counts.executed;
      log_line("done " + job.id);
    } else {
      log_line("fail " + job.id + " exit=" + std::to_string(code));
      if (failure.empty())
        failure = "run " + job.id + " failed with exit code " + std::to_string(code) + "; the end of " +
                  (work / "log.txt").string() + ":\n" + file_tail((work / "log.txt").string(), 15);
    }
  }
  if (options.progress) std::fputc('\n', stderr);
  std::fclose(log);
  if (!failure.empty()) throw std::runtime_error(failure);
  return counts;
}

std::vector<RunJob> study_jobs(const Study& study) {
  std::vector<RunJob> jobs;
  for (const StudyRun& run : study.runs)
    jobs.push_back({run.id, study.configs[run.config].scenario, study.run_overrides(run)});
  return jobs;
}

std::vector<ConfigSummary> summarize_runs(const Study& study, const std::string& out_dir) {
  std::vector<ConfigSummary> out(study.configs.size());
  std::vector<std::vector<RunFigures>> per_config(study.configs.size());
  for (const StudyRun& run : study.runs) {
    const std::string file = (fs::path(out_dir) / "runs" / run.id / "metrics.csv").string();
    per_config[run.config].push_back(run_figures(read_csv(file), study.targets, file));
  }
  for (std::size_t c = 0; c < study.configs.size(); ++c) {
    ConfigSummary& s = out[c];
    const auto& figures = per_config[c];
    s.seeds = figures.size();
    auto stat = [&](auto field) {
      std::vector<double> v;
      for (const RunFigures& f : figures) v.push_back(field(f));
      return mean_ci(v);
    };
    s.final_accuracy = stat([](const RunFigures& f) { return f.final_accuracy; });
    s.best_accuracy = stat([](const RunFigures& f) { return f.best_accuracy; });
    s.final_test_loss = stat([](const RunFigures& f) { return f.final_test_loss; });
    s.bytes_up = stat([](const RunFigures& f) { return f.bytes_up; });
    s.bytes_down = stat([](const RunFigures& f) { return f.bytes_down; });
    s.sim_time_s = stat([](const RunFigures& f) { return f.sim_time_s; });
    s.energy_j = stat([](const RunFigures& f) { return f.energy_j; });
    for (std::size_t t = 0; t < study.targets.size(); ++t) {
      std::vector<double> rounds, up, down, time, energy;
      for (const RunFigures& f : figures) {
        if (!f.to_target[t]) continue;
        rounds.push_back(f.to_target[t]->rounds);
        up.push_back(f.to_target[t]->bytes_up);
        down.push_back(f.to_target[t]->bytes_down);
        time.push_back(f.to_target[t]->sim_time_s);
        energy.push_back(f.to_target[t]->energy_j);
      }
      s.targets.push_back({rounds.size(), mean_ci(rounds), mean_ci(up), mean_ci(down), mean_ci(time), mean_ci(energy)});
    }
  }
  return out;
}

namespace {

void write_runs_csv(const Study& study, const std::string& out_dir) {
  // Metrics columns: the union over runs, in first-seen order (per-class
  // energy columns differ between populations).
  std::vector<std::string> columns;
  std::vector<CsvTable> tables;
  for (const StudyRun& run : study.runs) {
    tables.push_back(read_csv((fs::path(out_dir) / "runs" / run.id / "metrics.csv").string()));
    for (const std::string& h : tables.back().header)
      if (std::find(columns.begin(), columns.end(), h) == columns.end()) columns.push_back(h);
  }
  std::ostringstream csv;
  csv << "config";
  for (const StudyAxis& a : study.axes) csv << "," << a.name;
  csv << ",seed";
  for (const std::string& c : columns) csv << "," << c;
  csv << ",cum_bytes_up,cum_bytes_down,cum_energy_j\n";
  for (std::size_t r = 0; r < study.runs.size(); ++r) {
    const StudyRun& run = study.runs[r];
    const CsvTable& t = tables[r];
    const std::string file = (fs::path(out_dir) / "runs" / run.id / "metrics.csv").string();
    std::vector<std::ptrdiff_t> index;
    for (const std::string& c : columns) {
      const auto it = std::find(t.header.begin(), t.header.end(), c);
      index.push_back(it == t.header.end() ? -1 : it - t.header.begin());
    }
    const std::size_t up = t.column("bytes_up", file), down = t.column("bytes_down", file),
                      energy = t.column("energy_j", file);
    unsigned long long cum_up = 0, cum_down = 0;
    double cum_energy = 0.0;
    for (const auto& row : t.rows) {
      cum_up += std::stoull(row[up]);
      cum_down += std::stoull(row[down]);
      cum_energy += std::stod(row[energy]);
      csv << study.configs[run.config].label;
      for (const std::string& l : study.configs[run.config].axis_labels) csv << "," << l;
      csv << "," << run.seed;
      for (std::ptrdiff_t i : index) csv << "," << (i < 0 ? "" : row[static_cast<std::size_t>(i)]);
      csv << "," << cum_up << "," << cum_down << "," << csv_number(cum_energy) << "\n";
    }
  }
  write_file_atomically((fs::path(out_dir) / "runs.csv").string(), csv.str());
}

void write_summary_csv(const Study& study, const std::vector<ConfigSummary>& summary, const std::string& out_dir) {
  std::ostringstream csv;
  csv << "config";
  for (const StudyAxis& a : study.axes) csv << "," << a.name;
  csv << ",seeds";
  for (const char* m :
       {"final_accuracy", "best_accuracy", "final_test_loss", "bytes_up", "bytes_down", "sim_time_s", "energy_j"})
    csv << "," << m << "_mean," << m << "_ci95";
  for (double target : study.targets) {
    const std::string t = target_text(target);
    csv << ",reached_" << t;
    for (const char* m : {"rounds", "bytes_up", "bytes_down", "sim_time_s", "energy_j"})
      csv << "," << m << "_to_" << t << "_mean," << m << "_to_" << t << "_ci95";
  }
  csv << "\n";
  auto cells = [&](const MeanCi& m) { csv << "," << csv_number(m.mean) << "," << csv_number(m.ci95); };
  for (std::size_t c = 0; c < study.configs.size(); ++c) {
    const ConfigSummary& s = summary[c];
    csv << study.configs[c].label;
    for (const std::string& l : study.configs[c].axis_labels) csv << "," << l;
    csv << "," << s.seeds;
    for (const MeanCi* m : {&s.final_accuracy, &s.best_accuracy, &s.final_test_loss, &s.bytes_up, &s.bytes_down,
                            &s.sim_time_s, &s.energy_j})
      cells(*m);
    for (const TargetSummary& t : s.targets) {
      csv << "," << t.reached;
      for (const MeanCi* m : {&t.rounds, &t.bytes_up, &t.bytes_down, &t.sim_time_s, &t.energy_j}) cells(*m);
    }
    csv << "\n";
  }
  write_file_atomically((fs::path(out_dir) / "summary.csv").string(), csv.str());
}

void write_study_json(const Study& study, const std::string& out_dir) {
  std::ostringstream j;
  j << "{\n  \"name\": " << json_string(study.name) << ",\n  \"description\": " << json_string(study.description)
    << ",\n  \"file\": " << json_string(study.file) << ",\n  \"scenario\": " << json_string(study.scenario)
    << ",\n  \"axes\": [";
  for (std::size_t a = 0; a < study.axes.size(); ++a) {
    j << (a ? ", " : "") << "{\"name\": " << json_string(study.axes[a].name) << ", \"values\": [";
    for (std::size_t v = 0; v < study.axes[a].values.size(); ++v)
      j << (v ? ", " : "") << json_string(study.axes[a].values[v].label);
    j << "]}";
  }
  j << "],\n  \"seeds\": [";
  for (std::size_t s = 0; s < study.seeds.size(); ++s) j << (s ? ", " : "") << study.seeds[s];
  j << "],\n  \"targets\": [";
  for (std::size_t t = 0; t < study.targets.size(); ++t) j << (t ? ", " : "") << target_text(study.targets[t]);
  j << "],\n  \"configs\": [";
  for (std::size_t c = 0; c < study.configs.size(); ++c) j << (c ? ", " : "") << json_string(study.configs[c].label);
  j << "]\n}\n";
  write_file_atomically((fs::path(out_dir) / "study.json").string(), j.str());
}

// The summary as table rows: one per configuration.
struct SummaryTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> numeric;
};

SummaryTable summary_table(const Study& study, const std::vector<ConfigSummary>& summary) {
  SummaryTable t;
  t.header = {"configuration", "seeds",      "final accuracy", "best accuracy", "final test loss",
              "uplink MB",     "sim time s", "energy J"};
  for (double target : study.targets) {
    const std::string x = target_text(target);
    for (const std::string& h : {"reached " + x, "rounds to " + x, "uplink MB to " + x, "sim s to " + x, "J to " + x})
      t.header.push_back(h);
  }
  t.numeric.assign(t.header.size(), true);
  t.numeric[0] = false;
  for (std::size_t c = 0; c < study.configs.size(); ++c) {
    const ConfigSummary& s = summary[c];
    std::vector<std::string> row{study.configs[c].label, std::to_string(s.seeds), format_mean_ci(s.final_accuracy, 4),
                                 format_mean_ci(s.best_accuracy, 4), format_mean_ci(s.final_test_loss, 4),
                                 format_mean_ci(s.bytes_up, 2, 1e-6), format_mean_ci(s.sim_time_s, 1),
                                 format_mean_ci(s.energy_j, 1)};
    for (const TargetSummary& ts : s.targets) {
      row.push_back(std::to_string(ts.reached) + "/" + std::to_string(s.seeds));
      row.push_back(format_mean_ci(ts.rounds, 1));
      row.push_back(format_mean_ci(ts.bytes_up, 2, 1e-6));
      row.push_back(format_mean_ci(ts.sim_time_s, 1));
      row.push_back(format_mean_ci(ts.energy_j, 1));
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

std::string markdown_table(const SummaryTable& t) {
  std::ostringstream md;
  for (std::size_t i = 0; i < t.header.size(); ++i) md << "| " << t.header[i] << " ";
  md << "|\n";
  for (std::size_t i = 0; i < t.header.size(); ++i) md << (t.numeric[i] ? "|---:" : "|---");
  md << "|\n";
  for (const auto& row : t.rows) {
    for (const std::string& cell : row) md << "| " << cell << " ";
    md << "|\n";
  }
  return md.str();
}

void print_table(std::ostream& out, const SummaryTable& t) {
  std::vector<std::size_t> width(t.header.size());
  for (std::size_t i = 0; i < t.header.size(); ++i) {
    width[i] = t.header[i].size();
    for (const auto& row : t.rows) width[i] = std::max(width[i], row[i].size() - (row[i].find("±") != std::string::npos));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const std::size_t visible = cells[i].size() - (cells[i].find("±") != std::string::npos);
      const std::string pad(width[i] - visible, ' ');
      out << (i ? "  " : "") << (i == 0 ? cells[i] + pad : pad + cells[i]);
    }
    out << "\n";
  };
  line(t.header);
  for (const auto& row : t.rows) line(row);
}

}  // namespace

void write_study_tables(const Study& study, const std::vector<ConfigSummary>& summary, const std::string& out_dir) {
  write_runs_csv(study, out_dir);
  write_summary_csv(study, summary, out_dir);
  write_study_json(study, out_dir);
}

void summarize_study(const Study& study, const SweepOptions& options, std::ostream& out) {
  const std::vector<ConfigSummary> summary = summarize_runs(study, options.out_dir);
  write_study_tables(study, summary, options.out_dir);
  const SummaryTable table = summary_table(study, summary);
  out << "\n" << study.name << ": " << study.configs.size() << " configuration(s) x " << study.seeds.size()
      << " seed(s); mean ± 95% CI over seeds (Student t); targets counted at the first evaluated round at or above "
         "them, CI over the seeds that reached them\n\n";
  print_table(out, table);
  write_file_atomically((fs::path(options.out_dir) / "summary.md").string(), markdown_table(table));
  if (!options.plots) return;

  HtmlReport report("fedsim study: " + study.name);
  if (!study.description.empty()) report.paragraph(study.description);
  std::string axes;
  for (const StudyAxis& a : study.axes) {
    axes += (axes.empty() ? "" : "; ") + a.name + " =";
    for (const AxisValue& v : a.values) axes += " " + v.label;
  }
  report.paragraph("Study file " + study.file + ", base scenario " + study.scenario + "; " +
                   std::to_string(study.configs.size()) + " configuration(s) x " + std::to_string(study.seeds.size()) +
                   " seed(s) = " + std::to_string(study.runs.size()) + " runs." +
                   (axes.empty() ? "" : " Axes: " + axes + "."));
  report.heading("Summary");
  report.paragraph(
      "Mean ± half-width of the 95% confidence interval over seeds (Student t, n - 1 degrees of freedom; no interval "
      "with one seed). Totals are over the whole run. 'reached' counts the seeds whose run reached the target "
      "accuracy; the figures to a target are counted up to and including the first evaluated round at or above it "
      "(so at eval_every resolution), and averaged over the seeds that reached it only.");
  report.table(table.header, table.rows, table.numeric);
  const std::string why = run_plot_script({options.out_dir});
  report.heading("Figures");
  if (!why.empty()) {
    std::cerr << "fedsim: warning: figures not made: " << why << "\n";
    report.paragraph("Figures were not made: " + why + ".");
  } else {
    const fs::path plots = fs::path(options.out_dir) / "plots";
    const std::vector<std::pair<std::string, std::string>> figures{
        {"accuracy_vs_round", "Test accuracy against round (mean over seeds, 95% CI band)."},
        {"accuracy_vs_uplink_bits", "Test accuracy against cumulative uplink bits."},
        {"accuracy_vs_time", "Test accuracy against simulated time."},
        {"accuracy_vs_energy", "Test accuracy against cumulative energy."},
        {"pareto_bits", "Final accuracy against total uplink bits, with the Pareto frontier."},
        {"pareto_energy", "Final accuracy against total energy, with the Pareto frontier."}};
    for (const auto& [name, caption] : figures) report.figure((plots / (name + ".png")).string(), caption);
  }
  report.write((fs::path(options.out_dir) / "report.html").string());
  out << "\nreport in " << (fs::path(options.out_dir) / "report.html").string() << "\n";
}

}  // namespace fedsim
