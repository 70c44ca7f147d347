#include "tools/tune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>

#include "core/base/errors.h"
#include "server/scenario.h"
#include "tools/report.h"
#include "tools/study_stats.h"

namespace fedsim {
namespace {

namespace fs = std::filesystem;

// One point of the search grid and what is known about it.
struct Candidate {
  std::string name;                    // "c7", or "base"
  std::vector<std::size_t> choice;     // value index per searched key (empty for base)
  std::vector<std::string> overrides;  // the search's --set assignments
  std::string status = "alive";        // alive, finished, infeasible, pruned, stopped, not_reached; chosen / base at the end
  std::size_t rung = 0;                // last rung evaluated
  std::size_t rounds = 0;              // its rounds
  std::vector<RunFigures> figures;     // per seed, at that rung
};

double metric_of(const std::string& metric, const ToTarget& t) {
  return metric == "energy_j" ? t.energy_j : metric == "sim_time_s" ? t.sim_time_s : t.bytes_up;
}

double metric_total(const std::string& metric, const RunFigures& f) {
  return metric == "energy_j" ? f.energy_j : metric == "sim_time_s" ? f.sim_time_s : f.bytes_up;
}

bool all_reached(const Candidate& c) {
  return std::all_of(c.figures.begin(), c.figures.end(), [](const RunFigures& f) { return f.to_target[0].has_value(); });
}

// Every seed reached the target within the limits.
bool within_limits(const TuneSpec& spec, const Candidate& c) {
  for (const RunFigures& f : c.figures) {
    if (!f.to_target[0]) return false;
    if (spec.max_sim_time_s > 0 && f.to_target[0]->sim_time_s > spec.max_sim_time_s) return false;
    if (spec.max_energy_j > 0 && f.to_target[0]->energy_j > spec.max_energy_j) return false;
  }
  return true;
}

// A seed that has not reached the target but already spent a limit can never meet it.
bool cannot_meet_limits(const TuneSpec& spec, const Candidate& c) {
  for (const RunFigures& f : c.figures) {
    const double time = f.to_target[0] ? f.to_target[0]->sim_time_s : f.sim_time_s;
    const double energy = f.to_target[0] ? f.to_target[0]->energy_j : f.energy_j;
    if ((spec.max_sim_time_s > 0 && time > spec.max_sim_time_s) || (spec.max_energy_j > 0 && energy > spec.max_energy_j))
      return true;
  }
  return false;
}

// What the candidate will have spent on the metric when every seed reaches the
// target: at least what it has spent so far (seeds still short of it) or what
// it took (seeds that reached it). Mean over seeds.
double metric_lower_bound(const std::string& metric, const Candidate& c) {
  double sum = 0.0;
  for (const RunFigures& f : c.figures) sum += f.to_target[0] ? metric_of(metric, *f.to_target[0]) : metric_total(metric, f);
  return sum / static_cast<double>(c.figures.size());
}

MeanCi to_target_stat(const Candidate& c, double (*field)(const ToTarget&)) {
  std::vector<double> v;
  for (const RunFigures& f : c.figures)
    if (f.to_target[0]) v.push_back(field(*f.to_target[0]));
  return mean_ci(v);
}

MeanCi metric_to_target(const std::string& metric, const Candidate& c) {
  std::vector<double> v;
  for (const RunFigures& f : c.figures)
    if (f.to_target[0]) v.push_back(metric_of(metric, *f.to_target[0]));
  return mean_ci(v);
}

MeanCi final_accuracy(const Candidate& c) {
  std::vector<double> v;
  for (const RunFigures& f : c.figures) v.push_back(f.final_accuracy);
  return mean_ci(v);
}

std::string metric_unit(const std::string& metric) {
  return metric == "energy_j" ? "J" : metric == "sim_time_s" ? "s (simulated)" : "uplink bytes";
}

std::string setting_text(const TuneSpec& spec, const Candidate& c) {
  if (c.choice.empty()) return "the base scenario's own setting";
  std::string s;
  for (std::size_t k = 0; k < spec.keys.size(); ++k)
    s += (k ? ", " : "") + spec.keys[k] + " = " + spec.value_labels[k][c.choice[k]];
  return s;
}

}  // namespace

TuneSpec parse_tune(const Study& study) {
  const Config& root = study.root;
  if (!root.has("tune")) root.fail("tune", "a `tune:` section (fedsim tune needs one; see tools/tune.h)", "nothing");
  const Config t = root.child("tune");
  TuneSpec s;
  s.metric = t.get_choice("minimise", "energy_j", {"energy_j", "sim_time_s", "bytes_up"});
  s.target = t.get_double("target", 0.0, 1.0);
  s.max_sim_time_s = t.get_double("max_sim_time_s", 0.0, 0.0, 1e15);
  s.max_energy_j = t.get_double("max_energy_j", 0.0, 0.0, 1e15);
  s.samples = static_cast<std::size_t>(t.get_int("samples", 0, 0, 100000));
  s.eta = static_cast<std::size_t>(t.get_int("eta", 3, 2, 100));
  s.min_rounds = static_cast<std::size_t>(t.get_int("min_rounds", 10, 1, 100000000));
  s.budget_runs = static_cast<std::size_t>(t.get_int("budget_runs", 200, 1, 100000000));
  s.budget_wall_s = t.get_double("budget_wall_s", 0.0, 0.0, 1e9);
  const Config search = t.child("search");
  if (!search.is_map() || search.keys().empty())
    t.fail("search", "a map of scenario keys to lists of candidate values", "nothing or an empty map");
  std::size_t grid = 1;
  for (const std::string& key : search.keys()) {
    const std::vector<Config> values = search.children(key);
    if (values.empty()) search.fail(key, "a non-empty list of candidate values", "an empty list or a scalar");
    s.keys.push_back(key);
    s.values.emplace_back();
    s.value_labels.emplace_back();
    for (const Config& v : values) {
      const std::string assignment = override_assignment(key, v.node());
      s.values.back().push_back(assignment);
      s.value_labels.back().push_back(assignment.substr(key.size() + 1));
    }
    grid *= values.size();
    if (grid > 1000000) search.fail(key, "a grid of at most 10^6 points", "more");
  }
  root.finish();
  // Every candidate value must build a scenario: check each on its own.
  for (std::size_t k = 0; k < s.keys.size(); ++k) {
    for (const std::string& assignment : s.values[k]) {
      std::vector<std::string> o = study.overrides;
      o.push_back(assignment);
      try {
        (void)load_scenario(study.scenario, o);
      } catch (const InputError& e) {
        throw InputError(study.file + ": tune.search." + s.keys[k] + ": value " + assignment.substr(s.keys[k].size() + 1) +
                         ": " + e.what());
      }
    }
  }
  const Scenario base = load_scenario(study.scenario, study.overrides);
  s.max_rounds = base.rounds;
  s.eval_every = base.eval_every;
  return s;
}

void run_tune(const Study& study, const TuneSpec& spec, const SweepOptions& options, std::ostream& out) {
  const auto wall_start = std::chrono::steady_clock::now();
  // The grid, first key slowest; or `samples` of its points drawn with a
  // generator seeded by the study's first seed.
  std::size_t grid = 1;
  for (const auto& v : spec.values) grid *= v.size();
  std::vector<std::size_t> points(grid);
  for (std::size_t i = 0; i < grid; ++i) points[i] = i;
  if (spec.samples > 0 && spec.samples < grid) {
    std::mt19937_64 rng(study.seeds.front());
    for (std::size_t i = 0; i < spec.samples; ++i) std::swap(points[i], points[i + rng() % (grid - i)]);
    points.resize(spec.samples);
    std::sort(points.begin(), points.end());
  }
  std::vector<Candidate> candidates;
  for (std::size_t p : points) {
    Candidate c;
    c.name = "c" + std::to_string(p);
    c.choice.assign(spec.keys.size(), 0);
    for (std::size_t k = spec.keys.size(), rest = p; k-- > 0;) {
      c.choice[k] = rest % spec.values[k].size();
      rest /= spec.values[k].size();
    }
    for (std::size_t k = 0; k < spec.keys.size(); ++k) c.overrides.push_back(spec.values[k][c.choice[k]]);
    candidates.push_back(std::move(c));
  }

  // Rung rounds: min_rounds, x eta, ..., the scenario's rounds.
  std::vector<std::size_t> rungs;
  // Each rounded up to a multiple of eval_every, so that a rung ends on a
  // round that the full run evaluates too.
  for (std::size_t r = std::min(spec.min_rounds, spec.max_rounds); ; r *= spec.eta) {
    const std::size_t rounds = std::min((r + spec.eval_every - 1) / spec.eval_every * spec.eval_every, spec.max_rounds);
    if (rungs.empty() || rungs.back() != rounds) rungs.push_back(rounds);
    if (rungs.back() == spec.max_rounds) break;
  }
  auto jobs_for = [&](const Candidate& c, std::size_t rounds) {
    std::vector<RunJob> jobs;
    for (std::uint64_t seed : study.seeds) {
      std::vector<std::string> o = study.overrides;
      o.insert(o.end(), c.overrides.begin(), c.overrides.end());
      o.push_back("rounds=" + std::to_string(rounds));
      o.push_back("seed=" + std::to_string(seed));
      jobs.push_back({c.name + ";rounds=" + std::to_string(rounds) + ";seed=" + std::to_string(seed), study.scenario, o});
    }
    return jobs;
  };
  auto collect = [&](Candidate& c, std::size_t rung, std::size_t rounds) {
    c.rung = rung;
    c.rounds = rounds;
    c.figures.clear();
    for (const RunJob& job : jobs_for(c, rounds)) {
      const std::string file = (fs::path(options.out_dir) / "runs" / job.id / "metrics.csv").string();
      c.figures.push_back(run_figures(read_csv(file), {spec.target}, file));
    }
  };

  std::size_t runs_used = 0;
  std::ostringstream log;
  for (std::size_t rung = 0; rung < rungs.size(); ++rung) {
    std::vector<Candidate*> alive;
    for (Candidate& c : candidates)
      if (c.status == "alive") alive.push_back(&c);
    if (alive.empty()) break;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    const std::size_t affordable = (spec.budget_runs - std::min(runs_used, spec.budget_runs)) / study.seeds.size();
    if (rung > 0 && (affordable == 0 || (spec.budget_wall_s > 0 && wall > spec.budget_wall_s))) {
      for (Candidate* c : alive) c->status = "stopped";
      log << "budget spent before rung " << rung << " (" << rungs[rung] << " rounds): " << alive.size()
          << " candidate(s) stopped\n";
      break;
    }
    if (alive.size() > affordable) {  // keep the best-ranked that the budget allows
      for (std::size_t i = affordable; i < alive.size(); ++i) alive[i]->status = "stopped";
      alive.resize(affordable);
    }
    std::vector<RunJob> jobs;
    for (Candidate* c : alive)
      for (RunJob& j : jobs_for(*c, rungs[rung])) jobs.push_back(std::move(j));
    execute_jobs(jobs, options, study.name + " rung " + std::to_string(rung) + " (" + std::to_string(rungs[rung]) + " rounds)");
    runs_used += jobs.size();
    for (Candidate* c : alive) collect(*c, rung, rungs[rung]);

    double best = std::numeric_limits<double>::infinity();
    for (const Candidate& c : candidates)
      if (c.status == "finished" || (c.status == "alive" && all_reached(c) && within_limits(spec, c)))
        best = std::min(best, metric_to_target(spec.metric, c).mean);
    std::vector<Candidate*> unfinished;
    for (Candidate* c : alive) {
      if (all_reached(*c))
        c->status = within_limits(spec, *c) ? "finished" : "infeasible";
      else if (cannot_meet_limits(spec, *c))
        c->status = "infeasible";
      else if (metric_lower_bound(spec.metric, *c) >= best)
        c->status = "pruned";
      else if (rung + 1 == rungs.size())
        c->status = "not_reached";
      else
        unfinished.push_back(c);
    }
    // Promote the 1/eta with the highest mean accuracy (ties: lower spending, then grid order).
    std::stable_sort(unfinished.begin(), unfinished.end(), [&](const Candidate* a, const Candidate* b) {
      const double fa = final_accuracy(*a).mean, fb = final_accuracy(*b).mean;
      if (fa != fb) return fa > fb;
      return metric_lower_bound(spec.metric, *a) < metric_lower_bound(spec.metric, *b);
    });
    const std::size_t keep = (unfinished.size() + spec.eta - 1) / spec.eta;
    for (std::size_t i = keep; i < unfinished.size(); ++i) unfinished[i]->status = "stopped";
    log << "rung " << rung << ": " << alive.size() << " candidate(s) x " << study.seeds.size() << " seed(s) at "
        << rungs[rung] << " rounds; " << std::count_if(alive.begin(), alive.end(), [](auto* c) { return c->status == "finished"; })
        << " finished, " << keep << " promoted\n";
  }

  // The base scenario's own setting, every seed, full rounds.
  Candidate base;
  base.name = "base";
  execute_jobs(jobs_for(base, spec.max_rounds), options, study.name + " base");
  collect(base, rungs.size() - 1, spec.max_rounds);
  base.status = "base";

  Candidate* chosen = nullptr;
  for (Candidate& c : candidates)
    if (c.status == "finished" && (!chosen || metric_to_target(spec.metric, c).mean < metric_to_target(spec.metric, *chosen).mean))
      chosen = &c;
  if (chosen) chosen->status = "chosen";

  // tune.csv: every candidate at its last rung, then the base.
  std::ostringstream csv;
  csv << "candidate,rung,rounds,status,metric,target,seeds,reached,metric_to_target_mean,metric_to_target_ci95,"
         "metric_total_mean,final_accuracy_mean,final_accuracy_ci95";
  for (const std::string& k : spec.keys) csv << "," << k;
  csv << "\n";
  std::vector<const Candidate*> rows;
  for (const Candidate& c : candidates)
    if (!c.figures.empty()) rows.push_back(&c);
  rows.push_back(&base);
  for (const Candidate* c : rows) {
    const MeanCi m = metric_to_target(spec.metric, *c), acc = final_accuracy(*c);
    std::vector<double> totals;
    for (const RunFigures& f : c->figures) totals.push_back(metric_total(spec.metric, f));
    csv << c->name << "," << c->rung << "," << c->rounds << "," << c->status << "," << spec.metric << ","
        << target_text(spec.target) << "," << c->figures.size() << "," << m.n << "," << csv_number(m.mean) << ","
        << csv_number(m.ci95) << "," << csv_number(mean_ci(totals).mean) << "," << csv_number(acc.mean) << ","
        << csv_number(acc.ci95);
    for (std::size_t k = 0; k < spec.keys.size(); ++k) {
      std::string label = c->choice.empty() ? "" : spec.value_labels[k][c->choice[k]];
      if (label.find_first_of(",\"") != std::string::npos) {
        std::string quoted = "\"";
        for (char ch : label) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        label = quoted + "\"";
      }
      csv << "," << label;
    }
    csv << "\n";
  }
  fs::create_directories(options.out_dir);
  write_file_atomically((fs::path(options.out_dir) / "tune.csv").string(), csv.str());

  // The frontier: candidates that reached the target, Pareto-optimal in
  // (metric to target, simulated time to target).
  const bool time_is_metric = spec.metric == "sim_time_s";
  auto second = [&](const Candidate& c) {
    return time_is_metric ? to_target_stat(c, [](const ToTarget& t) { return t.energy_j; }).mean
                          : to_target_stat(c, [](const ToTarget& t) { return t.sim_time_s; }).mean;
  };
  std::vector<const Candidate*> reached;
  for (const Candidate& c : candidates)
    if (c.status == "finished" || c.status == "chosen") reached.push_back(&c);
  std::sort(reached.begin(), reached.end(), [&](const Candidate* a, const Candidate* b) {
    return metric_to_target(spec.metric, *a).mean < metric_to_target(spec.metric, *b).mean;
  });
  std::vector<const Candidate*> frontier;
  double best_second = std::numeric_limits<double>::infinity();
  for (const Candidate* c : reached)
    if (second(*c) < best_second) frontier.push_back(c), best_second = second(*c);

  // What is printed and what the report says.
  const std::string unit = metric_unit(spec.metric);
  std::ostringstream summary;
  summary << study.name << ": minimise " << spec.metric << " to reach test accuracy " << target_text(spec.target);
  if (spec.max_sim_time_s > 0) summary << ", within " << spec.max_sim_time_s << " simulated s";
  if (spec.max_energy_j > 0) summary << ", within " << spec.max_energy_j << " J";
  summary << "; " << candidates.size() << " candidate(s), " << study.seeds.size() << " seed(s), rungs of";
  for (std::size_t r : rungs) summary << " " << r;
  summary << " rounds; " << runs_used << " runs (+ " << study.seeds.size() << " for the base)";
  std::vector<std::string> lines;
  auto describe = [&](const char* what, const Candidate& c) {
    std::ostringstream o;
    o << what << ": " << setting_text(spec, c) << "\n  " << spec.metric << " to target "
      << format_mean_ci(metric_to_target(spec.metric, c), 2) << " " << unit << " (" << metric_to_target(spec.metric, c).n << "/"
      << c.figures.size() << " seeds reached it), rounds to target "
      << format_mean_ci(to_target_stat(c, [](const ToTarget& t) { return t.rounds; }), 1) << ", simulated s to target "
      << format_mean_ci(to_target_stat(c, [](const ToTarget& t) { return t.sim_time_s; }), 1) << ", final accuracy "
      << format_mean_ci(final_accuracy(c), 4) << " at " << c.rounds << " rounds";
    lines.push_back(o.str());
  };
  if (chosen)
    describe("chosen", *chosen);
  else
    lines.push_back("no candidate reached the target within the limits on every seed");
  describe("base", base);
  if (chosen) {
    std::vector<double> saving;
    for (std::size_t s = 0; s < base.figures.size(); ++s)
      if (base.figures[s].to_target[0] && chosen->figures[s].to_target[0])
        saving.push_back(metric_of(spec.metric, *base.figures[s].to_target[0]) -
                         metric_of(spec.metric, *chosen->figures[s].to_target[0]));
    const MeanCi base_m = metric_to_target(spec.metric, base);
    std::ostringstream o;
    if (saving.size() == base.figures.size()) {
      const MeanCi d = mean_ci(saving);
      o << "saving against the base: " << format_mean_ci(d, 2) << " " << unit << " per run (paired over " << d.n << " seeds), "
        << std::fixed << std::setprecision(1) << 100.0 * d.mean / base_m.mean << "% of the base's";
    } else {
      o << "saving against the base: not defined: the base reached the target on " << base_m.n << " of "
        << base.figures.size() << " seeds";
    }
    lines.push_back(o.str());
  }
  out << summary.str() << "\n" << log.str();
  for (const std::string& l : lines) out << l << "\n";
  out << "frontier (" << spec.metric << " to target against " << (time_is_metric ? "energy_j" : "sim_time_s")
      << " to target):\n";
  for (const Candidate* c : frontier)
    out << "  " << std::setw(12) << format_mean_ci(metric_to_target(spec.metric, *c), 2) << "  " << std::setw(12) << std::fixed
        << std::setprecision(1) << second(*c) << "  " << setting_text(spec, *c) << "\n";

  if (!options.plots) return;
  HtmlReport report("fedsim tune: " + study.name);
  if (!study.description.empty()) report.paragraph(study.description);
  report.paragraph(summary.str() + ".");
  report.heading("Result");
  for (const std::string& l : lines) report.paragraph(l);
  report.paragraph(
      "Figures are mean ± half-width of the 95% confidence interval over seeds (Student t). A target is reached at "
      "the first evaluated round at or above it (eval_every resolution). The saving is the per-seed difference "
      "between the base and the chosen setting (same seeds), averaged.");
  report.heading("Frontier");
  std::vector<std::vector<std::string>> frontier_rows;
  for (const Candidate* c : frontier)
    frontier_rows.push_back({c->name, setting_text(spec, *c), format_mean_ci(metric_to_target(spec.metric, *c), 2),
                             csv_number(second(*c)), format_mean_ci(final_accuracy(*c), 4)});
  report.table({"candidate", "setting", spec.metric + " to target", (time_is_metric ? "J" : "sim s") + std::string(" to target"),
                "final accuracy"},
               frontier_rows, {false, false, true, true, true});
  report.heading("Every candidate");
  std::vector<std::vector<std::string>> all_rows;
  for (const Candidate* c : rows)
    all_rows.push_back({c->name, setting_text(spec, *c), c->status, std::to_string(c->rounds),
                        format_mean_ci(metric_to_target(spec.metric, *c), 2), format_mean_ci(final_accuracy(*c), 4)});
  report.table({"candidate", "setting", "status", "rounds", spec.metric + " to target", "final accuracy"}, all_rows,
               {false, false, false, true, true, true});
  const std::string why = run_plot_script({"--tune", options.out_dir});
  if (!why.empty()) {
    std::cerr << "fedsim: warning: figures not made: " << why << "\n";
    report.paragraph("Figures were not made: " + why + ".");
  } else {
    report.figure((fs::path(options.out_dir) / "plots" / "tune_frontier.png").string(),
                  "Every candidate at its last rung: final accuracy against the metric spent.");
  }
  report.write((fs::path(options.out_dir) / "report.html").string());
  out << "report in " << (fs::path(options.out_dir) / "report.html").string() << "\n";
}

}  // namespace fedsim
