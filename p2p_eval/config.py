"""Typed training configuration: one :class:`TrainConfig` per generator variant (``generators/*.toml``).

The defaults of :class:`TrainConfig` are the paper's L1+cGAN setting for Cityscapes labels -> photo (Isola et
al., "Image-to-Image Translation with Conditional Adversarial Networks", section 3 and appendix 6.1-6.2):
U-Net of depth log2(size), batch norm without it in the bottleneck (the public code's fix, errata 6.3;
``bottleneck_norm = true`` restores the paper's original), dropout on the first three decoder layers, a 70x70
PatchGAN seeing (input, output), lambda_L1 = 100, Adam 2e-4 / (0.5, 0.999), batch 1, 200 epochs at a constant
learning rate (the Torch code that produced the paper's tables), jitter 286 -> 256 with mirroring, dropout at
test time, labels -> photo on pix2pix's AB files (BtoA: the photo is on the left).

Settings for the network of the blog post "pix2pix Image Translation" (Xuehao Liu, 2019), off by default:
``d_arch = "global"`` is its discriminator (a five-layer CNN with one output per image, see
:mod:`p2p_eval.models.global_discriminator`), ``d_input = "sum"`` feeds that discriminator x + y instead of (x, y) stacked
on channels, and ``lambda_l2`` weights its reconstruction term, the Euclidean distance ||y - G(x)||_2.

Colorization (the paper's "BW -> color" setting, appendix 6.2: "batch size 4, with only mirroring, no random
jitter"): ``color_space = "lab"`` trains L -> ab (``input_nc = 1``, ``output_nc = 2``, see
:mod:`p2p_eval.data.colorization`), ``jitter = false`` with ``mirror = true`` mirrors without the resize-and-crop
(``mirror`` unset: mirroring goes with the jitter, the paper's "random jitter and mirroring"), and ``lambda_mse``
weights a mean squared error, the objective of the "L2 regression" row of its Table 5.

A variant file is a flat TOML table whose keys are fields of :class:`TrainConfig`; it sets only the fields
that differ from these defaults (and, optionally, its ``name``), and its first line is a comment naming the
row of the document it reproduces. Missing keys take the defaults. Command-line flags override fields
(:func:`load_generator`); the resolved config (``num_downs`` made concrete) is what a run saves and what
:func:`config_hash` fingerprints. The shipped variants live in the checkout's top-level ``generators/``
folder, which the wheel carries as ``p2p_eval/generators`` (:data:`GENERATORS_DIR`); a bare name such as
``l1_cgan`` means the shipped file of that name (:func:`generator_file`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from p2p_eval.errors import UserError, require_file, unknown_name

ARCHS = ("unet", "encoder_decoder", "resnet")
NORMS = ("batch", "instance", "none")
DROPOUTS = ("paper", "public", "none")
GANS = ("none", "unconditional", "conditional")
GAN_MODES = ("vanilla", "lsgan")
RECEPTIVE_FIELDS = (1, 16, 70, 286)
D_ARCHS = ("patchgan", "global")
D_INPUTS = ("concat", "sum")
LR_SCHEDULES = ("constant", "linear")
DIRECTIONS = ("AtoB", "BtoA")
COLOR_SPACES = ("rgb", "lab")

#: A config dataclass (:class:`TrainConfig`, the one-to-many family's ``OneToManyConfig``).
Config = TypeVar("Config")

#: Fields that do not change what a run computes; :func:`config_hash` ignores them.
NON_SEMANTIC_FIELDS = ("name", "log_every")

#: Fields that a run's hash covers only when they differ from their defaults, so that adding them left the
#: hash, and the ablation's cached run keys, of every existing config unchanged.
HASHED_WHEN_SET = ("color_space", "mirror", "lambda_mse")


def _generators_dir() -> Path:
    """The shipped variants' folder: ``p2p_eval/generators`` inside an installed wheel (setuptools maps the
    top-level folder there), else the top-level ``generators/`` beside the package (a checkout, an editable
    install)."""
    package = Path(__file__).resolve().parent
    packaged = package / "generators"
    return packaged if packaged.is_dir() else package.parent / "generators"


#: The shipped generator variants, one ``<name>.toml`` each.
GENERATORS_DIR = _generators_dir()

#: Number of stride-2 convolutions of each PatchGAN (the public code's n_layers; 0 for the 1x1 PixelGAN).
D_DOWNSAMPLINGS = {1: 0, 16: 1, 70: 3, 286: 5}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run; field names are the keys of a generator variant file."""

    name: str = "l1_cgan"
    arch: str = "unet"
    num_downs: int | None = None
    resnet_blocks: int = 9
    ngf: int = 64
    ndf: int = 64
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    bottleneck_norm: bool = False
    dropout: str = "paper"
    gan: str = "conditional"
    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    lambda_rec: float = 0.0
    lambda_l2: float = 0.0
    lambda_mse: float = 0.0
    d_arch: str = "patchgan"
    d_receptive_field: int = 70
    d_input: str = "concat"
    batch_size: int = 1
    epochs: int = 200
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_schedule: str = "constant"
    size: int = 256
    jitter: bool = True
    mirror: bool | None = None
    direction: str = "BtoA"
    color_space: str = "rgb"
    seed: int = 0
    test_dropout: bool = True
    log_every: int = 50
    max_steps: int | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def resolved_num_downs(self) -> int:
        """U-Net / encoder-decoder depth: ``num_downs`` or, when unset, log2(size)."""
        if self.num_downs is not None:
            return self.num_downs
        return int(math.log2(self.size))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a flat mapping (a parsed TOML file); unknown keys or wrong types are a UserError."""
        return from_mapping(cls, data, source)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (None for unset optional fields)."""
        return dataclasses.asdict(self)

    def resolved(self) -> TrainConfig:
        """A copy with ``num_downs`` made concrete (log2(size) when unset)."""
        return dataclasses.replace(self, num_downs=self.resolved_num_downs)

    def to_toml(self) -> str:
        """The config as TOML text; unset optional fields (None) are left out, as TOML has no null."""
        data = {key: value for key, value in self.to_dict().items() if value is not None}
        return tomli_w.dumps(data)


