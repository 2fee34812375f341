"""The FCN-score's segmenter: a segmentation-models-pytorch model, its data, its trainer and the
shipped default weights with their model card (package data in ``weights/``)."""
