"""Metrics of the paper (section 4.1) and of the documents it is compared with.

- :mod:`.fcn_score`: FCN-score of generated photos, segmented by the segmenter of
  :mod:`p2p_eval.segmentation` and scored from one confusion matrix over the set
  (:class:`p2p_eval.confusion.ConfusionMatrix`, an accumulator with ``update()`` / ``merge()`` /
  ``compute()``), with percentile-bootstrap intervals and paired comparisons over images (:mod:`.bootstrap`).
- :mod:`.labelmap`: generated colour label maps read back as train ids and scored the same way
  (Table 6; accumulator :class:`~.labelmap.LabelMapScore`).
- :mod:`.color`: Lab colour histograms of image sets and their intersections (Figure 7; accumulator
  ``LabHistogram``, exact, in numpy); :mod:`.color_plot` draws Figure 7's panels.
- :mod:`.image`: PSNR, SSIM and MSE per image pair, and :func:`~.image.compare_folders` over folders;
  FID (:mod:`.fid`, accumulator :class:`~.fid.GaussianStats`) and LPIPS (:mod:`.lpips`, with the LPIPS
  diversity of several samples of one input).

Metrics that sum over a set have an accumulator whose state merges across batches; the per-pair image
distances are plain functions averaged by :func:`~.image.compare_folders`. The accumulators declare
``higher_is_better``, the image metrics' JSON carries it per metric, and each module's docstring names
the reference it matches.
"""
