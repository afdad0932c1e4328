"""Import time of ``import hybridnb`` over a bare interpreter (target ≤ 150 ms added).

Peers, side by side: the interpreter alone (the baseline), and ``import dask`` for scale.
Each case is a fresh interpreter, run alternately after warm-up.
"""

from __future__ import annotations

import subprocess
import sys

from _report import alternate, report, timed


def interpreter(code: str):
    return timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))


def main(repeat: int = 25) -> None:
    raw = alternate({"bare interpreter": interpreter("pass"),
                     "import hybridnb": interpreter("import hybridnb"),
                     "import hybridnb; load_config": interpreter(
                         "import hybridnb; hybridnb.load_config()"),
                     "import dask (peer)": interpreter("import dask")}, repeat)
    med = {k: sorted(v)[len(v) // 2] for k, v in raw.items()}
    figures = {
        "added import ms": (med["import hybridnb"] - med["bare interpreter"]) * 1000,
        "added import+config ms": (med["import hybridnb; load_config"]
                                   - med["bare interpreter"]) * 1000,
        "hybridnb/dask import ratio": (med["import hybridnb"] - med["bare interpreter"])
        / max(med["import dask (peer)"] - med["bare interpreter"], 1e-9),
    }
    report("import", raw, figures, {"added import ms": "<= 150"})


if __name__ == "__main__":
    main()
