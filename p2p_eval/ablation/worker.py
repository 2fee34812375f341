"""``python -m p2p_eval.ablation.worker JOB.json``: run one ablation row (what :func:`run_gpus` starts per GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

from p2p_eval.ablation.runner import execute_job, job_from_json


def main(argv: list[str]) -> int:
    """Execute the job described by the JSON file ``argv[0]``."""
    if len(argv) != 1:
        print("usage: python -m p2p_eval.ablation.worker JOB.json", file=sys.stderr)
        return 2
    execute_job(job_from_json(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
