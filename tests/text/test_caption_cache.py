"""The caption memo encodes every caption the same, bit for bit, whichever batch first meets it (so a resumed
text run, which starts with an empty memo, sees the encodings of an uninterrupted one)."""

import random

import pytest
import torch

from nextscale.text import load_default_text_encoder
from nextscale.text.cache import CHUNK_ROWS, CachedTextEncoder, canonical_chunks

WORDS = (
    "a red blue small large shirt dress coat bag sneaker boot trouser on the left right of next to and floor".split()
)


@pytest.fixture(scope="module")
def encoder():
    return load_default_text_encoder()


def captions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 14))) for _ in range(count)]


def test_a_caption_encodes_identically_whatever_batch_first_meets_it(encoder):
    target = "a small red bag next to a coat"
    alone = CachedTextEncoder(encoder).encode([target])
    for seed, count in ((1, 5), (2, 40), (3, 120)):
        batch = captions(count, seed) + [target]
        random.Random(seed).shuffle(batch)
        row = batch.index(target)
        crowded = CachedTextEncoder(encoder).encode(batch)
        length = int(alone.mask.sum())
        assert torch.equal(crowded.hidden[row, :length], alone.hidden[0]), count
        assert torch.equal(crowded.pooled[row], alone.pooled[0]), count
    # the plain encoder is not like that: in a batch of long captions the same row moves in its last bits, which is
    # why the memo encodes in canonical chunks (if this ever holds exactly, the chunks are merely harmless)
    plain = encoder.encode([target] + captions(120, 3))
    assert not torch.equal(plain.pooled[0], alone.pooled[0])


def test_chunks_group_captions_by_token_count_in_fixed_row_counts(encoder):
    texts = captions(30, 4)
    chunks = canonical_chunks(texts, encoder)
    assert all(len(chunk) == CHUNK_ROWS for chunk in chunks)
    assert all(len(set(encoder.token_counts(chunk))) == 1 for chunk in chunks)
    assert {text for chunk in chunks for text in chunk} == set(texts)
    assert sum(len(set(chunk)) for chunk in chunks) == len(texts)  # each caption once, fillers repeat within a chunk
    assert canonical_chunks([], encoder) == []


def test_the_truncation_warning_counts_the_long_captions_not_the_chunk_filling(encoder, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="nextscale.text"):
        CachedTextEncoder(encoder).encode(["cat " * 400, "a cat", "a red bag"])
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "1 of 1 prompts exceed" in message, message  # not "8 of 8": the chunk repeats the long caption


def test_training_on_long_captions_warns_of_truncation_once_not_at_every_step(caplog):
    import logging

    cache = CachedTextEncoder(load_default_text_encoder())  # its own encoder: the warning is given once per encoder
    with caplog.at_level(logging.WARNING, logger="nextscale.text"):
        for step in range(3):  # three training steps, each with 16 new long captions (two chunks)
            cache.encode([f"caption {step} {index} " + "cat " * 300 for index in range(16)])
    warnings = [record.getMessage() for record in caplog.records if "exceed" in record.getMessage()]
    assert len(warnings) == 1 and "8 of 8 prompts exceed" in warnings[0], warnings  # was 6 lines


def test_a_bare_string_or_an_empty_list_is_refused_like_the_encoder_does(encoder):
    cache = CachedTextEncoder(encoder)
    with pytest.raises(TypeError, match=r"\['a cat'\]"):
        cache.encode("a cat")  # was 5 rows, one per character
    with pytest.raises(ValueError, match="at least one prompt"):
        cache.encode([])
    with pytest.raises(TypeError, match="strings"):
        cache.encode(["a cat", None])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_memo_of_a_gpu_encoder_stays_in_cpu_memory():
    """200,000 memo entries would take GBs of the GPU from training; batches still come back on the GPU."""
    cache = CachedTextEncoder(load_default_text_encoder(device="cuda"))
    texts = captions(20, 7)
    encoding = cache.encode(texts)
    assert encoding.device.type == "cuda"
    assert all(entry.hidden.device.type == "cpu" for entry in cache._memo.values())
    assert torch.equal(cache.encode(texts).hidden, encoding.hidden)  # from the memo: the same values
