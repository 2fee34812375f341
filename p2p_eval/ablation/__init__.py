"""Tables 1-3 and Figure 7 of pix2pix regenerated: table specs, presets, runs, launchers, report."""

from p2p_eval.ablation.pipeline import run_ablation

__all__ = ["run_ablation"]
