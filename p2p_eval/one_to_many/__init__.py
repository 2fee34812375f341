"""The unsupervised one-to-many translation framework with domain-invariant and domain-specific codes and a
domain-specific variational information bound: a second model family beside pix2pix (docs/one-to-many.md)."""
