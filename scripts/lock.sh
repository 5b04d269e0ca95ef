#!/usr/bin/env bash
# `make lock`: resolve every extra the machines install (edge, cloud, export, dev = `all`) into
# requirements/lock.txt with sha256 hashes, and derive docker/constraints.txt (the same pins
# without hashes) for the images. Existing pins are kept; `make lock-upgrade` (LOCK_UPGRADE=1)
# moves every package to the newest release the ranges in pyproject.toml allow.
# torch is held at the CPU build 2.13.0 (requirements/torch-cpu.in); the gpu extra
# (onnxruntime-gpu, TensorRT) is pinned in docker/Dockerfile.edge-gpu, not here: it cannot be
# installed or tested on these machines.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${LOCK_TOOLS_VENV:-.autoglm/lock-tools}
test -x "$TOOLS/bin/pip-compile" || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q "pip-tools==7.7.0"; }
upgrade=()
[[ "${LOCK_UPGRADE:-0}" == 1 ]] && upgrade=(--upgrade)
"$TOOLS/bin/pip-compile" -q --extra all --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links "${upgrade[@]}" \
  -c requirements/torch-cpu.in -o requirements/lock.txt pyproject.toml
# The project itself is installed editable by the Makefile, not from the lock.
python3 - <<'PY'
import re
from pathlib import Path
p = Path("requirements/lock.txt")
text = re.sub(r"^open-autoglm-edge @ file://\S+\n(?:    #.*\n)*", "", p.read_text(), flags=re.M)
text = text.replace("# WARNING: pip install will require the following package to be hashed.\n"
                    "# Consider using a hashable URL like https://github.com/pypa/pip-tools/archive/SOMECOMMIT.zip\n", "")
p.write_text(text)
pins = sorted(re.findall(r"^([A-Za-z0-9_.\-]+==[^\s\\]+)", text, flags=re.M), key=str.lower)
Path("docker/constraints.txt").write_text(
    "# Exact versions the images install (pip --constraint), derived from requirements/lock.txt by\n"
    "# `make lock` (scripts/lock.sh): the set the test suite runs with. Do not edit by hand.\n"
    + "".join(f"{pin}\n" for pin in pins)
)
print(f"requirements/lock.txt: {len(pins)} pinned packages with hashes; docker/constraints.txt derived")
PY
