"""A pipeline's speed switches and ``to`` wait for a call running in another thread (a server calls one pipeline from
several threads), and a switch from inside a call is refused in one line instead of waiting for itself forever."""

import threading

import pytest
import torch
from tiny_pipelines import tiny_class_pipeline

SWITCHES = {
    "use_precision": lambda pipe: pipe.use_precision("bf16"),
    "use_fused_kernels": lambda pipe: pipe.use_fused_kernels(False),
    "use_cuda_graphs": lambda pipe: pipe.use_cuda_graphs(False),
    "to": lambda pipe: pipe.to("cpu"),
}


class WatchedLock:
    """The pipeline's call lock, telling when the thread named "switch" reaches it (without timing anything)."""

    def __init__(self, lock: threading.Lock, reached: threading.Event) -> None:
        self.lock, self.reached = lock, reached

    def __enter__(self) -> bool:
        if threading.current_thread().name == "switch":
            self.reached.set()
        return self.lock.__enter__()

    def __exit__(self, *exc_info) -> None:
        self.lock.__exit__(*exc_info)


@pytest.mark.parametrize("switch", SWITCHES)
def test_a_switch_waits_for_a_call_running_in_another_thread(switch):
    # Before, a switch ran at once: use_precision("bf16") cast the weights between two scales of a running call, `to`
    # dropped its KV cache. The order of the events shows it: the switch ended before the paused call resumed.
    pipe = tiny_class_pipeline()
    expected = pipe(class_labels=[1, 2], seed=0, output_type="pt").tokens
    steps, events = pipe.sampler.steps, []
    paused, resume, reached = threading.Event(), threading.Event(), threading.Event()
    eager_logits = steps.logits

    def pausing_logits(x, context, kv_cache):
        if kv_cache.length > 0 and not paused.is_set():  # between the first and the second scale
            paused.set()
            assert resume.wait(timeout=60)
            events.append("call resumed")
        return eager_logits(x, context, kv_cache)

    def switching():
        try:
            SWITCHES[switch](pipe)
            events.append("switched")
        finally:
            reached.set()  # also when it never reached the lock

    steps.logits = pausing_logits
    pipe.call_lock = WatchedLock(pipe.call_lock, reached)
    results = {}
    call = threading.Thread(target=lambda: results.update(tokens=pipe(class_labels=[1, 2], seed=0).tokens))
    call.start()
    assert paused.wait(timeout=60)
    other = threading.Thread(target=switching, name="switch")
    other.start()
    assert reached.wait(timeout=60)  # the switch is at the lock (or, without it, done)
    resume.set()
    call.join(timeout=60)
    other.join(timeout=60)
    assert events == ["call resumed", "switched"]
    assert torch.equal(results["tokens"], expected)  # the whole call sampled as it began


def test_a_switch_from_inside_a_call_is_refused_in_one_line():
    # A constraint hook that moves the pipeline would wait for its own call's lock forever.
    pipe = tiny_class_pipeline()
    caught = []

    def moving_constraint(scale_idx, tokens, codes):
        try:
            pipe.to("cpu")
        except RuntimeError as err:
            caught.append(str(err))
        return tokens, codes

    call = threading.Thread(target=lambda: pipe(class_labels=[1], seed=0, constraint=moving_constraint), daemon=True)
    call.start()
    call.join(timeout=60)
    assert not call.is_alive()
    assert caught and "already sampling in this thread" in caught[0] and "\n" not in caught[0]
    assert len(pipe(class_labels=[1], seed=0).tokens) == 1  # the refused switch left the turn free


@pytest.mark.parametrize("method", ["edit_images", "inpaint"])
def test_an_edit_encodes_its_image_in_the_calls_turn(method):
    # Before, the edit encoded its image before taking the call's turn: a `pipe.to` from another thread in between
    # moved the tokenizer under the encode, or left the image's tokens on the device the call no longer ran on.
    pipe = tiny_class_pipeline()
    size, side = pipe.image_size, pipe.transformer.config.scale_sides[-1]
    image = torch.zeros(1, pipe.tokenizer.config.in_channels, size, size)
    keep = torch.zeros(side, side, dtype=torch.bool)
    keep[: side // 2] = True
    encode, encoded_in_turn = pipe.tokenizer.encode, []

    def watched_encode(images):
        encoded_in_turn.append(pipe.turn_holder == threading.get_ident())
        return encode(images)

    pipe.tokenizer.encode = watched_encode
    if method == "edit_images":
        out = pipe.edit_images(image, keep, class_labels=[1], seed=0, output_type="pt")
    else:
        out = pipe.inpaint(image, box=(0.5, 0.0, 1.0, 1.0), class_label=1, seed=0, output_type="pt")
    assert encoded_in_turn == [True]
    assert out.tokens.shape == (1, pipe.transformer.config.schedule.total_tokens)


def test_an_image_edit_given_straight_to_the_sampler_is_refused_in_one_line():
    from nextscale.sampling.editing import ImageEdit

    pipe = tiny_class_pipeline()
    size, side = pipe.image_size, pipe.transformer.config.scale_sides[-1]
    edit = ImageEdit(torch.zeros(1, 3, size, size), torch.ones(side, side, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"an ImageEdit becomes one with \.encoded\(tokenizer, sides, device\)"):
        pipe.sampler.sample([1], constraint=edit)
    hook = edit.encoded(pipe.tokenizer, pipe.transformer.config.scale_sides, pipe.device)
    assert torch.equal(
        pipe.sampler.sample([1], constraint=hook).tokens, pipe.tokenizer.tokens_from_indices(hook.image_indices)
    )
