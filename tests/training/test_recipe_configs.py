"""configs/var_d*_imagenet.json give `nextscale train` the official per-size recipes of the VAR README
(VAR_REFERENCE.md section 5): batch, epochs, tblr, wpe, twde, alng, fp16, and the model shape of the preset."""

from pathlib import Path

import pytest

from nextscale.cli import build_parser
from nextscale.cli import train as train_command
from nextscale.presets import get_preset
from nextscale.scales import SIDES_256, SIDES_512
from nextscale.training.options import apply_run_file, train_config_from_args

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
IMAGENET_TRAIN_IMAGES = 1_281_167

# README "Training Scripts": depth -> (bs, ep, tblr, wpe, twde, alng); train.py defaults: tblr 1e-4, twde = twd.
README = {
    16: (768, 200, 1e-4, 0.1, None, 1e-3),
    20: (768, 250, 1e-4, 0.1, None, 1e-3),
    24: (768, 350, 8e-5, 0.01, None, 1e-4),
    30: (1024, 350, 8e-5, 0.01, 0.08, 1e-5),
    36: (768, 350, 8e-5, 0.01, 0.08, 5e-6),
}


def effective_args(depth: int):
    args = build_parser().parse_args(["train", "--config", str(CONFIGS / f"var_d{depth}_imagenet.json")])
    return apply_run_file(args, train_command.RUN_FILE_SOURCES)


@pytest.mark.parametrize("depth", sorted(README))
def test_run_file_has_the_readme_recipe(depth):
    batch, epochs, base_lr, end_factor, weight_decay_end, gamma = README[depth]
    args = effective_args(depth)
    config = train_config_from_args(args, IMAGENET_TRAIN_IMAGES)
    assert (config.batch_size, args.epochs, config.base_lr, config.lr) == (batch, epochs, base_lr, None)
    assert config.peak_lr == pytest.approx(base_lr * batch / 256)
    schedule = (config.lr_schedule, config.warmup, config.warmup_start, config.end_lr_factor)
    assert schedule == ("lin0", 0.02, 0.005, end_factor)
    assert (config.weight_decay, config.weight_decay_end) == (0.05, weight_decay_end)
    assert (config.betas, config.eps, config.grad_clip, config.precision) == ((0.9, 0.95), 1e-8, 2.0, "fp16")
    assert (args.init_adaln, args.init_adaln_gamma, args.init_head, args.init_std) == (0.5, gamma, 0.02, None)
    assert (args.label_smoothing, args.progressive, args.grad_accum) == (0.0, 0.0, 1)
    assert config.total_steps == pytest.approx(epochs * IMAGENET_TRAIN_IMAGES / batch, abs=0.5)


@pytest.mark.parametrize("depth", sorted(README))
def test_run_file_builds_the_official_shape(depth):
    args = effective_args(depth)
    _, model = get_preset(args.preset)
    sides = SIDES_512 if depth == 36 else SIDES_256
    assert (model.depth, model.embed_dim, model.num_heads) == (depth, 64 * depth, depth)
    assert model.drop_path_rate == pytest.approx(0.1 * depth / 24)
    assert (model.shared_adaln, model.attn_l2_norm, model.cond_drop_rate) == (depth == 36, True, 0.1)
    # the tokenizer's schedule decides the model's: the 512 px run must ask for it
    assert tuple(args.scale_sides or SIDES_256) == sides == model.scale_sides
