"""Perceptual study harness: real-vs-fake sessions in the browser and their analysis.

The protocol follows pix2pix (Isola et al., CVPR 2017, section 4.1 and Tables 4-5): each participant tests one
algorithm; trials show a real and a generated image for a fixed time, then the participant says which one is
fake; the first trials are practice with feedback; the result is the percentage of trials in which the fake was
judged real, as the mean of per-participant rates with its standard error.
"""

PROTOCOLS = ("2afc", "sequential", "single", "hype-time", "hype-inf")
SINGLE_IMAGE = ("single", "hype-time", "hype-inf")  # one image per trial, answered "real" / "fake"
