"""Test-time behaviour of a generator: the paper's protocol or the usual ``eval()``.

The paper (section 3.3 and the original Torch code, which ran the net in training mode at test time)
applies dropout at test time and normalises with the statistics of the test batch instead of the
running averages.  :func:`generation_mode` reproduces that with ``model.train()`` under ``no_grad``;
since a training-mode forward also updates batch-norm running averages, their buffers are saved and
put back afterwards, so generating images never changes the model.  With batch size 1 (what we
translate with) batch statistics are the per-image (instance) statistics.  ``eval_mode=True`` gives the
usual ``model.eval()``: no dropout, running averages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def generation_mode(model: nn.Module, eval_mode: bool = False) -> Iterator[nn.Module]:
    """Run ``model`` under ``no_grad`` in the paper's test mode (default) or in ``eval()`` mode.

    The model's training flags and batch-norm buffers are restored on exit.
    """
    flags = {m: m.training for m in model.modules()}
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False) if v is not None} for m in norms]
    model.train(not eval_mode)
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, flag in flags.items():
            module.training = flag
        for module, buffers in zip(norms, saved):
            for name, value in buffers.items():
                getattr(module, name).copy_(value)
