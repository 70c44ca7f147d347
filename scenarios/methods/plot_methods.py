#!/usr/bin/python3
"""Figures and tables of the README's "Optimizers and decentralized methods"
section, from the `fedsim sweep` outputs of the four method studies:

    build/fedsim sweep scenarios/studies/qrda_adagrad.yaml --out out/studies/qrda_adagrad
    build/fedsim sweep scenarios/studies/ef_amsgrad.yaml   --out out/studies/ef_amsgrad
    build/fedsim sweep scenarios/studies/chb.yaml          --out out/studies/chb
    build/fedsim sweep scenarios/studies/dpsvrg.yaml       --out out/studies/dpsvrg
    /usr/bin/python3 scenarios/methods/plot_methods.py out/studies scenarios/methods/results

Reads ROOT/<study>/runs.csv (a missing study is skipped), writes PNGs into
OUT and prints Markdown tables (mean over seeds) on stdout.
"""
import csv
import math
import os
import sys
from collections import defaultdict

os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

plt.rcParams.update({"savefig.dpi": 150, "font.size": 9, "axes.grid": True, "grid.color": "0.88"})


def load(root, study):
    path = os.path.join(root, study, "runs.csv")
    if not os.path.exists(path):
        return None
    runs = defaultdict(lambda: defaultdict(list))  # config -> seed -> rows
    with open(path) as f:
        for row in csv.DictReader(f):
            runs[row["config"]][row["seed"]].append(row)
    return runs


def num(v):
    return float(v) if v not in ("", None) else math.nan


def series(runs, config, column):
    """Rounds and the mean over seeds of `column` (rows where every seed has it)."""
    seeds = runs[config]
    rounds = None
    values = []
    for rows in seeds.values():
        r = [int(x["round"]) for x in rows if x[column] != ""]
        v = [num(x[column]) for x in rows if x[column] != ""]
        rounds = r if rounds is None else rounds
        values.append(v)
    n = min(len(v) for v in values)
    return np.array(rounds[:n]), np.mean([v[:n] for v in values], axis=0)


def label(config):
    return config.split("=", 1)[-1]


def qrda(runs, out):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    print("\n| method | final test accuracy | final sparsity (exact zeros) | uplink bits / coordinate |")
    print("|---|---:|---:|---:|")
    for config in runs:
        r, acc = series(runs, config, "test_accuracy")
        r2, sp = series(runs, config, "sparsity")
        _, bits = series(runs, config, "uplink_bits_per_coord")
        a.plot(r, acc, label=label(config))
        b.plot(r2, sp, label=label(config))
        print(f"| {label(config)} | {acc[-1]:.4f} | {sp[-1]:.3f} | {bits[-1]:.2f} |")
    a.set_xlabel("round"); a.set_ylabel("test accuracy"); a.set_ylim(0.6, 0.87)
    b.set_xlabel("round"); b.set_ylabel("fraction of exact zeros in the model")
    b.legend(fontsize=7)
    fig.suptitle("QRDA / QCMD AdaGrad on Fashion-MNIST (softmax regression, mean of seeds)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "qrda_adagrad.png"))


def ef_amsgrad(runs, out):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    print("\n| method | final test accuracy | rounds to 0.80 | rounds to 0.84 | uplink Mbit / round | uplink bits / coordinate |")
    print("|---|---:|---:|---:|---:|---:|")
    for config in runs:
        r, acc = series(runs, config, "test_accuracy")
        rr, cum = series(runs, config, "cum_bytes_up")
        _, up = series(runs, config, "bytes_up")
        _, bits = series(runs, config, "uplink_bits_per_coord")
        a.plot(r, acc, label=label(config))
        idx = np.searchsorted(rr, r)
        b.plot(8 * cum[np.minimum(idx, len(cum) - 1)], acc, label=label(config))
        def first(t):
            hit = np.nonzero(acc >= t)[0]
            return str(r[hit[0]]) if len(hit) else "-"
        print(f"| {label(config)} | {acc[-1]:.4f} | {first(0.80)} | {first(0.84)} | {8 * up.mean() / 1e6:.3f} | {bits[-1]:.2f} |")
    a.set_xlabel("round"); a.set_ylabel("test accuracy")
    b.set_xscale("log"); b.set_xlabel("cumulative uplink bits"); b.set_ylabel("test accuracy")
    b.legend(fontsize=7)
    fig.suptitle("EF-AMSGrad (1-bit sign + error feedback) vs AMSGrad, MLP on Fashion-MNIST")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ef_amsgrad.png"))


def chb(runs, out):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    losses = {c: series(runs, c, "train_loss") for c in runs}
    fstar = min(v.min() for _, v in losses.values())
    print(f"\nF* (smallest training loss of any run) = {fstar:.9g}")
    print("\n| method | messages censored | rounds to F - F* < 1e-4 | rounds to F - F* < 1e-6 | final F - F* |")
    print("|---|---:|---:|---:|---:|")
    for config in runs:
        r, loss = losses[config]
        _, cens = series(runs, config, "censored")
        _, clients = series(runs, config, "clients")
        sub = np.maximum(loss - fstar, 1e-12)
        a.semilogy(r, sub, label=label(config))
        sent = np.cumsum(clients - cens)
        b.plot(r, sent, label=label(config))
        def first(t):
            hit = np.nonzero(sub < t)[0]
            return str(r[hit[0]]) if len(hit) else "-"
        frac = cens.sum() / clients.sum()
        print(f"| {label(config)} | {100 * frac:.1f}% | {first(1e-4)} | {first(1e-6)} | {sub[-1]:.2e} |")
    a.set_xlabel("round"); a.set_ylabel("training loss - F*")
    b.set_xlabel("round"); b.set_ylabel("messages sent (cumulative)")
    b.legend(fontsize=7)
    fig.suptitle("CHB (censored heavy ball) vs heavy ball, least squares, 10 workers")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "chb.png"))


