"""Every method that takes a pipeline's turn, called from inside a call (a constraint hook runs in the call's own
thread), is refused in one line instead of waiting for its own call forever, and the call samples as without it."""

import threading

import torch
from tiny_pipelines import tiny_class_pipeline

CHANNELS = 3  # the tiny preset's images
# The turn-taking methods besides `to` (tests/sampling/test_s17_switches_take_turns.py covers it): another call, an
# edit (its call), re-rendering tokens and each speed switch.
REENTRIES = {
    "call": lambda pipe: pipe(class_labels=[2], seed=1),
    "edit": lambda pipe: pipe.inpaint(torch.zeros(1, CHANNELS, pipe.image_size, pipe.image_size), box=(0, 0, 0.5, 0.5)),
    "decode_tokens": lambda pipe: pipe.decode_tokens(
        torch.zeros(1, pipe.transformer.config.schedule.total_tokens).long()
    ),
    "release_memory": lambda pipe: pipe.release_memory(),
    "use_precision": lambda pipe: pipe.use_precision("bf16"),
    "use_fused_kernels": lambda pipe: pipe.use_fused_kernels(False),
    "use_cuda_graphs": lambda pipe: pipe.use_cuda_graphs(False),
}


def test_every_turn_taking_method_from_inside_a_call_is_refused_and_the_call_is_unchanged():
    pipe = tiny_class_pipeline()
    expected = pipe(class_labels=[1], seed=0).tokens
    refused = {}

    def reentering_constraint(scale_idx, tokens, codes):
        if scale_idx == 1:
            for name, reenter in REENTRIES.items():
                try:
                    reenter(pipe)
                except RuntimeError as err:
                    refused[name] = str(err)
        return tokens, codes

    results = {}
    call = threading.Thread(
        target=lambda: results.update(tokens=pipe(class_labels=[1], seed=0, constraint=reentering_constraint).tokens),
        daemon=True,  # a deadlock leaves the thread waiting: the assertions below fail instead of the run hanging
    )
    call.start()
    call.join(timeout=120)
    assert not call.is_alive()
    assert set(refused) == set(REENTRIES)
    assert all("already sampling in this thread" in message and "\n" not in message for message in refused.values())
    assert torch.equal(results["tokens"], expected)
    assert pipe.precision.name == "fp32"  # the refused switch changed nothing
