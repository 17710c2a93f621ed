"""The fp16 loss scaler follows the official VAR AmpOptimizer (VAR_REFERENCE.md section 5): GradScaler(init_scale
2**11, growth_interval=1000) whose scale is reset to 32768 after a step that ran with more."""

import torch

from nextscale.training.precision import grad_scaler

STATE = {"growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 1000}


def official_update(scaler: torch.amp.GradScaler) -> None:
    """VAR utils/amp_sc.py backward_clip_step, after scaler.step: the cap reads the scale this step used."""
    if scaler.get_scale() > 32768.0:
        scaler.update(new_scale=32768.0)
    else:
        scaler.update()


def run_steps(scaler, update, finite: list[bool]) -> list[tuple[float, int]]:
    """Scaled backward + step + update per entry (False: an overflowing gradient); (scale, tracker) after each."""
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.0)
    trace = []
    for ok in finite:
        loss = (param * param).sum() * (1.0 if ok else float("inf"))
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        update(scaler)
        optimizer.zero_grad(set_to_none=True)
        state = scaler.state_dict()
        trace.append((state["scale"], state["_growth_tracker"]))
    return trace


def test_fp16_scaler_settings_after_construction():
    scaler = grad_scaler("fp16", torch.device("cpu"))
    assert scaler.is_enabled()
    assert scaler.state_dict() == {"scale": 2.0**11, **STATE, "_growth_tracker": 0}
    assert not grad_scaler("bf16", torch.device("cpu")).is_enabled()
    assert not grad_scaler("fp32", torch.device("cpu")).is_enabled()


def test_fp16_scale_is_capped_at_32768_as_the_official_trainer():
    # start one clean step before a growth at the cap: 2**15 -> 2**16 (used once) -> back to 2**15
    start = {"scale": 32768.0, **STATE, "_growth_tracker": 999}
    pattern = [True, True, True, False, True]
    ours = grad_scaler("fp16", torch.device("cpu"))
    ours.load_state_dict(start)
    official = torch.amp.GradScaler("cpu", init_scale=2.0**11, growth_interval=1000)
    official.load_state_dict(start)
    expected = run_steps(official, official_update, pattern)
    assert expected[:2] == [(65536.0, 0), (32768.0, 0)]
    assert run_steps(ours, lambda s: s.update(), pattern) == expected


def test_a_resumed_larger_scale_is_brought_back_to_the_cap():
    ours = grad_scaler("fp16", torch.device("cpu"))
    ours.load_state_dict({"scale": 2.0**20, **STATE, "_growth_tracker": 5})
    assert run_steps(ours, lambda s: s.update(), [True]) == [(32768.0, 5)]


def test_auto_precision_is_native_bf16_on_ampere_fp16_before_and_fp32_on_cpu(monkeypatch):
    from nextscale.training.precision import resolve_precision

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # emulated bf16 says yes
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # V100
    assert resolve_precision("auto", cuda) == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", cuda) == "bf16"
