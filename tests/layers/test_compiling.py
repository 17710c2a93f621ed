"""compile_with_room: more compiled variants than torch's default limit, and never a silent eager fallback."""

import pytest
import torch
import torch._dynamo

from nextscale.layers import compiling
from nextscale.layers.compiling import compile_with_room


class CountingBackend:
    """A torch.compile backend that runs the traced graph as is and counts the variants compiled."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def _shapes(count: int) -> list[torch.Tensor]:
    return [torch.linspace(-1, 1, length) for length in range(1, count + 1)]


def test_plain_fullgraph_compile_stops_at_torchs_default_limit():
    # The premise: without the room, the ninth static shape of one function fails.
    backend = CountingBackend()

    def twice_sine(x):
        return x.sin() * 2

    compiled = torch.compile(twice_sine, backend=backend, dynamic=False, fullgraph=True)
    limit = torch._dynamo.config.recompile_limit
    for x in _shapes(limit):
        compiled(x)
    with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
        compiled(torch.ones(limit + 1))


def test_compiles_every_variant_past_the_default_limit():
    backend = CountingBackend()

    def sine_plus_one(x):
        return x.sin() + 1

    compiled = compile_with_room(sine_plus_one, backend=backend, dynamic=False)
    inputs = _shapes(torch._dynamo.config.recompile_limit + 4)
    for x in inputs:
        torch.testing.assert_close(compiled(x), x.sin() + 1)
    assert backend.graphs == len(inputs)  # every shape compiled: none ran eagerly
    assert torch._dynamo.config.recompile_limit == 8  # raised only around the call that needed it


def test_past_its_own_limit_it_raises_instead_of_running_eagerly(monkeypatch):
    monkeypatch.setattr(compiling, "RECOMPILE_LIMIT", 10)
    backend = CountingBackend()

    def cosine_minus_one(x):
        return x.cos() - 1

    compiled = compile_with_room(cosine_minus_one, backend=backend, dynamic=False)
    for x in _shapes(10):
        compiled(x)
    with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
        compiled(torch.ones(11))
    assert backend.graphs == 10
    # Variants compiled past torch's default limit are still served from the cache afterwards.
    torch.testing.assert_close(compiled(torch.zeros(10)), torch.zeros(10))
    assert backend.graphs == 10
