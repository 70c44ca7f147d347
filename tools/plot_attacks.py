#!/usr/bin/python3
"""Figure of scenarios/studies/attacks.yaml: final test accuracy per defence,
one bar per attack (none, sign_flip, little_is_enough), with the 95% interval
over seeds when there is more than one.

    plot_attacks.py STUDY_DIR OUT_STEM     reads STUDY_DIR/summary.csv (from
                                           `fedsim sweep`), writes OUT_STEM.png
                                           and OUT_STEM.svg

Byte-identical from run to run (no dates embedded). Exit status: 0 success,
2 missing or malformed input, 3 matplotlib not importable (Debian:
python3-matplotlib, for /usr/bin/python3).
"""
import csv
import math
import os
import sys

PROG = "plot_attacks.py"
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as e:
    sys.stderr.write(f"{PROG}: error: cannot import matplotlib with {sys.executable}: {e}\n")
    sys.exit(3)


def fail(what):
    sys.stderr.write(f"{PROG}: error: {what}\n")
    sys.exit(2)


def main(argv):
    if len(argv) != 3:
        fail("usage: plot_attacks.py STUDY_DIR OUT_STEM")
    path = os.path.join(argv[1], "summary.csv")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    for key in ("attack", "defence", "final_accuracy_mean", "final_accuracy_ci95"):
        if not rows or key not in rows[0]:
            fail(f"{path}: no column '{key}' (expected the summary of scenarios/studies/attacks.yaml)")
    attacks, defences = [], []
    for r in rows:
        if r["attack"] not in attacks:
            attacks.append(r["attack"])
        if r["defence"] not in defences:
            defences.append(r["defence"])
    value = {(r["attack"], r["defence"]): r for r in rows}

    plt.rcParams["svg.hashsalt"] = "fedsim"
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(attacks)
    colors = ["#4c72b0", "#dd8452", "#c44e52", "#55a868", "#8172b3"]
    for a, attack in enumerate(attacks):
        xs, ys, errs = [], [], []
        for d, defence in enumerate(defences):
            r = value.get((attack, defence))
            if r is None or r["final_accuracy_mean"] == "":
                continue
            xs.append(d + (a - (len(attacks) - 1) / 2) * width)
            ys.append(float(r["final_accuracy_mean"]))
            ci = r["final_accuracy_ci95"]
            errs.append(float(ci) if ci not in ("", "nan") and not math.isnan(float(ci)) else 0.0)
        ax.bar(xs, ys, width, yerr=errs if any(errs) else None, label=attack.replace("_", " "),
               color=colors[a % len(colors)], capsize=2)
        for x, y in zip(xs, ys):
            ax.text(x, y + 0.01, f"{y:.2f}", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(defences)))
    ax.set_xticklabels([d.replace("_", " ") for d in defences])
    ax.set_ylabel("final test accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("20% Byzantine clients, Fashion-MNIST MLP, 100 rounds")
    ax.legend(title="attack", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(attacks), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    stem = argv[2]
    fig.savefig(stem + ".png", dpi=150, metadata={"Software": None})
    fig.savefig(stem + ".svg", metadata={"Date": None, "Creator": None})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
