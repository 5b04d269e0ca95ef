"""Abstention only, on the frozen held-out families: the scope heads /1, /2 and /3 side by side
(thresholds calibrated out of fold on training families) and the router-probability baselines —
``reasoning_ablation.py --abstention-only`` (record ``reasoning_abstention``).

    python benchmarks/reasoning_abstention.py --bundle DIR [--seeds 0,1,2] [--label TEXT]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reasoning_ablation import main  # noqa: E402

if __name__ == "__main__":
    if "--abstention-only" not in sys.argv:
        sys.argv.insert(1, "--abstention-only")
    raise SystemExit(main())
