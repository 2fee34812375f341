"""Training: objectives (:mod:`p2p_eval.train.objectives`) and the training loop (:mod:`p2p_eval.train.trainer`)."""
