import math

import pytest
import torch

from wsod_d2.modeling.wsol.scm import (
    SCM,
    ActivationDiffusionBlock,
    cosine_similarity_matrix,
    grid_laplacian,
    newton_schulz_inverse,
)


def test_grid_laplacian_by_hand():
    # 2 x 2 grid, row-major: 0-1, 2-3 horizontal; 0-2, 1-3 vertical.
    expected = torch.tensor([[2.0, -1, -1, 0], [-1, 2, 0, -1], [-1, 0, 2, -1], [0, -1, -1, 2]])
    torch.testing.assert_close(grid_laplacian(2, 2), expected)
    line = torch.tensor([[1.0, -1, 0], [-1, 2, -1], [0, -1, 1]])
    torch.testing.assert_close(grid_laplacian(1, 3), line)
    lap = grid_laplacian(3, 4)
    assert lap.diagonal().tolist() == [2, 3, 3, 2, 3, 4, 4, 3, 2, 3, 3, 2]
    torch.testing.assert_close(lap.sum(dim=1), torch.zeros(12))


def test_cosine_similarity_matrix():
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[[1.0, r, 0.0], [r, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(cosine_similarity_matrix(tokens), expected)


def test_newton_schulz_steps_by_hand():
    # Scalar: X0 = 0.2, X1 = 0.2 (2 - 0.4) = 0.32, X2 = 0.32 (2 - 0.64) = 0.4352.
    scalar = newton_schulz_inverse(torch.tensor([[[2.0]]]), alpha=0.1, iterations=2)
    torch.testing.assert_close(scalar, torch.tensor([[[0.4352]]]))
    # Non-symmetric: X0 = alpha L^T (the transpose matters), one step.
    lower = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    step = newton_schulz_inverse(lower, alpha=0.5, iterations=1)
    torch.testing.assert_close(step, torch.tensor([[[0.5, -0.25], [0.25, 0.5]]]))
    torch.testing.assert_close(
        newton_schulz_inverse(lower, alpha=0.5, iterations=0), 0.5 * lower.transpose(1, 2)
    )


def test_newton_schulz_converges_to_inverse():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 6, 6, generator=generator, dtype=torch.float64)
    matrix = 3 * torch.eye(6, dtype=torch.float64) + 0.5 * noise
    sigma = torch.linalg.svdvals(matrix)
    alpha = float(1 / sigma[:, 0].max() ** 2)
    # ||I - alpha L^T L||_2 = 1 - (sigma_min / sigma_max)^2 < 1: quadratic convergence.
    assert float((1 - alpha * sigma[:, -1] ** 2).max()) < 1
    expected = torch.linalg.inv(matrix)
    errors = [
        (newton_schulz_inverse(matrix, alpha=alpha, iterations=p) - expected).abs().max()
        for p in (2, 4, 12)
    ]
    assert errors[0] > errors[1] > errors[2]
    torch.testing.assert_close(
        newton_schulz_inverse(matrix, alpha=alpha, iterations=12), expected, rtol=0, atol=1e-10
    )
    with pytest.raises(ValueError, match=r"\(B, N, N\)"):
        newton_schulz_inverse(torch.zeros(2, 3, 4))


# 1 x 2 grid; semantic tokens v0 = [1, 0], v1 = [1, 1] (cos = 1/sqrt 2); F = [0.2, 0.6].
SEMANTIC = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).view(1, 2, 1, 2)
ATTENTION = torch.tensor([[[0.2, 0.6]]])


def _diffused(alpha, iterations):
    # lam = 1: L = (1 - 1/sqrt 2) P with P the swap, so X_p = x_p P, x <- x (2 - a x).
    a = 1 - 1 / math.sqrt(2)
    x = alpha * a
    for _ in range(iterations):
        x = x * (2 - a * x)
    return [x * 0.6, x * 0.2]


def test_block_paper_equations_by_hand():
    block = ActivationDiffusionBlock(
        grid_size=(1, 2), alpha=1.0, iterations=3, residual=False, normalize=False
    )
    semantic, attention = block(SEMANTIC, ATTENTION)
    filtered = [0.5 * (2 * d - math.tanh(2 * d)) for d in _diffused(1.0, 3)]
    torch.testing.assert_close(attention, torch.tensor([[filtered]]))
    expected = SEMANTIC * torch.tensor(filtered).view(1, 1, 1, 2)
    torch.testing.assert_close(semantic, expected)


def test_block_released_code_scaling_and_residual_by_hand():
    block = ActivationDiffusionBlock(grid_size=(1, 2), alpha=1.0, iterations=3)
    semantic, attention = block(SEMANTIC, ATTENTION)
    # The filtered map [high, low] min-max normalises to [1, 0].
    torch.testing.assert_close(attention, torch.tensor([[[1.2, 0.6]]]))
    expected = torch.tensor([[2.0, 1.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    torch.testing.assert_close(semantic, expected)


def test_scm_shapes_gradients_and_errors():
    torch.manual_seed(0)
    model = SCM(grid_size=(4, 5), num_blocks=3)
    semantic = torch.randn(2, 6, 4, 5, requires_grad=True)
    attention = torch.rand(2, 4, 5)
    out = model(semantic, attention)
    assert out.shape == (2, 6, 4, 5)
    out.mean(dim=(2, 3)).logsumexp(dim=1).sum().backward()
    for block in model.blocks:
        assert torch.isfinite(block.lam.grad) and block.lam.grad != 0
        assert torch.isfinite(block.beta.grad) and block.beta.grad != 0
    assert semantic.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="semantic_map"):
        model(torch.zeros(2, 6, 5, 4), attention)
    with pytest.raises(ValueError, match="attention_map"):
        model(torch.zeros(2, 6, 4, 5), torch.zeros(2, 20))


def test_literal_paper_equations_erase_the_semantic_map():
    # Why normalize/residual default to True: with DeiT-like attention (~1/N per token) the
    # verbatim Eq. 4-7 leave almost nothing of S after 4 blocks.
    torch.manual_seed(0)
    semantic = torch.randn(1, 5, 6, 6)
    attention = torch.rand(1, 6, 6) / 36
    literal = SCM(grid_size=(6, 6), residual=False, normalize=False)(semantic, attention)
    assert literal.abs().max() < 1e-6 * semantic.abs().max()
    default = SCM(grid_size=(6, 6))(semantic, attention)
    assert (default - semantic).abs().max() > 0.1 * semantic.abs().max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = SCM(grid_size=(4, 4))
    semantic, attention = torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4)
    expected = model(semantic, attention)
    out = model.cuda()(semantic.cuda(), attention.cuda()).cpu()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
