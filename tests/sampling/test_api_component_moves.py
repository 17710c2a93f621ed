"""A component moved by hand (``pipe.transformer.to(torch.bfloat16)``, ``pipe.tokenizer.to("meta")``) is refused in
one line that names the supported way, at the call, not deep inside a layer."""

import pytest
import torch
from tiny_pipelines import tiny_class_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

FIX = r"from_pretrained\(path, dtype=.*use_precision"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_a_transformer_moved_to_another_dtype_is_refused_with_the_supported_way(dtype):
    pipe = tiny_class_pipeline()
    pipe.transformer.to(dtype)
    with pytest.raises(TypeError, match=rf"pipe.transformer holds {dtype}.*{FIX}"):
        pipe(class_labels=[1], seed=0, output_type="pt")


def test_a_tokenizer_moved_to_half_is_refused_before_edits_and_decoding():
    pipe = tiny_class_pipeline()
    tokens = pipe(class_labels=[1], seed=0, output_type="pt").tokens
    pipe.tokenizer.to(torch.float16)
    image = torch.zeros(1, 3, pipe.image_size, pipe.image_size)
    with pytest.raises(TypeError, match=rf"pipe.tokenizer holds torch.float16.*{FIX}"):
        pipe.edit_images(image, torch.ones(4, 4, dtype=torch.bool), class_labels=[1], seed=0)
    with pytest.raises(TypeError, match="pipe.tokenizer holds torch.float16"):
        pipe.decode_tokens(tokens)


def test_a_component_on_another_device_is_refused_with_pipe_to():
    pipe = tiny_class_pipeline()
    pipe.tokenizer.to("meta")
    with pytest.raises(ValueError, match=r"pipe.tokenizer is on meta.*pipe.to\(device\)"):
        pipe(class_labels=[1], seed=0, output_type="pt")


def test_the_supported_precision_is_still_accepted():
    pipe = tiny_class_pipeline()
    exact = pipe(class_labels=[1], seed=0, output_type="pt")
    assert exact.tokens.shape == (1, 21)
    pipe.use_precision("bf16")  # casts the transformer's linear weights to bfloat16: allowed
    assert pipe(class_labels=[1], seed=0, output_type="pt").tokens.shape == (1, 21)
