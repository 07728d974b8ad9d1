#!/usr/bin/env bash
# The study as run for docs/benchmarks/reasoning-study.md: one single-threaded process per task (the two
# cores are shared), sweep on the held-apart problems first, then the test part at the lr chosen from the
# pooled sweep records. Usage: bash benchmarks/reasoning_study/run_smollm2.sh [extra reasoning.py flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
COMMON=(--n "${N:-128}" --dev-n "${DEV_N:-8}" --batch-size 8 --max-new-tokens "${MAX_NEW:-64}" --threads 1
        --lrs 5e-4 3e-3 1e-2 3e-2 1e-1 --k1-lrs 3e-2 "$@")
for phase in sweep test; do
  for task in add_sub_2x2 products_2x2; do
    "$PY" benchmarks/reasoning.py --tasks "$task" --phase "$phase" "${COMMON[@]}" &
  done
  wait
done
"$PY" benchmarks/reasoning.py --report-only "${COMMON[@]}"
