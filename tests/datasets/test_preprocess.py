"""normalize: exact statistics from the histogram, preprocess layout and values."""

import numpy as np
import pytest

from mnistlab.datasets.preprocess import normalization_stats, preprocess


def test_normalization_stats_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    mean, std = normalization_stats(x, "standardize")
    assert mean == pytest.approx(x.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(x.std(dtype=np.float64), rel=1e-12)
    assert normalization_stats(x, "scale") == (0.0, 255.0)
    assert normalization_stats(x, "none") == (0.0, 1.0)
    big = np.random.default_rng(1).integers(0, 256, size=(1500, 28, 28), dtype=np.uint8)  # 2 chunks
    mean, std = normalization_stats(big, "standardize")
    assert mean == pytest.approx(big.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(big.std(dtype=np.float64), rel=1e-12)
    with pytest.raises(ValueError, match="zscore"):
        normalization_stats(x, "zscore")


def test_preprocess_flattens_to_contiguous_float32():
    x = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
    out = preprocess(x.astype(np.uint8), 10.0, 2.0)
    assert out.dtype == np.float32 and out.shape == (2, 784) and out.flags.c_contiguous
    np.testing.assert_allclose(out, (x.reshape(2, 784) - 10.0) / 2.0, rtol=1e-6)
    assert preprocess(np.zeros((0, 28, 28), np.uint8), 0.0, 1.0).shape == (0, 784)
