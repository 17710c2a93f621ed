"""configs/star_*.json give `nextscale train` the official STAR recipe as far as STAR_REFERENCE.md states it: every
command of each file parses (nothing trains), and the run file with its command line becomes the options, objective
and model shape of the reference: schedules (section 2), RoPE, caption dropout (section 3), loss and fp16 (section
6), token dropping at 1024 px (section 6) and the sampler stage (section 9); each fine-tune starts from the export
of the stage before it."""

import json
import shlex
from pathlib import Path

import pytest

from nextscale.cli import build_parser, train_model
from nextscale.cli import train as train_command
from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024, ScaleSchedule
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.training.config import TransformerObjective
from nextscale.training.options import apply_run_file, train_config_from_args
from nextscale.training.token_dropping import token_drop_start

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# file -> (the stage it starts from, its scale sides); the d30 files form one chain, 256 -> 512 -> 1024 -> sampler
STAR = {
    "star_d16_256": (None, SIDES_256),
    "star_d30_256": (None, SIDES_256),
    "star_d30_512_finetune": ("star_d30_256", SIDES_512),
    "star_d30_1024_finetune": ("star_d30_512_finetune", SIDES_1024),
    "star_d30_1024_sampler_head": ("star_d30_1024_finetune", SIDES_1024),
}
CLIP_WIDTH = 1024  # the CLIP ViT-H text tower of the releases (section 1)


def test_every_star_run_file_is_listed_here():
    assert sorted(path.stem for path in CONFIGS.glob("star_*.json")) == sorted(STAR)


def steps_of(name: str) -> list[list[str]]:
    """The `nextscale ...` steps of the file's command, each as [subcommand, flags...]."""
    command = json.loads((CONFIGS / f"{name}.json").read_text())["command"]
    steps = [shlex.split(step) for step in command.split("&&")]
    return [words[words.index("nextscale") + 1 :] for words in steps]


def train_args(name: str):
    """The file's `nextscale train` step parsed as the command line would be, with the run file applied."""
    (words,) = [words for words in steps_of(name) if words[0] == "train"]
    args = build_parser().parse_args(words)
    return apply_run_file(args, train_command.RUN_FILE_SOURCES)


def flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


@pytest.mark.parametrize("name", sorted(STAR))
def test_every_command_of_the_file_parses(name):
    for words in steps_of(name):
        build_parser().parse_args(words)  # exits (SystemExit) on a flag the command does not take
    assert train_args(name).config == f"configs/{name}.json"


@pytest.mark.parametrize("name", sorted(STAR))
def test_run_file_becomes_the_reference_options(name):
    _, sides = STAR[name]
    args = train_args(name)
    assert args.text_encoder and args.data.startswith("captions:")  # a text model on captioned images
    assert args.tokenizer == "vae_ch160v4096z32.pth"  # VAR's VQVAE, also for the 1024 px schedule (section 1)
    assert tuple(args.scale_sides or SIDES_256) == sides  # section 2
    # section 3: condition dropout 0.1, only for captions longer than 20 characters
    assert (args.cond_drop_rate, args.caption_drop_min_chars) == (0.1, 21)
    config = train_config_from_args(args, samples_per_epoch=1)
    # section 6: per-token cross-entropy without label smoothing, fp16 with the grad scaler, AdamW as in VAR
    assert (args.label_smoothing, args.progressive, config.precision) == (0.0, 0.0, "fp16")
    assert (config.betas, config.weight_decay, config.grad_clip) == ((0.9, 0.95), 0.05, 2.0)
    objective = TransformerObjective(
        label_smoothing=args.label_smoothing,
        keep_tokens=args.keep_tokens,
        drop_tokens_from_scale=args.drop_tokens_from_scale,
        caption_drop_min_chars=args.caption_drop_min_chars,
        train_sampler_head=args.train_sampler_head,
    )
    schedule = ScaleSchedule(sides)
    if name == "star_d30_1024_finetune":  # section 6: keep 8800 of 9451, dropping from the 64 x 64 map at 5355
        assert schedule.total_tokens == 9451
        assert token_drop_start(schedule, objective.keep_tokens, objective.drop_tokens_from_scale) == 5355
        assert objective.keep_tokens == 8800
    else:
        assert objective.keep_tokens is None
    # section 9: the sampler stage trains a head for the scales from index 9 on, on a trained model
    assert objective.train_sampler_head == (name == "star_d30_1024_sampler_head")
    if objective.train_sampler_head:
        assert (args.sampler_from_scale, args.sampler_head_init) == (9, "official")


@pytest.mark.parametrize("name", [name for name, (parent, _) in STAR.items() if parent is None])
def test_fresh_runs_build_the_released_shape(name):
    args = train_args(name)
    _, sides = STAR[name]
    depth = int(name.split("_")[1].removeprefix("d"))
    config = train_model.build_transformer_config(args, TokenizerConfig(scale_sides=sides), text_dim=CLIP_WIDTH)
    assert (config.depth, config.embed_dim, config.num_heads) == (depth, 64 * depth, depth)
    assert config.drop_path_rate == pytest.approx(0.1 * depth / 24)
    assert (config.rope_theta, config.rope_norm) == (10000.0, 64.0)  # section 2, the released configs
    assert (config.text_dim, config.attn_l2_norm, config.logit_norm) == (CLIP_WIDTH, True, True)
    assert (config.scale_sides, config.cond_drop_rate) == (sides, 0.1)
    assert not config.official_batch0_cross_attention  # trained per sample (section 8)
    assert (args.init_head, args.init_std) == (0.02, None)  # section 4.6


@pytest.mark.parametrize("name", [name for name, (parent, _) in STAR.items() if parent is not None])
def test_each_stage_starts_from_the_export_of_the_one_before(name):
    parent = STAR[name][0]
    args = train_args(name)
    (export,) = [words for words in steps_of(name) if words[0] == "export" and flag(words, "--out") == args.init_from]
    assert flag(export, "--run") == train_args(parent).run_dir
    assert args.preset is None and args.depth is None  # the --init-from model fixes the shape
