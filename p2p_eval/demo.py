"""The main job on the embedded synthetic data: what ``make demo`` runs.

synthetic street scenes -> a segmenter trained on them (the synthetic FCN-score) -> Tables 1-3 and 6 at the
``smoke`` preset (train every row, translate the val set, score it, colour analysis) -> one report; then the
table of "Modified Pix2Pix" (``modified``) at the smoke preset on a tiny synthetic facade set
(:mod:`p2p_eval.ablation.synth_facades`) -> its report in ``REPORT/facades/``, linked from the main one
(Table 6 and the facades add about 2-3 minutes on a 2-core CPU: 8 rows of 120 steps at 32 px).
Every stage is skipped when its output already exists, so an interrupted demo resumes. Everything, the
report included (``OUT/report`` unless told otherwise), is written under the work folder ``OUT``.
"""

from __future__ import annotations

import time
from pathlib import Path

SYNTH_COUNT = 200
SYNTH_SIZE = 64
SEGMENTER_EPOCHS = 8
SEGMENTER_LR = 3e-3
FACADES_TRAIN, FACADES_VAL = 40, 10


def run_demo(out: str | Path, report_dir: str | Path | None = None, device: str = "auto",
             seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Run the whole pipeline under ``out`` and write the report to ``report_dir`` (default ``out/report``);
    return the paths of the data, the segmenter and the report."""
    from p2p_eval.ablation import run_ablation
    from p2p_eval.data.synth import generate_dataset
    from p2p_eval.segmentation.train import train_segmenter

    out = Path(out)
    report_dir = out / "report" if report_dir is None else Path(report_dir)
    data = out / "synth"
    segmenter = out / "segmenter.pt"
    start = time.perf_counter()

    if not (data / "val").is_dir():
        print(f"[1/3] synthetic data: {SYNTH_COUNT} scenes at {SYNTH_SIZE}x{SYNTH_SIZE} -> {data}", flush=True)
        generate_dataset(data, count=SYNTH_COUNT, size=SYNTH_SIZE, seed=seed)
    else:
        print(f"[1/3] synthetic data: reusing {data}", flush=True)

    if not segmenter.is_file():
        print(f"[2/3] segmenter for the FCN-score -> {segmenter}", flush=True)
        train_segmenter(data, segmenter, epochs=SEGMENTER_EPOCHS, size=SYNTH_SIZE, lr=SEGMENTER_LR, device=device,
                        crop=None, batch_size=8, cache_dir=out / "cache", progress=progress)
    else:
        print(f"[2/3] segmenter: reusing {segmenter}", flush=True)

    from p2p_eval.ablation.html import refresh_index
    from p2p_eval.ablation.synth_facades import generate_facades

    facades = out / "synth_facades"
    if not (facades / "val").is_dir():
        generate_facades(facades, train=FACADES_TRAIN, val=FACADES_VAL, size=SYNTH_SIZE, seed=seed)
    print(f"[3/3] Tables 1-3, 6 and Figure 7 at the smoke preset -> {report_dir}; the Modified-pix2pix table on "
          f"synthetic facades -> {report_dir / 'facades'}", flush=True)
    report = run_ablation(["1", "2", "3", "6"], data, segmenter, report_dir, preset="smoke", runs_dir=out / "runs",
                          device=device, resume=True, progress=progress,
                          data_name="synthetic street scenes (p2p-eval data synth)")
    run_ablation(["modified"], facades, None, report_dir / "facades", preset="smoke", runs_dir=out / "runs",
                 device=device, resume=True, progress=progress, data_name="synthetic facades")
    refresh_index(report_dir)  # the main index.html now links facades/index.html (which links back)
    print(f"demo finished in {time.perf_counter() - start:.0f} s", flush=True)
    return {"data": data, "segmenter": segmenter, "report": Path(report)}
