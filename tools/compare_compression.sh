#!/usr/bin/env bash
# Runs every scenario of scenarios/compression/ (or the files given, e.g.
# scenarios/compression_cnn/*.yaml) and
# prints the README's comparison table: final test accuracy, uplink bits per
# round (serialized UpdateUp messages), payload bits per coordinate, and the
# compression ratio against the float32 run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${FEDSIM:-}" ] || [ -x build/fedsim ] || tools/build.sh
files=("$@")
((${#files[@]})) || files=(scenarios/compression/*.yaml)
# The reference is the float32.yaml next to the first file (scenarios/compression/
# for the MLP, scenarios/compression_cnn/ for the CNN).
dir=$(dirname "${files[0]}")
out=out/$(basename "$dir")
printf '| scheme | final accuracy | mean of last 5 evaluations | uplink Mbit / round | payload bits / coord | ratio vs float32 |\n'
printf '|---|---|---|---|---|---|\n'
base_bits=""
# float32 first, so that the ratios have their reference.
for f in "$dir/float32.yaml" "${files[@]}"; do
  name=$(basename "$f" .yaml)
  if [ "$name" = float32 ] && [ -n "$base_bits" ]; then continue; fi
  ${FEDSIM:-build/fedsim} run "$f" --quiet --out "$out/$name"
  read -r acc last5 bits coord < <(awk -F, '
    NR == 1 { for (i = 1; i <= NF; ++i) col[$i] = i; next }
    { if ($col["test_accuracy"] != "") { acc = $col["test_accuracy"]; e[k++] = acc }
      bytes += $col["bytes_up"]; coord += $col["uplink_bits_per_coord"]; n += 1 }
    END { m = k < 5 ? k : 5; for (i = k - m; i < k; ++i) s += e[i];
          printf "%s %.4f %.6f %.4f\n", acc, s / m, 8 * bytes / n, coord / n }' "$out/$name/metrics.csv")
  [ -z "$base_bits" ] && base_bits=$bits
  ratio=$(awk -v a="$base_bits" -v b="$bits" 'BEGIN { printf "%.1f", a / b }')
  mbit=$(awk -v b="$bits" 'BEGIN { printf "%.3f", b / 1e6 }')
  printf '| %s | %.4f | %.4f | %s | %.3f | %sx |\n' "$name" "$acc" "$last5" "$mbit" "$coord" "$ratio"
done