def dpsvrg(runs, out):
    fig, a = plt.subplots(figsize=(5.8, 4.0))
    ref = [c for c in runs if "reference" in c]
    if not ref:
        print("(no reference run: F* unknown)")
        return
    _, fref = series(runs, ref[0], "objective")
    fstar = fref[-1]
    print(f"\nF* (reference: centralized proximal gradient descent, mean over seeds) = {fstar:.9g}")
    print("\n| method | F - F* at 10 | at 100 | at 1000 | at 2000 | slope, iterations 10-300 (log-log) | iterations to F - F* < 1e-3 | final consensus distance | gossip MB per iteration |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, config in enumerate(c for c in runs if "reference" not in c):
        r, obj = series(runs, config, "objective")
        _, cd = series(runs, config, "consensus_distance")
        _, up = series(runs, config, "bytes_up")
        sub = np.maximum(obj - fstar, 1e-9)
        a.loglog(r, sub, label=label(config), ls="--" if "dirichlet" in config else (":" if "choco" in config else "-"),
                 color=plt.get_cmap("tab10").colors[i])
        window = (r >= 10) & (r <= 300)
        slope = np.polyfit(np.log(r[window]), np.log(sub[window]), 1)[0]
        at = lambda k: f"{sub[np.searchsorted(r, k)]:.2e}" if k <= r[-1] else "-"
        hit = np.nonzero(sub < 1e-3)[0]
        print(f"| {label(config)} | {at(10)} | {at(100)} | {at(1000)} | {at(2000)} | {slope:.2f} | "
              f"{r[hit[0]] if len(hit) else '-'} | {cd[-1]:.2e} | {up.mean() / 1e6:.4f} |")
    k = np.array([10.0, 2000.0])
    a.loglog(k, 0.3 * (k / k[0]) ** -1.0, "k:", lw=0.8, label="slope -1")
    a.loglog(k, 0.3 * (k / k[0]) ** -0.5, "k-.", lw=0.8, label="slope -1/2")
    a.set_xlabel("iteration"); a.set_ylabel("F(average model) - F*")
    a.legend(fontsize=7)
    a.set_title("DPSVRG vs DSPG, L1 logistic regression, ring of 10 nodes", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "dpsvrg_vs_dspg.png"))


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for study, plot in (("qrda_adagrad", qrda), ("ef_amsgrad", ef_amsgrad), ("chb", chb), ("dpsvrg", dpsvrg)):
        runs = load(root, study)
        if runs is None:
            print(f"({study}: no runs.csv under {root}, skipped)")
            continue
        print(f"\n### {study}")
        plot(runs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
