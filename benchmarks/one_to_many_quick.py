"""One-to-many quick report: the document's full model and its Table 2 ablation on Facades, labels <-> photos.

The document ("unsupervised one-to-many image translation" with domain-invariant / domain-specific codes and a
domain-specific variational information bound) shows labels <-> facade photos only qualitatively (its Figure
4d) and measures diversity on edges <-> shoes / handbags, which we do not have.  Here pix2pix's CMP Facades AB
files are used as two UNPAIRED folders: domain X = the label maps (the B, right halves), domain Y = the photos
(the A, left halves) of the train split (400 each); held out = the val split (100).  The pairing of the files
is never used in training.

Rows: ``generators/one_to_many/vib.toml`` (the full model), ``vib_no_ds_cycle.toml`` (without the
domain-specific code cycle-consistency) and, beyond the document (:data:`EXTRA_ROWS`), ``vib_no_info`` (the
full model without the information term, alpha1 = 0) and ``vib_long`` (the full model, three times longer).
All train at 64x64 with ngf = ndf = 32 at the default batch of 8 for 20 epochs (1,000 steps; ``vib_long`` 60
epochs, 3,000 steps), the learning rate constant for the first half, then decaying linearly.  A step takes about
1.05 s on one core (7.7 images/s, two runs side by side on the two cores: about 18 minutes per run; ``vib_long``
alone with two threads about 0.53 s).  Runs live under ``runs/one_to_many/`` (git ignores ``runs/``) and resume:
rerun the same command after a kill.

Report (``reports/quick/one_to_many/``): per row, on the val images, in both directions,

- sample grids: input, then K = 5 outputs under the same 5 prior codes; and input, then one output per
  reference image's code (the reference images on the top row);
- reconstruction error mean |G(E_c(a), mean of E_d(a)) - a| and cycle error mean |a_hat - a| after
  a -> other domain (prior code) -> back (the input's own code mean), on a [0, 1] intensity scale;
- diversity without downloaded weights: the mean pairwise L1 distance (on [0, 1]) between the K = 5 samples of
  one input (10 pairs), averaged over the inputs; beside it the same distance between random pairs of real
  images of the target domain (the document's "Real Images" row, in our L1 measure);
- LPIPS diversity over 2000 random pairs of samples of one input (``p2p-eval metrics --metric
  lpips-diversity``) when ``$P2P_EVAL_LPIPS_WEIGHTS`` names the weights file;
- the document's Table 1 and 2 numbers beside ours, marked as another data set.

    python benchmarks/one_to_many_quick.py --stage prepare                          # the four folders, once
    python benchmarks/one_to_many_quick.py --stage train --variants vib            # one run (resumable)
    python benchmarks/one_to_many_quick.py --stage train --variants vib_no_ds_cycle
    python benchmarks/one_to_many_quick.py --stage train --variants vib_no_info
    python benchmarks/one_to_many_quick.py --stage train --variants vib_long --threads 2   # about 30 minutes
    python benchmarks/one_to_many_quick.py --stage report                           # after both runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
from pathlib import Path

import torch

from p2p_eval.data.aligned import write_halves
from p2p_eval.fsutil import atomic_write_text, write_json
from p2p_eval.imageio import from_unit_range, list_images, write_png
from p2p_eval.one_to_many.config import load_variant
from p2p_eval.one_to_many.data import ImageFolder
from p2p_eval.one_to_many.models import OneToMany
from p2p_eval.one_to_many.trainer import train
from p2p_eval.one_to_many.translate import SampleOptions, load_run, prior_codes, translate_folder

REPO = Path(__file__).resolve().parents[1]
FACADES = REPO.parent / "shared" / "data" / "facades"
VARIANTS = {"vib": "full model (Table 1 'Ours', Table 2 'w/')",
            "vib_no_ds_cycle": "w/o domain-specific code cycle (Table 2 'w/o')"}
#: Rows beyond the document's: a shipped variant with settings changed, to find out why the codes go unused.
EXTRA_ROWS = {"vib_no_info": ("vib", {"alpha1": 0.0}, "full model without the information term L^i (alpha1 = 0)"),
              "vib_long": ("vib", {"epochs": 60}, "full model trained three times longer (60 epochs, 3,000 steps)")}
ROWS = {**{name: (name, {}, text) for name, text in VARIANTS.items()}, **EXTRA_ROWS}
SETTINGS = {"size": 64, "ngf": 32, "ndf": 32, "epochs": 20}
K = 5
#: The document's Table 1 (edges <-> shoes / handbags): LPIPS distance, fooling rate (%), FID.
DOC_TABLE1 = {"Real Images": ((0.290, None, None), (0.369, None, None)),
              "UNIT": ((None, 22.0, 90.32), (None, 19.2, 84.36)),
              "CycleGAN": ((None, 24.3, 86.54), (None, 25.9, 81.22)),
              "BicycleGAN": ((0.113, 38.0, 43.18), (0.134, 34.9, 37.79)),
              "Ours": ((0.121, 36.0, 48.36), (0.129, 33.2, 40.84))}
#: The document's Table 2: LPIPS with / without the domain-specific code cycle-consistency.
DOC_TABLE2 = {"shoes": (0.121, 0.095), "handbags": (0.129, 0.113)}


def prepare(data: Path, folder: Path) -> dict[str, Path]:
    """The four unpaired folders (X = label maps = B halves, Y = photos = A halves; train and val)."""
    if (folder / "READY").exists():
        return {name: folder / name for name in ("train_x", "train_y", "val_x", "val_y")}
    spec = {"train_x": ("train", "B"), "train_y": ("train", "A"), "val_x": ("val", "B"), "val_y": ("val", "A")}
    paths = {}
    for name, (split, half) in spec.items():
        paths[name] = folder / name
        if not (paths[name].is_dir() and list_images(paths[name])):
            write_halves(data, split, half, paths[name], progress=False)
    atomic_write_text(folder / "READY", "the four folders are complete\n")
    return paths


def train_rows(args: argparse.Namespace, paths: dict[str, Path]) -> None:
    for name in args.variants:
        variant, changes, _ = ROWS[name]
        cfg = load_variant(variant, {**SETTINGS, **changes, "name": name})
        train(cfg, paths["train_x"], paths["train_y"], args.runs / name, device="cpu", resume=True,
              progress=not args.quiet)


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two images in [-1, 1], on a [0, 1] scale."""
    return float((a - b).abs().mean() / 2)


