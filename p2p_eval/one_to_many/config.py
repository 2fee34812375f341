"""Settings of one run of the one-to-many translation framework, and its variant files.

The document is "Unsupervised one-to-many image translation" with domain-invariant and domain-specific codes
and a domain-specific variational information bound (sections 3-5).  Its section 5 gives: Adam with learning
rate 0.0002; lambda1 = 10, lambda2 = lambda3 = 1 in the reconstruction loss (3); alpha2 = alpha3 = 1 and
alpha4 / alpha1 = beta = 1 in the total loss (12); the MMD kernel parameter "2/dim" with dim the code size;
30x30 PatchGAN discriminators; the encoder / generator layout (see :mod:`p2p_eval.one_to_many.models`).

Everything else is a setting here, marked "not given by the document" in its field's comment and in
docs/one-to-many.md.  Variant files (``generators/one_to_many/<name>.toml``) name only what differs from
these defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from p2p_eval.config import GENERATORS_DIR, from_mapping, read_variant, toml_names, variant_path
from p2p_eval.errors import UserError

#: The shipped one-to-many variants: ``vib`` (the document's full model), ``vib_no_ds_cycle`` (its Table 2 "w/o").
VARIANTS_DIR = GENERATORS_DIR / "one_to_many"

GAN_MODES = ("vanilla", "lsgan")
NORMS = ("instance", "batch", "none")
GENERATOR_NORMS = ("layer", "instance", "batch", "none")
LR_SCHEDULES = ("constant", "linear")
SPECIFIC_KERNELS = (3, 4)
ACTIVATIONS = ("leaky", "relu")
MMD_ESTIMATORS = ("unbiased", "biased")

#: Fields that may differ between a run and its resumption (they change no step's result).
RESUMABLE_FIELDS = frozenset({"max_steps", "log_every", "checkpoint_every"})


@dataclass(frozen=True)
class OneToManyConfig:
    """Every setting of one run.  Given by the document: ``lr``, ``lambda1..3``, ``alpha1..3``, ``beta``, the
    layer plan.  Read from the document with a choice:

    - ``mmd_sigma`` (default None = ``code_dim / sqrt(2)``): the document says the kernel parameter "2/dim" (as
      extracted; the typesetting is ambiguous) citing InfoVAE [35]. Read as sigma = 2/dim, the kernel between two
      N(0, I) codes of dimension 8 is about e^-128: the MMD is a constant (1 + 1/64 at batch 1) with no gradient,
      as the first quick runs' logs showed. The default is the bandwidth of InfoVAE's published implementation,
      k = exp(-||z - z'||^2 / dim^2), i.e. 2 sigma^2 = dim^2; ``mmd_sigma = 0.25`` is the literal reading;
    - the code term of equation (3), ``lambda2 ||v_hat - v||^2``, is the squared Euclidean norm (summed over the
      code's dimensions, as the information term's KL is), the image and content terms are means over their
      elements (thousands of them: sums would make the lambdas meaningless).

    Not given by the document (our choices):

    - ``generator_norm`` layer (one group over channels and space, no affine): the generators' norm. The code
      enters them tiled, constant over space; instance norm subtracts each channel's spatial mean and so erases it
      exactly (on a run trained with it, the residual branch's output for two codes differed by 2e-6 and the
      samples of one input were near copies). Layer norm keeps per-channel constants, as MUNIT's decoder does;
      ``instance`` is the CycleGAN choice that fails;

    - ``ngf`` / ``ndf`` 64 and ``norm`` instance: CycleGAN's, whose architecture the document adopts;
    - ``code_dim`` 8: BicycleGAN's code size (the document's comparison);
    - ``specific_kernel`` 4: the domain-specific encoder's five stride-2 convolutions are 4x4 (pad 1), each
      with ``norm`` and the activation but the last (the activation only: its map is 1x1 at 64 px);
    - ``specific_activation`` leaky (LeakyReLU 0.2, as BicycleGAN's encoders): with ReLU (CycleGAN's) the
      specific encoders of a quick run died: every unit of the last layer was zero for every image, so the code
      was a constant and the KL of the information bound (eq. 11) was at its minimum;
    - ``mmd_prior_samples`` 64 draws from N(0, I) per MMD estimate;
    - ``gan_mode`` vanilla (the document's log form), the generator's non-saturating form, D losses halved;
    - ``mmd_estimator`` unbiased and ``batch_size`` 8: the MMD of equation (7) compares the batch's codes with
      the prior.  The usual estimate (the V-statistic, InfoVAE's, at its batch of hundreds) counts each code's
      pair with itself, k(v, v) = 1 whatever v is; with one code per step (CycleGAN's batch) that leaves only
      the pull of the code towards the prior draws, so every code is driven to the prior's centre (in a batch-1
      quick run the sampled codes shrank to about N(0, 0.07^2), unlike the prior draws sampling feeds the
      generators), and at batch 8 eight copies of the centre still score lower than eight prior draws.  The
      unbiased estimate (the U-statistic) leaves those pairs out and needs two codes at least;
      ``mmd_estimator = "biased"`` (with any batch) is the V-statistic;
    - ``beta1`` / ``beta2`` 0.5 / 0.999, ``epochs`` 200 with ``lr_schedule`` linear
      (constant for the first half, then linear decay to zero: CycleGAN's schedule);
    - ``size`` 256, images resized to size x size and mirrored at random (``mirror``).
    """

    name: str = "vib"
    size: int = 256
    ngf: int = 64
    ndf: int = 64
    d_layers: int = 3  # 70x70 receptive field: 30x30 logits on 256x256 images
    norm: str = "instance"
    generator_norm: str = "layer"
    code_dim: int = 8
    specific_kernel: int = 4
    specific_activation: str = "leaky"
    gan_mode: str = "vanilla"
    lambda1: float = 10.0
    lambda2: float = 1.0
    lambda3: float = 1.0
    ds_cycle: bool = True
    alpha1: float = 1.0
    alpha2: float = 1.0
    alpha3: float = 1.0
    beta: float = 1.0
    mmd_sigma: float | None = None  # None: code_dim / sqrt(2), InfoVAE's implementation (see above)
    mmd_prior_samples: int = 64
    mmd_estimator: str = "unbiased"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 8
    epochs: int = 200
    lr_schedule: str = "linear"
    mirror: bool = True
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    max_steps: int | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def alpha4(self) -> float:
        """Weight of the VAE term in equation (12): alpha4 = beta * alpha1 (section 5)."""
        return self.beta * self.alpha1

    @property
    def sigma(self) -> float:
        """The MMD kernel's sigma: ``mmd_sigma`` or dim / sqrt(2) (2 sigma^2 = dim^2, InfoVAE's implementation)."""
        return self.mmd_sigma if self.mmd_sigma is not None else self.code_dim / math.sqrt(2.0)

    def resolved(self) -> OneToManyConfig:
        """A copy with ``mmd_sigma`` concrete, as written to a run's config.toml."""
        return dataclasses.replace(self, mmd_sigma=self.sigma)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """TOML text of the set fields (TOML has no null)."""
        return tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> OneToManyConfig:
        """Build from a flat mapping; unknown keys or wrong types are a UserError naming ``source``."""
        return from_mapping(cls, data, source)


def _validate(cfg: OneToManyConfig) -> None:
    for key, valid in (("gan_mode", GAN_MODES), ("norm", NORMS), ("generator_norm", GENERATOR_NORMS),
                       ("lr_schedule", LR_SCHEDULES),
                       ("specific_kernel", SPECIFIC_KERNELS), ("specific_activation", ACTIVATIONS),
                       ("mmd_estimator", MMD_ESTIMATORS)):
        if getattr(cfg, key) not in valid:
            raise UserError(f"{key} must be one of {', '.join(map(str, valid))}, got {getattr(cfg, key)!r}")
    for key in ("ngf", "ndf", "d_layers", "code_dim", "mmd_prior_samples", "batch_size", "epochs", "log_every",
                "checkpoint_every"):
        if getattr(cfg, key) < 1:
            raise UserError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    for key in ("lambda1", "lambda2", "lambda3", "alpha1", "alpha2", "alpha3", "beta"):
        if getattr(cfg, key) < 0:
            raise UserError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.mmd_estimator == "unbiased" and (cfg.batch_size < 2 or cfg.mmd_prior_samples < 2):
        raise UserError(f"the unbiased MMD needs at least two codes per step: batch_size is {cfg.batch_size} and "
                        f"mmd_prior_samples {cfg.mmd_prior_samples}; raise them or set mmd_estimator = \"biased\"")
    if cfg.mmd_sigma is not None and cfg.mmd_sigma <= 0:
        raise UserError(f"mmd_sigma must be > 0, got {cfg.mmd_sigma}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise UserError(f"max_steps must be >= 1, got {cfg.max_steps}")
    if cfg.size < 64 or cfg.size % 4:
        raise UserError(f"size must be a multiple of 4 and at least 64 (the domain-specific encoder halves it 6 "
                        f"times), got {cfg.size}")


def variant_names() -> list[str]:
    """Names of the shipped one-to-many variants."""
    return toml_names(VARIANTS_DIR)


def variant_file(spec: str | Path) -> Path:
    """An existing TOML file, or the shipped variant of that bare name; an unknown name lists the valid ones."""
    return variant_path(spec, VARIANTS_DIR, "one-to-many variant")


def load_variant(spec: str | Path, overrides: dict[str, Any] | None = None) -> OneToManyConfig:
    """Read a variant (file or shipped name), apply ``overrides`` (None values ignored); resolved."""
    return read_variant(OneToManyConfig, variant_file(spec), overrides).resolved()
