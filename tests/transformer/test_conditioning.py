"""ClassEmbedder: reserved null id, training-only condition dropout, label validation."""

import pytest
import torch

from nextscale.transformer.conditioning import ClassEmbedder


def test_null_id_and_null_labels():
    embedder = ClassEmbedder(num_classes=10, embed_dim=4, drop_rate=0.1)
    assert embedder.null_id == 10 and embedder.embedding.num_embeddings == 11
    assert embedder.null_labels(3).tolist() == [10, 10, 10]
    assert embedder.null_labels(2).dtype == torch.int64


def test_labels_are_dropped_only_in_training():
    embedder = ClassEmbedder(num_classes=10, embed_dim=4, drop_rate=0.5)
    labels = torch.arange(10).repeat(20)
    embedder.eval()
    torch.testing.assert_close(embedder(labels), embedder.embedding(labels), rtol=0, atol=0)
    embedder.train()
    generator = torch.Generator().manual_seed(0)
    dropped = embedder.drop_labels(labels, generator)
    is_null = dropped == embedder.null_id
    assert 0.3 < is_null.float().mean() < 0.7
    assert torch.equal(dropped[~is_null], labels[~is_null])
    # Same generator seed -> same dropout in forward.
    out = embedder(labels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, embedder.embedding(dropped), rtol=0, atol=0)
    # embed() never drops, even in training mode.
    torch.testing.assert_close(embedder.embed(labels), embedder.embedding(labels), rtol=0, atol=0)


def test_label_validation_errors():
    embedder = ClassEmbedder(num_classes=10, embed_dim=4, drop_rate=0.0)
    embedder(torch.tensor([0, 9, 10]))  # the null id is a valid input
    with pytest.raises(ValueError, match=r"0\.\.9"):
        embedder(torch.tensor([11]))
    with pytest.raises(ValueError, match=r"\[-1, 3\]"):
        embedder.embed(torch.tensor([-1, 3]))
    with pytest.raises(TypeError, match="int64"):
        embedder(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        embedder(torch.tensor([[1]]))
    with pytest.raises(ValueError, match="drop rate"):
        ClassEmbedder(10, 4, drop_rate=1.0)