@torch.no_grad()
def errors(model: OneToMany, folder: ImageFolder, source: str, seed: int) -> dict[str, float]:
    """On ``folder`` (domain ``source``): reconstruction and cycle errors, the K-sample pairwise L1 diversity, and
    how much the domain-specific codes carry (:func:`code_use`)."""
    other = "y" if source == "x" else "x"
    src, dst = model.domain(source), model.domain(other)
    codes = prior_codes(K, model.x.specific.mean.out_features, seed)
    rec, cyc, div, own_codes, read_back = [], [], [], [], []
    for i in range(len(folder)):
        a = folder.image(i).unsqueeze(0)
        own = src.specific(a)[0]
        c = src.invariant(a)
        rec.append(l1(src.generator(c, own), a))
        outs = dst.generator(c.expand(K, -1, -1, -1), codes)
        back = src.generator(dst.invariant(outs), own.expand(K, -1))
        cyc.append(sum(l1(b, a[0]) for b in back) / K)
        div.append(sum(l1(outs[p], outs[q]) for p, q in itertools.combinations(range(K), 2)) / (K * (K - 1) / 2))
        own_codes.append(own[0])
        read_back.append(dst.specific(outs)[0])
    return {"reconstruction_l1": sum(rec) / len(rec), "cycle_l1": sum(cyc) / len(cyc),
            "diversity_l1": sum(div) / len(div),
            **code_use(codes.repeat(len(folder), 1), torch.cat(read_back), torch.stack(own_codes))}


def code_use(drawn: torch.Tensor, read_back: torch.Tensor, own: torch.Tensor) -> dict[str, float]:
    """``code_recovery``: the Pearson correlation between the prior codes put into the generator and the code
    means its domain's specific encoder reads back from the outputs (per code dimension, averaged; 0 when the
    outputs do not carry the code, at most 1); ``code_spread``: the standard deviation over the val images of
    the source encoder's code means (per dimension, averaged; about 1 when the codes follow the N(0, I) prior,
    0 when every image gets the same code)."""
    dim = drawn.shape[1]
    corr = torch.corrcoef(torch.cat([drawn, read_back], dim=1).T)[:dim, dim:].diagonal()  # drawn_d vs read_d
    return {"code_recovery": float(corr.nan_to_num().mean()), "code_spread": float(own.std(dim=0).mean())}