def from_mapping(cls: type[Config], data: dict[str, Any], source: str) -> Config:
    """An instance of the config dataclass ``cls`` built from a flat mapping.  Unknown keys, and values whose type
    does not match the field's annotation (ints are accepted for floats, bools are never numbers), are a
    UserError naming ``source``; so are the dataclass's own validation errors."""
    annotations = {f.name: str(f.type) for f in fields(cls)}
    unknown = sorted(set(data) - set(annotations))
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(annotations))}")
    values = {key: _coerce(key, value, annotations[key], source) for key, value in data.items()}
    try:
        return cls(**values)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None


_KINDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def _coerce(key: str, value: Any, annotation: str, source: str) -> Any:
    """``value`` checked against a field annotation such as ``int`` or ``bool | None`` (None only for optional
    fields; an int becomes a float for a float field)."""
    if value is None and "None" in annotation:
        return None
    base = annotation.split(" |")[0]
    ok = {"bool": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool), "str": isinstance(value, str)}[base]
    if not ok:
        raise UserError(f"{source}: {key} must be {_KINDS[base]}, got {value!r}")
    return float(value) if base == "float" else value


def _choice(key: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise unknown_name(key, value, [str(v) for v in valid])


def _at_least(key: str, value: int | float, low: int | float) -> None:
    if value < low:
        raise UserError(f"{key} must be >= {low}, got {value}")


def _validate(cfg: TrainConfig) -> None:
    """Raise UserError naming the field when a value is out of range or the combination is impossible."""
    if not cfg.name:
        raise UserError("name must not be empty")
    _choice("arch", cfg.arch, ARCHS)
    _choice("norm", cfg.norm, NORMS)
    _choice("dropout", cfg.dropout, DROPOUTS)
    _choice("gan", cfg.gan, GANS)
    _choice("gan_mode", cfg.gan_mode, GAN_MODES)
    _choice("d_receptive_field", cfg.d_receptive_field, RECEPTIVE_FIELDS)
    _choice("d_arch", cfg.d_arch, D_ARCHS)
    _choice("d_input", cfg.d_input, D_INPUTS)
    _choice("lr_schedule", cfg.lr_schedule, LR_SCHEDULES)
    _choice("direction", cfg.direction, DIRECTIONS)
    _choice("color_space", cfg.color_space, COLOR_SPACES)
    for key in ("resnet_blocks", "ngf", "ndf", "input_nc", "output_nc", "batch_size", "epochs", "size",
                "log_every"):
        _at_least(key, getattr(cfg, key), 1)
    _at_least("seed", cfg.seed, 0)
    _at_least("lambda_l1", cfg.lambda_l1, 0.0)
    _at_least("lambda_rec", cfg.lambda_rec, 0.0)
    _at_least("lambda_l2", cfg.lambda_l2, 0.0)
    _at_least("lambda_mse", cfg.lambda_mse, 0.0)
    if cfg.max_steps is not None:
        _at_least("max_steps", cfg.max_steps, 1)
    if not cfg.lr > 0:
        raise UserError(f"lr must be > 0, got {cfg.lr}")
    for key in ("beta1", "beta2"):
        value = getattr(cfg, key)
        if not 0.0 <= value < 1.0:
            raise UserError(f"{key} must be in [0, 1), got {value}")
    if cfg.gan == "none" and not (cfg.lambda_l1 or cfg.lambda_l2 or cfg.lambda_mse or cfg.lambda_rec):
        raise UserError("no objective: gan = 'none' needs lambda_l1, lambda_l2, lambda_mse or lambda_rec > 0")
    if cfg.color_space == "lab" and (cfg.input_nc, cfg.output_nc) != (1, 2):
        raise UserError(f"color_space = 'lab' maps L to ab: it needs input_nc = 1 and output_nc = 2, got "
                        f"{cfg.input_nc} and {cfg.output_nc}")
    if cfg.gan == "conditional" and cfg.d_input == "sum" and cfg.input_nc != cfg.output_nc:
        raise UserError(f"d_input = 'sum' shows the discriminator x + y, so input_nc ({cfg.input_nc}) must equal "
                        f"output_nc ({cfg.output_nc}); use d_input = 'concat'")
    if cfg.lambda_rec > 0 and cfg.input_nc != cfg.output_nc:
        raise UserError(
            f"lambda_rec > 0 feeds G(x) back into G, so input_nc ({cfg.input_nc}) must equal "
            f"output_nc ({cfg.output_nc})"
        )
    if cfg.bottleneck_norm and cfg.norm != "batch":
        raise UserError("bottleneck_norm = true is the paper's batch-norm bottleneck; it needs norm = 'batch'")
    _validate_size(cfg)


def min_side(cfg: TrainConfig) -> int:
    """Smallest image side the run's discriminator accepts (1 without a discriminator). PatchGAN: n stride-2
    convs then two 4x4 stride-1 convs (padding 1), each of which shrinks the map by one pixel. The global
    discriminator: four stride-2 convs (side // 16) must leave a 2x2 map, as batch norm at batch 1 needs more
    than one value per channel."""
    if cfg.gan == "none":
        return 1
    if cfg.d_arch == "global":
        return 32
    n = D_DOWNSAMPLINGS[cfg.d_receptive_field]
    return 1 if n == 0 else 3 * 2**n


def _validate_size(cfg: TrainConfig) -> None:
    if cfg.arch == "resnet":
        if cfg.size % 4:
            raise UserError(f"size {cfg.size} must be a multiple of 4 for the ResNet generator")
    else:
        if cfg.num_downs is None and 2 ** round(math.log2(cfg.size)) != cfg.size:
            raise UserError(
                f"size {cfg.size} is not a power of two, so num_downs = log2(size) is undefined; "
                "set num_downs in the generator file"
            )
        depth = cfg.resolved_num_downs
        _at_least("num_downs", depth, 1)
        if cfg.size % 2**depth:
            raise UserError(
                f"size {cfg.size} must be a multiple of 2**num_downs = {2**depth} (num_downs = {depth})"
            )
    if cfg.gan != "none":
        smallest = min_side(cfg)
        if cfg.size < smallest:
            which = ("global" if cfg.d_arch == "global"
                     else f"{cfg.d_receptive_field}x{cfg.d_receptive_field}")
            raise UserError(f"the {which} discriminator needs size >= {smallest}, got {cfg.size}")


def generator_names() -> list[str]:
    """Names of the shipped generator variants (the stems of :data:`GENERATORS_DIR`'s TOML files), sorted."""
    return toml_names(GENERATORS_DIR)


def toml_names(folder: Path) -> list[str]:
    """The stems of the TOML files in ``folder``, sorted."""
    return sorted(p.stem for p in folder.glob("*.toml"))


def generator_file(spec: str | Path) -> Path:
    """The variant file for ``spec``: an existing TOML file, or a bare name (``l1_cgan``) of a shipped variant
    (see :func:`variant_path`)."""
    return variant_path(spec, GENERATORS_DIR, "generator")


def variant_path(spec: str | Path, folder: Path, what: str) -> Path:
    """An existing TOML file, or the file ``folder/<name>.toml`` of a bare name (no folder part; a ``.toml``
    suffix is allowed; an existing file of that name in the current folder wins).  A missing path or an unknown
    name is a one-line UserError listing the names in ``folder``."""
    path = Path(spec)
    if path.is_file():
        return path
    bare = path.parent == Path(".") and path.suffix in ("", ".toml") and path.name not in ("", ".", "..")
    if not bare:
        return require_file(path, f"{what} file")
    shipped = folder / f"{path.stem if path.suffix == '.toml' else path.name}.toml"
    if shipped.is_file():
        return shipped
    raise UserError(f"unknown {what} {str(spec)!r} (no such file either); valid: a TOML file or one of "
                    f"{', '.join(toml_names(folder))}")


def read_variant(cls: type[Config], path: Path, overrides: dict[str, Any] | None = None) -> Config:
    """The config dataclass ``cls`` from the variant file ``path`` (its ``name`` defaults to the file's stem)
    with ``overrides`` applied (field -> value; None values ignored, unknown fields a UserError)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err}); fix the file") from None
    data.setdefault("name", path.stem)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise UserError(f"unknown override(s) {', '.join(unknown)} for {path}; valid: {', '.join(sorted(known))}")
    return from_mapping(cls, {**data, **given}, str(path))


def load_generator(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a generator variant (a TOML file or a shipped name, see :func:`generator_file`) and apply
    ``overrides`` (field -> value; None values ignored).

    A ``size`` override with ``num_downs`` unset in the file gives depth log2(size), so one variant file
    serves 256x256 runs and 64x64 tests. The returned config is resolved (``num_downs`` concrete).
    """
    return read_variant(TrainConfig, generator_file(path), overrides).resolved()


def config_hash(cfg: TrainConfig) -> str:
    """sha256 (hex) of the canonical JSON of the resolved config, without :data:`NON_SEMANTIC_FIELDS`."""
    data = cfg.resolved().to_dict()
    for key in NON_SEMANTIC_FIELDS:
        data.pop(key)
    defaults = TrainConfig().to_dict()
    for key in HASHED_WHEN_SET:
        if data[key] == defaults[key]:
            data.pop(key)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
