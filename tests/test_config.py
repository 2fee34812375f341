"""TrainConfig, generator files and overrides; the shipped variants resolve from the top-level ``generators/``."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from p2p_eval.config import TrainConfig, config_hash, generator_file, load_generator
from p2p_eval.errors import UserError


def write(tmp_path: Path, text: str, name: str = "g.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_papers_l1_cgan() -> None:
    cfg = TrainConfig()
    assert (cfg.arch, cfg.norm, cfg.gan, cfg.gan_mode, cfg.d_receptive_field) == (
        "unet", "batch", "conditional", "vanilla", 70)
    assert (cfg.lambda_l1, cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size, cfg.epochs) == (
        100.0, 2e-4, 0.5, 0.999, 1, 200)
    assert cfg.resolved_num_downs == 8  # log2(256)
    assert not cfg.bottleneck_norm and cfg.direction == "BtoA"


def test_unknown_arch_lists_valid_names() -> None:
    with pytest.raises(UserError, match="encoder_decoder, resnet, unet"):
        TrainConfig(arch="vgg")


@pytest.mark.parametrize(
    ("field", "value"),
    [("norm", "layer"), ("dropout", "always"), ("gan", "wgan"), ("gan_mode", "hinge"), ("d_receptive_field", 32),
     ("lr_schedule", "cosine"), ("direction", "AB"), ("batch_size", 0), ("lr", 0.0), ("beta1", 1.0),
     ("lambda_l1", -1.0), ("max_steps", 0), ("d_arch", "wide"), ("d_input", "product"), ("lambda_l2", -1.0)],
)
def test_bad_values_are_user_errors(field: str, value: object) -> None:
    with pytest.raises(UserError, match=field):
        TrainConfig(**{field: value})


def test_impossible_combinations() -> None:
    with pytest.raises(UserError, match="no objective"):
        TrainConfig(gan="none", lambda_l1=0.0)
    with pytest.raises(UserError, match="output_nc"):
        TrainConfig(lambda_rec=10.0, input_nc=1)
    with pytest.raises(UserError, match="multiple of 2\\*\\*num_downs = 256"):
        TrainConfig(size=128, num_downs=8)
    with pytest.raises(UserError, match="power of two"):
        TrainConfig(size=96)
    with pytest.raises(UserError, match="size >= 96"):
        TrainConfig(size=64, d_receptive_field=286)
    TrainConfig(size=96, num_downs=5)  # 96 = 3 * 2**5 is fine with an explicit depth
    # the blog post's network: x + y needs as many input as output channels; its global D needs a 2x2 last map
    with pytest.raises(UserError, match=r"d_input = 'sum'.*input_nc \(1\) must equal output_nc \(3\)"):
        TrainConfig(d_input="sum", input_nc=1)
    TrainConfig(d_input="sum", input_nc=1, gan="unconditional")  # no pair, nothing summed
    with pytest.raises(UserError, match="global discriminator needs size >= 32"):
        TrainConfig(arch="resnet", d_arch="global", size=16)
    TrainConfig(arch="resnet", d_arch="global", size=32)
    TrainConfig(gan="none", lambda_l1=0.0, lambda_l2=1.0)  # the Euclidean distance alone is an objective


def test_load_generator_with_size_override_sets_depth(tmp_path: Path) -> None:
    path = write(tmp_path, '# Table 1 row "L1+cGAN"\narch = "unet"\nlambda_l1 = 100\n', "l1_cgan.toml")
    cfg = load_generator(path, {"size": 64, "epochs": None, "batch_size": 4})
    assert cfg.name == "l1_cgan"  # defaults to the file stem
    assert (cfg.size, cfg.num_downs, cfg.batch_size, cfg.epochs) == (64, 6, 4, 200)
    assert isinstance(cfg.lambda_l1, float)
    fixed = write(tmp_path, "num_downs = 5\n", "fixed.toml")
    assert load_generator(fixed, {"size": 64}).num_downs == 5
    with pytest.raises(UserError, match="multiple of 2\\*\\*num_downs"):
        load_generator(fixed, {"size": 48})


def test_load_generator_errors_name_the_file(tmp_path: Path) -> None:
    bad_key = write(tmp_path, "lamda_l1 = 10\n", "typo.toml")
    with pytest.raises(UserError, match=r"typo\.toml: unknown key\(s\) lamda_l1"):
        load_generator(bad_key, {})
    bad_type = write(tmp_path, "jitter = 1\n", "type.toml")
    with pytest.raises(UserError, match=r"type\.toml: jitter must be true or false"):
        load_generator(bad_type, {})
    bad_int = write(tmp_path, "epochs = true\n", "bool.toml")
    with pytest.raises(UserError, match="epochs must be an integer"):
        load_generator(bad_int, {})
    broken = write(tmp_path, "arch = \n", "broken.toml")
    with pytest.raises(UserError, match=r"broken\.toml: not valid TOML"):
        load_generator(broken, {})
    bad_value = write(tmp_path, 'arch = "vgg"\n', "arch.toml")
    with pytest.raises(UserError, match=r"arch\.toml: unknown arch 'vgg'; valid: encoder_decoder, resnet, unet"):
        load_generator(bad_value, {})
    with pytest.raises(UserError, match="unknown override"):
        load_generator(write(tmp_path, ""), {"sizes": 64})
    with pytest.raises(UserError, match="not found"):
        load_generator(tmp_path / "missing.toml", {})


def test_bare_names_resolve_to_the_shipped_variants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = Path(__file__).resolve().parents[1] / "generators"  # the checkout's top-level folder
    monkeypatch.chdir(tmp_path)
    assert generator_file("l1_cgan") == shipped / "l1_cgan.toml"
    assert generator_file("l1_cgan.toml") == shipped / "l1_cgan.toml"
    assert load_generator("gan", {"size": 64}).gan == "unconditional"
    local = write(tmp_path, "epochs = 3\n", "l1_cgan.toml")
    assert generator_file("l1_cgan.toml") == Path("l1_cgan.toml") and load_generator("l1_cgan.toml").epochs == 3
    assert generator_file(local) == local
    with pytest.raises(UserError) as err:
        load_generator("l1_cgna")
    message = str(err.value)
    assert message.startswith("unknown generator 'l1_cgna'") and "\n" not in message
    assert all(p.stem in message for p in shipped.glob("*.toml")) and len(list(shipped.glob("*.toml"))) == 28
    with pytest.raises(UserError, match="not found"):
        generator_file("generators/l1_cgan.toml")  # a path with a folder part is a path, not a shipped name


def test_to_toml_round_trips() -> None:
    cfg = TrainConfig(name="x", size=64, max_steps=7, gan_mode="lsgan", lambda_rec=10.0)
    data = tomllib.loads(cfg.to_toml())
    assert "num_downs" not in data  # None has no TOML spelling; it stays unset
    assert data["max_steps"] == 7 and data["lambda_rec"] == 10.0
    assert TrainConfig.from_dict(data) == cfg
    assert TrainConfig.from_dict(tomllib.loads(cfg.resolved().to_toml())).num_downs == 6


def test_config_hash_is_sha256_of_the_semantic_fields() -> None:
    cfg = TrainConfig(size=64)
    # the fields that existed before colorization; the three it added count only when set
    added = {"color_space": "rgb", "mirror": None, "lambda_mse": 0.0}
    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "log_every", *added)}
    fields["num_downs"] = 6
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert config_hash(cfg) == expected
    assert config_hash(TrainConfig(size=64, num_downs=6, log_every=1, name="other")) == expected
    assert config_hash(TrainConfig(size=64, lambda_l1=10.0)) != expected
    assert config_hash(TrainConfig(size=64, seed=1)) != expected
    with_mirror = hashlib.sha256(json.dumps({**fields, "mirror": True}, sort_keys=True,
                                            separators=(",", ":")).encode()).hexdigest()
    assert config_hash(TrainConfig(size=64, mirror=True)) == with_mirror


def test_lab_colour_space_needs_one_input_and_two_output_channels() -> None:
    with pytest.raises(UserError, match="input_nc = 1 and output_nc = 2"):
        TrainConfig(color_space="lab")
    assert TrainConfig(color_space="lab", input_nc=1, output_nc=2).color_space == "lab"
    with pytest.raises(UserError, match="color_space"):
        TrainConfig(color_space="hsv")
    with pytest.raises(UserError, match="lambda_mse must be >= 0"):
        TrainConfig(lambda_mse=-1.0)
