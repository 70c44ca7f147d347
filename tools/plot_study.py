#!/usr/bin/python3
"""Figures of a fedsim study (`fedsim sweep`) or tuning run (`fedsim tune`).

    plot_study.py DIR          reads DIR/runs.csv, DIR/summary.csv and, if it
                               exists, DIR/study.json (name -> title, targets ->
                               dashed lines); writes into DIR/plots/
                               accuracy_vs_round, accuracy_vs_uplink_bits,
                               accuracy_vs_time, accuracy_vs_energy (mean test
                               accuracy over seeds per configuration with a 95%
                               Student-t band), pareto_bits and pareto_energy
                               (final accuracy against total uplink bits / joules,
                               95% CI bars, Pareto frontier as a step line).
    plot_study.py --tune DIR   reads DIR/tune.csv (and DIR/study.json); writes
                               DIR/plots/tune_frontier: every candidate at its
                               last rung, minimised metric against accuracy.

Every figure is written as .png (150 dpi) and .svg, byte-identical from run to
run (no dates or versions embedded). Exit status: 0 success, 2 missing or
malformed input (`plot_study.py: error: FILE: WHAT` on stderr), 3 matplotlib
(or numpy) not importable by this interpreter (Debian: python3-matplotlib,
for /usr/bin/python3). scipy is used for the t quantile when importable.
"""
import argparse
import csv
import json
import math
import os
import sys

PROG = "plot_study.py"
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import matplotlib.transforms
    import numpy as np
except ImportError as e:
    sys.stderr.write(f"{PROG}: error: cannot import matplotlib/numpy with {sys.executable} "
                     f"({e}); install python3-matplotlib\n")
    sys.exit(3)

plt.rcParams.update({"svg.hashsalt": "fedsim", "savefig.dpi": 150, "font.size": 9,
                     "grid.color": "0.88", "grid.linewidth": 0.6, "axes.grid": True})
COLORS = plt.get_cmap("tab10").colors
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
try:
    from scipy.stats import t as student_t
except ImportError:
    student_t = None
# Student t quantile t_{0.975, df} for df = 1..30 (without scipy); beyond, the
# asymptotic expansion of Abramowitz & Stegun 26.7.5 (error < 1e-5 for df > 30).
T975 = [12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818, 2.4469119, 2.3646243,
        2.3060041, 2.2621572, 2.2281389, 2.2009852, 2.1788128, 2.1603687, 2.1447867,
        2.1314495, 2.1199053, 2.1098156, 2.1009220, 2.0930241, 2.0859634, 2.0796138,
        2.0738731, 2.0686576, 2.0638986, 2.0595386, 2.0555294, 2.0518305, 2.0484071,
        2.0452296, 2.0422725]


class InputError(Exception):
    def __init__(self, path, what):
        super().__init__(f"{path}: {what}")


