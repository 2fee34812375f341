"""Data sets and transforms: aligned AB pairs, folder pairs, Cityscapes labels, synthetic street scenes."""
