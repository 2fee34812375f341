"""Metrics of the paper (section 4.1): FCN-score (:mod:`.fcn_score`, with the segmenter of
:mod:`.segmenter` and bootstrap intervals of :mod:`.bootstrap`), colour statistics (:mod:`.color`) and
image distances (:mod:`.image`).

Each metric is a function for one shot plus an accumulator with ``update()`` / ``compute()`` whose
state merges across batches and processes, and declares ``higher_is_better``.
"""