def t975(df):
    if student_t is not None:
        return float(student_t.ppf(0.975, df))
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959963985
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def mean_ci(values):
    """Mean and 95% CI half-width (nan when there is a single value)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, math.nan
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, t975(n - 1) * sd / math.sqrt(n)


def fmt(v):
    return "(empty)" if v is None else f"{v:g}"


def read_csv(path, required, numeric):
    """Rows of a CSV as dicts; `numeric` columns parsed as float or None (empty)."""
    try:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
    except OSError as e:
        raise InputError(path, e.strerror or str(e))
    if not table or not table[0]:
        raise InputError(path, "empty file")
    header = table[0]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, "missing column(s) " + ", ".join(missing))
    rows = []
    for line, cells in enumerate(table[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise InputError(path, f"line {line}: {len(cells)} fields, header has {len(header)} "
                             "(a cell containing a comma must be double-quoted)")
        row = dict(zip(header, cells))
        for c in numeric:
            try:
                row[c] = float(row[c]) if row[c].strip() else None
                if row[c] is not None and not math.isfinite(row[c]):
                    raise ValueError
            except ValueError:
                raise InputError(path, f"line {line}: column {c}: not a finite number: {row[c]!r}")
        rows.append(row)
    if not rows:
        raise InputError(path, "no data rows")
    return header, rows


def read_study(d):
    path = os.path.join(d, "study.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            study = json.load(f)
        targets = [float(t) for t in study.get("targets") or []]
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise InputError(path, f"not a study description ({e})")
    return {"name": str(study.get("name") or ""), "targets": targets}


def style(i):
    return dict(color=COLORS[i % len(COLORS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                marker=MARKERS[i % len(MARKERS)])


def new_axes(study, tall=False):
    fig, ax = plt.subplots(figsize=(6.4, 5.0 if tall else 4.2))
    if study.get("name"):
        ax.set_title(study["name"])
    return fig, ax


def finish(fig, ax, plots, name, ncol=None):
    """Legend (inside if ncol is None, else below the axes in ncol columns); write PNG and SVG."""
    if ncol:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=ncol, fontsize=7,
                  frameon=False)
    else:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    os.makedirs(plots, exist_ok=True)
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        final = os.path.join(plots, f"{name}.{ext}")
        tmp = final + ".tmp"
        fig.savefig(tmp, format=ext, metadata=meta, bbox_inches="tight")
        os.replace(tmp, final)  # readers never see half a file
    plt.close(fig)


def set_log_x(ax):
    ax.set_xscale("log")
    # Label some minor ticks (2, 3, 5 x 10^k) only when the axis spans a decade
    # or less: over two decades their scientific labels collide.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.LogFormatterSciNotation(
        labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def log_if_spans(ax, values, decades=1.5):
    pos = [v for v in values if v > 0]
    if pos and len(pos) == len(values) and math.log10(max(pos) / min(pos)) > decades:
        set_log_x(ax)


def curves(runs_path, rows, order):
    """Per configuration: per evaluated round, mean/CI of accuracy and mean x quantities."""
    by_round = {}  # config -> round -> list over seeds of (acc, bits, time, energy)
    seen = set()
    for r in rows:
        key = (r["config"], r["seed"], r["round"])
        if key in seen:
            raise InputError(runs_path, "duplicate row for config %s seed %s round %s"
                             % (key[0], key[1], fmt(key[2])))
        seen.add(key)
        if r["test_accuracy"] is None:
            continue
        if None in (r["round"], r["sim_time_s"], r["cum_bytes_up"], r["cum_energy_j"]):
            raise InputError(runs_path, f"config {r['config']} seed {r['seed']} round "
                             f"{fmt(r['round'])}: evaluated round with an empty metric")
        by_round.setdefault(r["config"], {}).setdefault(r["round"], []).append(
            (r["test_accuracy"], 8 * r["cum_bytes_up"], r["sim_time_s"], r["cum_energy_j"]))
    if not by_round:
        raise InputError(runs_path, "no evaluated round (test_accuracy is empty everywhere)")
    out = []
    for config in [c for c in order if c in by_round]:
        rounds = sorted(by_round[config])
        cols = {"round": np.array(rounds), "mean": [], "ci": [], "bits": [], "time": [], "energy": []}
        for rnd in rounds:
            seeds = by_round[config][rnd]
            m, ci = mean_ci([s[0] for s in seeds])
            cols["mean"].append(m)
            cols["ci"].append(ci)
            for k, key in enumerate(("bits", "time", "energy"), start=1):
                cols[key].append(sum(s[k] for s in seeds) / len(seeds))
        out.append((config, {k: np.asarray(v, dtype=float) for k, v in cols.items()}))
    return out


def plot_curves(data, study, plots, name, xkey, xlabel, xscale):
    fig, ax = new_axes(study, tall=len(data) > 6)
    allx = []
    for i, (config, c) in enumerate(data):
        x = c[xkey]
        allx.extend(x.tolist())
        ax.plot(x, c["mean"], label=config, linewidth=1.3, markersize=3, **style(i))
        ok = np.isfinite(c["ci"])
        if ok.any():
            ci = np.where(ok, c["ci"], 0.0)
            ax.fill_between(x, c["mean"] - ci, c["mean"] + ci, where=ok, color=style(i)["color"],
                            alpha=0.15 if len(data) <= 6 else 0.08, linewidth=0)
    right_edge = matplotlib.transforms.blended_transform_factory(ax.transAxes, ax.transData)
    for t in study.get("targets", []):
        ax.axhline(t, color="0.35", linestyle="--", linewidth=0.7)
        ax.text(1.005, t, f"{t:g}", transform=right_edge, fontsize=7, color="0.35", va="center")
    if xscale == "log" and min(allx) > 0:
        set_log_x(ax)
    elif xscale == "auto":
        log_if_spans(ax, allx)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    n = len(data)  # many curves: legend below the axes, in columns
    finish(fig, ax, plots, name, None if n <= 6 else 2 if n <= 8 else 3)


def frontier(points):
    """Points (x, y) not dominated by one with smaller-or-equal x and higher y, by x."""
    best, out = -math.inf, []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y))
            best = y
    return out


def draw_frontier(ax, points):
    f = frontier(points)
    if f:
        xs = [p[0] for p in f] + [max(p[0] for p in points)]
        ys = [p[1] for p in f] + [f[-1][1]]
        ax.plot(xs, ys, drawstyle="steps-post", color="0.3", linewidth=0.9, zorder=1,
                label="Pareto frontier")


def plot_pareto(summary, study, plots, name, xcol, scale, xlabel, log):
    fig, ax = new_axes(study, tall=len(summary) > 6)
    pts, many = [], len(summary) > 6  # many: number the markers, names in the legend
    for i, r in enumerate(summary):
        x, y = scale * r[xcol + "_mean"], r["final_accuracy_mean"]
        xe = scale * (r[xcol + "_ci95"] or 0.0)
        xerr = [[min(xe, 0.9 * x) if log == "log" else xe], [xe]]
        ax.errorbar([x], [y], yerr=[r["final_accuracy_ci95"] or 0.0], xerr=xerr, fmt=MARKERS[i % 8],
                    color=COLORS[i % 10], markersize=5, capsize=2, elinewidth=0.8, zorder=3,
                    label=f"{i + 1}: {r['config']}" if many else None)
        ax.annotate(str(i + 1) if many else r["config"], (x, y), xytext=(4, 4),
                    textcoords="offset points", fontsize=7)
        pts.append((x, y))
    draw_frontier(ax, pts)
    ax.margins(x=0.12, y=0.08)
    if log == "log" and min(p[0] for p in pts) > 0:
        set_log_x(ax)
    elif log == "auto":
        log_if_spans(ax, [p[0] for p in pts])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final test accuracy (mean, 95% CI)")
    finish(fig, ax, plots, name, (2 if len(summary) <= 10 else 3) if many else None)


def study_plots(d):
    study = read_study(d)
    plots = os.path.join(d, "plots")
    spath = os.path.join(d, "summary.csv")
    stats = [f"{q}_{s}" for q in ("final_accuracy", "bytes_up", "energy_j") for s in ("mean", "ci95")]
    _, summary = read_csv(spath, ["config"] + stats, stats)
    for r in summary:
        for c in ("final_accuracy_mean", "bytes_up_mean", "energy_j_mean"):
            if r[c] is None:
                raise InputError(spath, f"config {r['config']}: empty {c}")
    rpath = os.path.join(d, "runs.csv")
    metrics = ["round", "sim_time_s", "test_accuracy", "cum_bytes_up", "cum_energy_j"]
    header, runs = read_csv(rpath, ["config", "seed"] + metrics, metrics)
    if header.index("seed") < header.index("config"):
        raise InputError(rpath, "column seed comes before config")
    order = [r["config"] for r in summary]
    order += sorted({r["config"] for r in runs} - set(order))
    data = curves(rpath, runs, order)
    plot_curves(data, study, plots, "accuracy_vs_round", "round", "round", "linear")
    plot_curves(data, study, plots, "accuracy_vs_uplink_bits", "bits", "uplink (bits, cumulative)", "log")
    plot_curves(data, study, plots, "accuracy_vs_time", "time", "simulated time (s)", "linear")
    plot_curves(data, study, plots, "accuracy_vs_energy", "energy", "energy (J, cumulative)", "auto")
    plot_pareto(summary, study, plots, "pareto_bits", "bytes_up", 8, "uplink (bits, total)", "log")
    plot_pareto(summary, study, plots, "pareto_energy", "energy_j", 1, "energy (J, total)", "auto")


METRIC_LABELS = {"energy_j": "energy (J)", "sim_time_s": "simulated time (s)",
                 "uplink_bits": "uplink (bits)", "bits_up": "uplink (bits)",
                 "bytes_up": "uplink (bytes)"}
STATUS_STYLE = {  # status -> marker, colour, size, zorder
    "chosen": ("*", "#d62728", 160, 5), "base": ("D", "black", 60, 4),
    "finished": ("o", "#1f77b4", 28, 3), "infeasible": ("^", "#ff7f0e", 28, 3),
    "stopped": ("s", "#9467bd", 24, 2), "pruned": ("x", "0.55", 22, 2)}


def tune_plot(d):
    study = read_study(d)
    path = os.path.join(d, "tune.csv")
    num = ["rung", "target", "metric_total_mean", "final_accuracy_mean"]
    header, rows = read_csv(path, ["candidate", "status", "metric"] + num, num)
    keys = header[header.index("final_accuracy_ci95") + 1:] if "final_accuracy_ci95" in header else []
    last = {}
    for r in rows:  # each candidate's row at its highest rung
        if r["rung"] is None:
            raise InputError(path, f"candidate {r['candidate']}: empty rung")
        if r["candidate"] not in last or r["rung"] > last[r["candidate"]]["rung"]:
            last[r["candidate"]] = r
    pts = [r for r in last.values() if None not in (r["metric_total_mean"], r["final_accuracy_mean"])]
    if not pts:
        raise InputError(path, "no candidate with both metric_total_mean and final_accuracy_mean")
    metric = rows[0]["metric"]
    fig, ax = new_axes(study)
    for status, (marker, color, size, z) in STATUS_STYLE.items():
        sel = [r for r in pts if r["status"] == status]
        if not sel:
            continue
        label = f"{status} ({len(sel)})"
        if status in ("chosen", "base"):  # name the setting in the legend, the candidate on the plot
            def setting(r):
                if r["candidate"] == "base":
                    return "the scenario's own setting"
                return ", ".join(f"{k}={r[k]}" for k in keys if r.get(k, "") != "")
            label = "; ".join(f"{status}: {r['candidate']} ({setting(r)})" for r in sel)
            for r in sel:
                name = status if r["candidate"] == status else f"{status}: {r['candidate']}"
                ax.annotate(name, (r["metric_total_mean"],
                            r["final_accuracy_mean"]), xytext=(5, 5), textcoords="offset points",
                            fontsize=7, zorder=6)
        ax.scatter([r["metric_total_mean"] for r in sel], [r["final_accuracy_mean"] for r in sel],
                   marker=marker, c=[color], s=size, zorder=z, label=label,
                   edgecolors="none" if marker != "x" else None)
    other = [r for r in pts if r["status"] not in STATUS_STYLE]
    if other:
        ax.scatter([r["metric_total_mean"] for r in other], [r["final_accuracy_mean"] for r in other],
                   marker=".", c=["0.4"], label=f"other ({len(other)})")
    feasible = [(r["metric_total_mean"], r["final_accuracy_mean"]) for r in pts
                if r["status"] in ("chosen", "base", "finished")]
    if feasible:
        draw_frontier(ax, feasible)
    for t in sorted({r["target"] for r in rows if r["target"] is not None}):
        ax.axhline(t, color="0.35", linestyle="--", linewidth=0.8, label=f"target {t:g}")
    log_if_spans(ax, [r["metric_total_mean"] for r in pts], decades=1.0)
    ax.margins(x=0.1, y=0.08)
    label = METRIC_LABELS.get(metric, metric)
    ax.set_xlabel(f"{label}, total over the run (mean over seeds)")
    ax.set_ylabel("final test accuracy (mean over seeds)")
    finish(fig, ax, os.path.join(d, "plots"), "tune_frontier", 2)


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="Plot a fedsim study (runs.csv, "
                                 "summary.csv) or, with --tune, a tuning run (tune.csv).")
    ap.add_argument("--tune", action="store_true", help="plot DIR/tune.csv into tune_frontier")
    ap.add_argument("dir", metavar="DIR", help="the study's output folder")
    args = ap.parse_args()
    try:
        tune_plot(args.dir) if args.tune else study_plots(args.dir)
    except InputError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
