#!/usr/bin/env bash
# Installs a build into a temporary prefix and runs the smoke study from the
# installed copy alone (executable, shipped scenarios, plotting script), the
# way a user of `cmake --install` would. Usage: tools/check_install.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: tools/check_install.sh BUILD_DIR}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cd "$prefix"  # nothing of the source tree is reachable from here by relative paths
[ -f "$prefix/share/fedsim/plot_study.py" ] || { echo "check_install: plot_study.py not installed" >&2; exit 1; }
"$prefix/bin/fedsim" --version
"$prefix/bin/fedsim" sweep "$prefix/share/fedsim/scenarios/studies/smoke.yaml" --out "$prefix/smoke" --jobs 2 --quiet
for f in runs.csv summary.csv report.html plots/accuracy_vs_round.png plots/pareto_energy.svg; do
  [ -s "$prefix/smoke/$f" ] || { echo "check_install: $f missing" >&2; exit 1; }
done
grep -q "Figures were not made" "$prefix/smoke/report.html" && { echo "check_install: no figures" >&2; exit 1; }
echo "check_install: ok ($prefix)"