def real_diversity(folder: ImageFolder, pairs: int = 2000, seed: int = 0) -> float:
    """Mean L1 (on [0, 1]) between random pairs of distinct real images of ``folder``."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(pairs):
        i, j = torch.randperm(len(folder), generator=g)[:2].tolist()
        total += l1(folder.image(i), folder.image(j))
    return total / pairs


@torch.no_grad()
def grids(model: OneToMany, folders: dict[str, ImageFolder], out: Path, name: str, seed: int) -> list[str]:
    """Prior-code grids and reference-code grids of the first val images, both directions."""
    written = []
    codes = prior_codes(K, model.x.specific.mean.out_features, seed)
    for source, other in (("x", "y"), ("y", "x")):
        inputs = [folders[source].image(i) for i in range(6)]
        rows = [torch.cat([a, *model.translate(a.unsqueeze(0).expand(K, -1, -1, -1), source, codes)], dim=2)
                for a in inputs]
        path = out / f"{name}_{source}2{other}_prior.png"
        write_png(path, from_unit_range(torch.cat(rows, dim=1)))
        refs = torch.stack([folders[other].image(i) for i in range(10, 14)])
        ref_codes = model.domain(other).specific(refs)[0]
        top = torch.cat([torch.full_like(inputs[0], 1.0), *refs], dim=2)
        rows = [top] + [torch.cat([a, *model.translate(a.unsqueeze(0).expand(4, -1, -1, -1), source, ref_codes)],
                                  dim=2) for a in inputs[:4]]
        ref_path = out / f"{name}_{source}2{other}_reference.png"
        write_png(ref_path, from_unit_range(torch.cat(rows, dim=1)))
        written += [path.name, ref_path.name]
    return written


def lpips_diversity(run: Path, paths: dict[str, Path], name: str) -> dict[str, float] | None:
    """LPIPS diversity (2000 random pairs of the K samples of one val input) per direction, or None without
    ``$P2P_EVAL_LPIPS_WEIGHTS``."""
    if not os.environ.get("P2P_EVAL_LPIPS_WEIGHTS"):
        return None
    from p2p_eval.metrics.image import compare_folders

    scores = {}
    for source, to in (("x", "y"), ("y", "x")):
        folder = run / f"samples_val_to_{to}"
        if not (folder.is_dir() and list_images(folder)):
            translate_folder(run, paths[f"val_{source}"], folder, SampleOptions(to=to, samples=K, device="cpu",
                                                                                progress=False))
        result = compare_folders(paths[f"val_{source}"], {name: folder}, ["lpips-diversity"], device="cpu",
                                 progress=False, pairs=2000, bootstrap=0)
        scores[f"{source}2{to}"] = result["diversity"]["lpips_diversity"]["mean"]
    return scores


def report(args: argparse.Namespace, paths: dict[str, Path]) -> None:
    """Score every trained row on val and write the report (markdown, JSON, grids)."""
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    for name in args.variants:
        run = args.runs / name
        model, cfg = load_run(run, torch.device("cpu"))
        folders = {d: ImageFolder(paths[f"val_{d}"], cfg.size, f"val {d}") for d in ("x", "y")}
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        state_step = log[-1]["step"]
        tail = log[-10:]
        code_cycle = {c: sum(r[f"{c}_rec_specific"] for r in tail) / len(tail) for c in ("x", "y")}
        rows[name] = {"what": ROWS[name][2], "steps": state_step, "done": (run / "DONE").exists(),
                      "code_cycle_term_last_logs": code_cycle,
                      "config": cfg.to_dict(),
                      "labels_to_photos": errors(model, folders["x"], "x", cfg.seed),
                      "photos_to_labels": errors(model, folders["y"], "y", cfg.seed),
                      "lpips_diversity": lpips_diversity(run, paths, name),
                      "grids": grids(model, folders, args.out, name, cfg.seed)}
    val = {d: ImageFolder(paths[f"val_{d}"], SETTINGS["size"], f"val {d}") for d in ("x", "y")}
    real = {"photos": real_diversity(val["y"]), "labels": real_diversity(val["x"])}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    summary = {"commit": commit, "data": os.path.relpath(args.data, REPO), "settings": SETTINGS, "k": K, "rows": rows,
               "real_pairwise_l1": real, "document_table1": DOC_TABLE1, "document_table2": DOC_TABLE2}
    write_json(args.out / "report.json", summary)
    atomic_write_text(args.out / "report.md", markdown(summary))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(s: dict) -> str:
    """The report's text."""
    lines = ["# One-to-many quick report: Facades labels <-> photos, unpaired", "",
             f"Made by `python benchmarks/one_to_many_quick.py --stage report` at commit `{s['commit']}` from "
             f"{s['data']} (X = label maps, the B halves; Y = photos, the A halves; train 400 / val 100, used as "
             f"unpaired folders). Settings beyond each variant file: {s['settings']}. K = {s['k']} samples per "
             "input. L1 numbers are mean absolute differences on a [0, 1] intensity scale, on the 100 val images.",
             ""] + [f"- `{name}`: {row['what']}" for name, row in s["rows"].items()] + [
             "", "| variant | steps | direction | reconstruction L1 | cycle L1 | diversity L1 (K=5) "
             "| code recovery | code spread | LPIPS diversity |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in s["rows"].items():
        for key, label in (("labels_to_photos", "x2y"), ("photos_to_labels", "y2x")):
            e, lp = row[key], (row["lpips_diversity"] or {}).get(label)
            steps = f"{row['steps']}{'' if row['done'] else ' (unfinished)'}"
            lines.append(f"| {name} | {steps} | {key.replace('_', ' ')} | {_fmt(e['reconstruction_l1'])} | "
                         f"{_fmt(e['cycle_l1'])} | {_fmt(e['diversity_l1'])} | {_fmt(e['code_recovery'], 2)} | "
                         f"{_fmt(e['code_spread'], 2)} | "
                         f"{_fmt(lp) if lp is not None else 'no weights ($P2P_EVAL_LPIPS_WEIGHTS unset)'} |")
    real = s["real_pairwise_l1"]
    lines += ["", "The code-cycle term ||v_hat - v||^2 at the end of training (mean of the last 10 logged windows of "
              "50 steps; a code that the specific encoder does not read back leaves it at E||v||^2 = code size = "
              "8): " + "; ".join(f"{name} X cycle {row['code_cycle_term_last_logs']['x']:.2f}, Y cycle "
                                 f"{row['code_cycle_term_last_logs']['y']:.2f}" for name, row in s["rows"].items())
              + "."]
    lines += ["", f"Real images, mean L1 between 2000 random pairs of val images: photos {_fmt(real['photos'])}, "
              f"label maps {_fmt(real['labels'])} (the analogue of the document's \"Real Images\" diversity row).", "",
              "Code recovery: the correlation between the prior codes given to the generator and the codes the "
              "target domain's specific encoder reads back from its outputs (per dimension, averaged; 0: the "
              "outputs do not carry the code). Code spread: the standard deviation over the val images of the "
              "codes the source domain's specific encoder gives them (per dimension, averaged; about 1 for codes "
              "that follow the N(0, I) prior, 0 when all images get the same code).", "",
              "Grids: `<variant>_<x2y|y2x>_prior.png` (input, then the same 5 prior codes for every input) and "
              "`<variant>_<x2y|y2x>_reference.png` (top row: reference images of the target domain; below: input, "
              "then one output per reference's code).", "",
              "## The document's numbers (ANOTHER DATA SET: edges <-> shoes and edges <-> handbags, 256x256)", "",
              "Table 1 (LPIPS distance over 2000 random output pairs; human fooling rate %; FID over 10k samples):", "",
              "| method | shoes LPIPS | shoes fooling | shoes FID | handbags LPIPS | handbags fooling | handbags FID |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for method, (shoes, bags) in s["document_table1"].items():
        cells = [_fmt(v, 3 if i == 0 else 2) for i, v in enumerate(shoes)] + \
                [_fmt(v, 3 if i == 0 else 2) for i, v in enumerate(bags)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Table 2 (LPIPS with / without the domain-specific code cycle-consistency):", "",
              "| data | w/ | w/o |", "| --- | --- | --- |"]
    lines += [f"| {d} | {w:.3f} | {wo:.3f} |" for d, (w, wo) in s["document_table2"].items()]
    lines += ["", "What differs: Facades, not edges <-> shoes / handbags; 64x64 instead of 256x256; ngf = ndf = 32 "
              "instead of 64; 20 epochs of 400 images (1,000 steps of 8) on a CPU; our L1 diversity is not LPIPS (it needs no weights "
              "and rewards any pixel change, meaningful or not); no fooling rate or FID here.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("prepare", "train", "report", "all"), default="all",
                        help="prepare: only the unpaired folders (run it once before parallel train stages)")
    parser.add_argument("--variants", nargs="+", default=list(ROWS), choices=list(ROWS),
                        help="rows: the shipped variants and EXTRA_ROWS (a variant with settings changed)")
    parser.add_argument("--data", type=Path, default=FACADES, help="pix2pix's Facades AB folder")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "one_to_many")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "quick" / "one_to_many")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = prepare(args.data, args.runs / "data")
    if args.stage in ("train", "all"):
        train_rows(args, paths)
    if args.stage in ("report", "all"):
        report(args, paths)


if __name__ == "__main__":
    main()
