#!/usr/bin/python3
"""Distortion-rate plot of `fedsim bench tradeoff`.

    plot_tradeoff.py CSV PNG

CSV has columns source, family, setting, bits_per_coord, distortion (one row
per quantizer setting). Draws each family as a line (or a point) of
normalized distortion against measured bits per coordinate, log scale, with
  - the Shannon curve D(R) = 2^(-2R): the rate-distortion function of the
    Gaussian source (a bound for it); for other sources of the same variance
    an upper bound on their limit, drawn as a reference;
  - the Shannon lower bound of the Laplace source, (e / pi) 2^(-2R) (source
    laplace only);
  - QSGD's variance bound min(d / s^2, sqrt(d) / s) at s = 1 .. 255, d = 512,
    at its fixed-width rate ceil(log2(2s + 1)) + 32 / d bits.
Writes PNG (150 dpi) and the same name with .svg. Exit 2 on bad input, 3
without matplotlib.
"""
import csv
import math
import os
import sys

PROG = "plot_tradeoff.py"
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.stderr.write(f"{PROG}: error: cannot import matplotlib with {sys.executable}\n")
    sys.exit(3)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(f"usage: {PROG} CSV PNG\n")
        return 2
    try:
        with open(sys.argv[1], newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: {sys.argv[1]}: {e}\n")
        return 2
    if not rows:
        sys.stderr.write(f"{PROG}: error: {sys.argv[1]}: no rows\n")
        return 2
    source = rows[0]["source"]
    families = {}
    for r in rows:
        families.setdefault(r["family"], []).append((float(r["bits_per_coord"]), float(r["distortion"]), r["setting"]))

    plt.rcParams["svg.hashsalt"] = "fedsim"
    fig, ax = plt.subplots(figsize=(9, 6))
    rates = [i / 50 for i in range(0, 451)]
    gauss_label = "Shannon D(R) = 2^-2R (Gaussian: the limit)" if source == "gaussian" else \
        "2^-2R (Gaussian source; reference, not a bound here)"
    ax.plot(rates, [2 ** (-2 * r) for r in rates], "k-", lw=2, label=gauss_label)
    if source == "laplace":
        ax.plot(rates, [math.e / math.pi * 2 ** (-2 * r) for r in rates], "k--", lw=1.5,
                label="Laplace Shannon lower bound (e/pi) 2^-2R")
    d = 512
    qs = [(math.ceil(math.log2(2 * s + 1)) + 32 / d, min(d / s ** 2, math.sqrt(d) / s)) for s in
          (1, 3, 7, 15, 31, 63, 127, 255)]
    ax.plot([q[0] for q in qs], [q[1] for q in qs], "k:", lw=1.5, label="QSGD variance bound (d=512, fixed width)")
    markers = "os^vD<>phX*P"
    for i, (family, pts) in enumerate(families.items()):
        pts = sorted(p for p in pts if p[1] > 0)
        if not pts:
            continue
        style = markers[i % len(markers)] + ("-" if len(pts) > 1 else "")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=5, lw=1, label=family,
                color=plt.cm.tab20(i % 20))
    ax.set_yscale("log")
    ax.set_xlim(0, 9.5)
    ax.set_ylim(1e-5, 1e2)
    ax.set_xlabel("measured bits per coordinate (payload)")
    ax.set_ylabel("normalized distortion E||C(v) - v||^2 / ||v||^2")
    ax.set_title(f"Distortion against rate, source: {source}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    out = sys.argv[2]
    fig.savefig(out, dpi=150, metadata={"Software": None})
    fig.savefig(os.path.splitext(out)[0] + ".svg", metadata={"Date": None, "Creator": None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
