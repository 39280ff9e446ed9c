#!/usr/bin/env bash
# Snakemake runs this inside the freshly created conda env (envs/hrcam-gpu.yaml), from its working
# directory. It installs the hrcam package (without dependencies: the env pins them) from the
# repository: HRCAM_ROOT if set, else the working directory (the repository root by default).
set -euo pipefail
root="${HRCAM_ROOT:-$PWD}"
if [ ! -f "$root/pyproject.toml" ]; then
    echo "hrcam post-deploy: no pyproject.toml in $root; run snakemake from the repository" \
         "root or set HRCAM_ROOT=/path/to/hrcam" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$root" \
    || python -m pip install --no-deps -e "$root"
