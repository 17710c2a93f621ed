"""Two processes (gloo, world size 2) train exactly like one process with the same global batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from training_helpers import read_metrics, state_differences, tiny_configs, tiny_data, train_config

from nextscale import distributed
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TokenizerLossConfig, TransformerObjective, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _train_both(root: str) -> None:
    """A tokenizer (with its GAN from step 2 and dead-code restarts) and a transformer, 4 steps each, global batch 8."""
    dist_info = distributed.init_distributed()
    tokenizer_config, transformer_config = tiny_configs(deterministic=True)
    data = tiny_data()
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    # Dead codes restarted at steps 2 and 4 from the whole global batch's features, as one process picks them.
    losses = TokenizerLossConfig(
        disc_start=2, disc_channels=32, disc_layers=2, dead_code_every=2, dead_code_min_hits=1.0
    )
    config = train_config(total_steps=4, betas=(0.5, 0.9), eval_every=4)
    TokenizerTrainer(tokenizer, losses, config, f"{root}/tokenizer", *data, dist_info=dist_info).fit()
    seed_everything(0)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(total_steps=4, grad_accum=2, eval_every=4)  # DDP no_sync on the first micro-step
    trainer = TransformerTrainer(
        transformer, tokenizer, objective, config, f"{root}/transformer", *data, dist_info=dist_info
    )
    trainer.fit()


def _worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group():
        _train_both(root)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _close(single: float, ddp: float) -> bool:
    # All-reduce sums in another order (1e-7 apart); the discriminator's first Adam step (g / (|g| + eps))
    # turns that into ~1.5e-5 where a gradient is near zero. Other data or a wrong shard differ by 1e-2 or more.
    return abs(single - ddp) <= 1e-4 * max(1.0, abs(single))


def _optimizer_states_in_order(state: dict) -> list[dict]:
    """Per-parameter optimizer states in parameter order: a plain state dict keys them by index, FSDP's full
    one by parameter name, both in the order of ``param_groups[i]["params"]``."""
    return [state["state"][key] for group in state["param_groups"] for key in group["params"] if key in state["state"]]


def _final_state_differences(single_dir, other_dir, atol: float, rtol: float) -> list[str]:
    """Where the final checkpoints (read with the trainer's own loader) of two runs differ: step, data position and
    GradScaler exactly; weights, EMA and optimizer moments within atol + rtol * |x|."""
    single, _ = ckpt.load_latest(single_dir)
    other, _ = ckpt.load_latest(other_dir)
    problems = state_differences(
        {key: single[key] for key in ("step", "sampler", "scaler")},
        {key: other[key] for key in ("step", "sampler", "scaler")},
    )
    problems += state_differences(single["models"], other["models"], atol, rtol, "models")
    problems += state_differences(single["ema"], other["ema"], atol, rtol, "ema")
    for name in single["optimizers"]:
        problems += state_differences(
            _optimizer_states_in_order(single["optimizers"][name]),
            _optimizer_states_in_order(other["optimizers"][name]),
            atol,
            rtol,
            f"optimizers.{name}",
        )
    return problems


def _flat_tensors(state: dict) -> dict[str, dict[str, torch.Tensor]]:
    """A checkpoint's weights, EMA and optimizer moments as {group: {name: tensor}}."""
    groups = {f"models.{name}": tensors for name, tensors in state["models"].items()}
    groups["ema"] = state["ema"]["module"]
    for name, optimizer in state["optimizers"].items():
        groups[f"optimizers.{name}"] = {
            f"{index}.{key}": value
            for index, moments in enumerate(_optimizer_states_in_order(optimizer))
            for key, value in moments.items()
        }
    return groups


def _zero_gradient_noise(single_dir, other_dir, tight: float, loose: float, fraction: float) -> list[str]:
    """Weights, EMA and optimizer moments agree within ``tight`` except at most ``fraction`` of each module's
    elements, and within ``loose`` everywhere. Why the exception: a bias feeding a GroupNorm, or an attention key
    bias, has an exactly zero true gradient; its float gradient is rounding noise (~1e-10, the size of Adam's eps),
    whose sign the all-reduce order decides, and Adam turns it into an update of up to lr per step either way.
    Those few hundred elements (of ~1 M) may differ by up to steps x lr; everything else follows the data."""
    weights, others = (_flat_tensors(ckpt.load_latest(run_dir)[0]) for run_dir in (single_dir, other_dir))
    problems = []
    for group, tensors in weights.items():
        floats = [(key, tensor) for key, tensor in tensors.items() if tensor.is_floating_point()]
        gaps = torch.cat([(tensor - others[group][key]).abs().flatten() for key, tensor in floats])
        if gaps.max() > loose:
            problems.append(f"{group}: differs by {gaps.max():.3g} > {loose}")
        if (gaps > tight).float().mean() > fraction:
            problems.append(f"{group}: {(gaps > tight).float().mean():.3%} of elements differ by more than {tight}")
        problems += state_differences(
            {key: t for key, t in tensors.items() if not t.is_floating_point()},
            {key: t for key, t in others[group].items() if not t.is_floating_point()},
            prefix=group,
        )
    return problems


def test_two_processes_match_one(tmp_path):
    _train_both(str(tmp_path / "single"))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    for part, keys in (("tokenizer", ("loss", "recon_loss", "disc_loss")), ("transformer", ("loss", "accuracy"))):
        single, ddp = read_metrics(tmp_path / "single" / part), read_metrics(tmp_path / "ddp" / part)
        assert [r["step"] for r in ddp] == [1, 2, 3, 4]
        for a, b in zip(single, ddp):
            for key in keys:
                if key in a:
                    assert _close(a[key], b[key]), (part, a["step"], key, a[key], b[key])
        eval_single, eval_ddp = (
            read_metrics(tmp_path / "single" / part, "eval"),
            read_metrics(tmp_path / "ddp" / part, "eval"),
        )
        for key, value in eval_single[-1].items():
            if key not in ("step", "split"):
                assert _close(value, eval_ddp[-1][key]), (part, key)
    usage_single = read_metrics(tmp_path / "single" / "tokenizer")[-1]["code_usage/scale2"]
    assert read_metrics(tmp_path / "ddp" / "tokenizer")[-1]["code_usage/scale2"] == usage_single
    # Final weights, EMA and optimizer moments after the 4 steps. CPU is otherwise deterministic; the only
    # difference is gloo summing the two ranks' gradients in another order (float32 rounding, ~1e-8 here).
    # A wrong shard, a missed all-reduce or a skipped micro-batch moves weights by ~lr = 2e-3.
    single, ddp = tmp_path / "single" / "transformer", tmp_path / "ddp" / "transformer"
    assert _final_state_differences(single, ddp, atol=1e-6, rtol=1e-5) == []
    single, ddp = tmp_path / "single" / "tokenizer", tmp_path / "ddp" / "tokenizer"
    assert _zero_gradient_noise(single, ddp, tight=1e-5, loose=4 * 2 * 2e-3, fraction=1e-3) == []


def _train_transformer(root: str, strategy: str, max_steps: int | None = None) -> None:
    dist_info = distributed.init_distributed()
    tokenizer_config, transformer_config = tiny_configs(deterministic=True)
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(total_steps=4, strategy=strategy)
    TransformerTrainer(transformer, tokenizer, objective, config, root, *tiny_data(), dist_info=dist_info).fit(
        max_steps
    )


def _fsdp_worker(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group():
        _train_transformer(f"{root}/fsdp", "fsdp")
        _train_transformer(f"{root}/fsdp-resumed", "fsdp", max_steps=2)  # interrupted ...
        _train_transformer(f"{root}/fsdp-resumed", "fsdp")  # ... and resumed from gathered full checkpoints
        _train_transformer(f"{root}/ddp-first", "ddp", max_steps=2)
        try:  # DDP checkpoints key Adam's moments by position: resuming under FSDP is refused in words
            _train_transformer(f"{root}/ddp-first", "fsdp")
        except ValueError as err:
            assert "written without FSDP" in str(err) and "--strategy ddp" in str(err)
        else:
            raise AssertionError("a DDP run resumed under FSDP")


@pytest.mark.slow  # about 12 s: FSDP2 set-up on gloo
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fsdp_matches_one_process_and_resumes(tmp_path):
    _train_transformer(str(tmp_path / "single"), "none")
    mp.spawn(_fsdp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = [r["loss"] for r in read_metrics(tmp_path / "single")]
    for name in ("fsdp", "fsdp-resumed"):
        losses = [r["loss"] for r in read_metrics(tmp_path / name)]
        assert len(losses) == 4 and max(abs(a - b) for a, b in zip(single, losses)) <= 1e-5
        # The gathered full checkpoints hold the same final weights, EMA and Adam moments as one process, up to
        # the float32 rounding of gloo's reduce-scatter (another summation order; ~1e-8 here, deterministic
        # otherwise). A lost shard or a wrong gather differs by ~lr = 2e-3.
        assert _final_state_differences(tmp_path / "single", tmp_path / name, atol=1e-6, rtol=1e-5) == []


def _text_fsdp_worker(rank: int, world_size: int, port: int, root: str) -> None:
    """The same batch through a STAR model sharded with FSDP2 on every rank: its projections of the text run
    outside the blocks' forward (once per step), so they must gather their weights too; then once more with its
    blocks recomputed in the backward pass (activation checkpointing), which must give the same gradients."""
    from nextscale.presets import star_tiny
    from nextscale.transformer.conditioning import TextCondition
    from nextscale.transformer.text_model import TextScaleTransformer

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group():
        torch.manual_seed(0)
        model = TextScaleTransformer(star_tiny()[1])
        model.init_weights(init_head=1.0)
        generator = torch.Generator().manual_seed(1)
        condition = TextCondition(torch.randn(2, 5, 384, generator=generator), torch.ones(2, 5, dtype=torch.long),
                                  torch.randn(2, 384, generator=generator))  # fmt: skip
        tokens = torch.randn(2, model.config.schedule.total_tokens - 1, model.config.code_dim, generator=generator)
        plain = {name: p.detach().clone() for name, p in model.named_parameters()}
        sharded = distributed.wrap_model(model.eval(), "fsdp")  # eval: no drop-path draws to match
        loss = sharded(condition, tokens).float().pow(2).mean()
        loss.backward()
        # Recomputing the sharded blocks in the backward pass (they gather their weights again) changes no gradient.
        grads = {name: p.grad.to_local().clone() for name, p in sharded.named_parameters()}
        sharded.zero_grad(set_to_none=True)
        sharded.use_activation_checkpointing()
        sharded(condition, tokens).float().pow(2).mean().backward()
        for name, p in sharded.named_parameters():
            assert torch.equal(p.grad.to_local(), grads[name]), name
        if rank == 0:
            torch.save({"loss": loss.detach(), "plain": plain}, f"{root}/fsdp_text.pt")


@pytest.mark.slow  # FSDP2 set-up on gloo: a few seconds
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fsdp_shards_a_text_model_and_matches_its_unsharded_forward(tmp_path):
    from nextscale.presets import star_tiny
    from nextscale.transformer.conditioning import TextCondition
    from nextscale.transformer.text_model import TextScaleTransformer

    mp.spawn(_text_fsdp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    saved = torch.load(tmp_path / "fsdp_text.pt", weights_only=True)
    model = TextScaleTransformer(star_tiny()[1]).eval()
    model.load_state_dict({**model.state_dict(), **saved["plain"]})
    generator = torch.Generator().manual_seed(1)
    condition = TextCondition(torch.randn(2, 5, 384, generator=generator), torch.ones(2, 5, dtype=torch.long),
                              torch.randn(2, 384, generator=generator))  # fmt: skip
    tokens = torch.randn(2, model.config.schedule.total_tokens - 1, model.config.code_dim, generator=generator)
    expected = model(condition, tokens).float().pow(2).mean()
    assert torch.allclose(saved["loss"], expected, rtol=1e-5, atol=1e-6)
