"""SCM: spatial calibration module for transformer WSOL (Bai et al., ECCV 2022).

TS-CAM gives a semantic map S (B, C, H, W) (patch tokens through a 3x3 conv head, C classes) and
an attention map F (B, H, W) (cls-token attention to the patches, averaged over heads and layers).
In training only, SCM refines both with L activation diffusion blocks (ADB) and the loss is taken
on GAP of the last S; at inference SCM is dropped and CAM_c = F * S_c. One block (Sec. 3.2):

- E (B, N, N): cosine similarity of the N = H*W tokens of S (each token a C-vector, Eq. 3).
- Lap = D - A (N, N): graph Laplacian of the 4-connected H x W grid (row-major token order).
- L = Lap * (lam * E - 1), element-wise, lam learnable (init 1) (Eq. 4).
- X ~ L^-1 by Newton-Schulz: X0 = alpha * L^T, X <- X (2I - L X), p iterations (Eq. 6).
- F' = X vec(F) (Eq. 5), filtered by T(F', beta) = beta * tanhshrink(F' / beta), beta learnable
  (init 0.5) (Eq. 7); S <- S * T (broadcast over classes), F <- T.

Choices:

- ``residual=True`` (default) adds the residual connections that the paper's Fig. 2 draws but
  leaves out of the equations ("omitted for simplicity"): S <- S + S * T and F <- F + T, their
  form taken from the released code.
- ``normalize=True`` (default) follows the released code's scale handling, which the paper does
  not describe: F0 is min-max normalised per sample, the filter knee is ``beta * max(F)`` instead
  of ``beta``, and the filtered map is min-max normalised per sample to [0, 1]. Without it the
  literal Eq. 7 output is tiny (alpha = 0.002 keeps X small and tanhshrink is cubic near 0), so
  the product S * T all but erases S after a few blocks. ``normalize=False, residual=False`` is
  the paper's equations verbatim.
- Because E and Lap are symmetric, L and every Newton-Schulz iterate are symmetric, so the
  released code's extra transpose of X changes nothing and is not done. Gradients flow through
  X0 as well (the released code builds X0 under ``no_grad``).
- The released code runs 16 Newton-Schulz iterations in its first block and 4 in the others; the
  paper says p = 4 everywhere, which is the default here.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "grid_laplacian",
    "cosine_similarity_matrix",
    "newton_schulz_inverse",
    "ActivationDiffusionBlock",
    "SCM",
]


def grid_laplacian(
    height: int,
    width: int,
    *,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """
    Laplacian D - A of the 4-connected height x width grid, nodes in row-major order.

    Returns:
        lap: (N, N), N = height * width.
    """
    if height < 1 or width < 1:
        raise ValueError(f"grid size must be positive, got ({height}, {width})")
    num = height * width
    index = torch.arange(num, device=device).view(height, width)
    adjacency = torch.zeros(num, num, device=device, dtype=dtype)
    right = (index[:, :-1].reshape(-1), index[:, 1:].reshape(-1))
    down = (index[:-1, :].reshape(-1), index[1:, :].reshape(-1))
    for src, dst in (right, down):
        adjacency[src, dst] = 1
        adjacency[dst, src] = 1
    return torch.diag(adjacency.sum(dim=1)) - adjacency


def cosine_similarity_matrix(tokens: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """
    Args:
        tokens: (B, N, Q).
        eps: lower bound of a token norm (a zero token has similarity 0 to everything).

    Returns:
        sim: (B, N, N), ``sim[b, i, j] = cos(tokens[b, i], tokens[b, j])``.
    """
    unit = tokens / tokens.norm(dim=2, keepdim=True).clamp(min=eps)
    return unit @ unit.transpose(1, 2)


def newton_schulz_inverse(
    matrix: torch.Tensor, *, alpha: float = 0.002, iterations: int = 4
) -> torch.Tensor:
    """
    Newton-Schulz approximation of a batch of inverses: X0 = alpha * L^T, X <- X (2I - L X).

    The iteration converges to L^-1 when ``||I - alpha * L^T L||_2 < 1``, i.e.
    ``0 < alpha < 2 / sigma_max(L)^2``; SCM uses few iterations on purpose and does not need
    convergence.

    Args:
        matrix: L, (B, N, N).
        alpha: scale of the initial guess.
        iterations: p.

    Returns:
        X: (B, N, N).
    """
    if matrix.dim() != 3 or matrix.shape[1] != matrix.shape[2]:
        raise ValueError(f"matrix must have shape (B, N, N), got {tuple(matrix.shape)}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    two_eye = 2 * torch.eye(matrix.shape[1], device=matrix.device, dtype=matrix.dtype)
    inverse = alpha * matrix.transpose(1, 2)
    for _ in range(iterations):
        inverse = inverse @ (two_eye - matrix @ inverse)
    return inverse


def _minmax(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, N) -> (B, N) scaled to [0, 1] per row; a constant row becomes 0."""
    low = maps.amin(dim=1, keepdim=True)
    high = maps.amax(dim=1, keepdim=True)
    return (maps - low) / (high - low).clamp(min=eps)


def _check_maps(
    semantic_map: torch.Tensor, attention_map: torch.Tensor, grid_size: Tuple[int, int]
) -> None:
    if semantic_map.dim() != 4 or tuple(semantic_map.shape[2:]) != grid_size:
        raise ValueError(
            f"semantic_map must have shape (B, C, {grid_size[0]}, {grid_size[1]}), "
            f"got {tuple(semantic_map.shape)}"
        )
    expected = (semantic_map.shape[0],) + grid_size
    if tuple(attention_map.shape) != expected:
        raise ValueError(
            f"attention_map must have shape (B, H, W) = {expected}, "
            f"got {tuple(attention_map.shape)}"
        )


class ActivationDiffusionBlock(nn.Module):
    """
    One ADB: diffuses the attention map over the semantic-weighted grid graph, filters it, and
    reweights the semantic map with it.
    """

    def __init__(
        self,
        *,
        grid_size: Tuple[int, int],
        lam_init: float = 1.0,
        beta_init: float = 0.5,
        alpha: float = 0.002,
        iterations: int = 4,
        residual: bool = True,
        normalize: bool = True,
        eps: float = 1e-8,
    ):
        """
        Args:
            grid_size: (H, W) of the token grid (14 x 14 for DeiT-S at 224).
            lam_init: initial lambda (Eq. 4), learnable.
            beta_init: initial beta (Eq. 7), learnable.
            alpha: Newton-Schulz initial scale (Eq. 6).
            iterations: Newton-Schulz iterations p.
            residual: add the Fig. 2 residual connections (see module docstring).
            normalize: released-code scale handling (see module docstring).
            eps: guard of the cosine similarity and of the min-max normalisation.
        """
        super().__init__()
        height, width = grid_size
        self.grid_size = (int(height), int(width))
        self.alpha = alpha
        self.iterations = iterations
        self.residual = residual
        self.normalize = normalize
        self.eps = eps
        self.lam = nn.Parameter(torch.tensor(float(lam_init)))
        self.beta = nn.Parameter(torch.tensor(float(beta_init)))
        self.register_buffer("laplacian", grid_laplacian(*self.grid_size), persistent=False)

    def forward(
        self, semantic_map: torch.Tensor, attention_map: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            semantic_map: S, (B, C, H, W).
            attention_map: F, (B, H, W).

        Returns:
            semantic_map: (B, C, H, W), the next S.
            attention_map: (B, H, W), the next F.
        """
        _check_maps(semantic_map, attention_map, self.grid_size)
        batch, _, height, width = semantic_map.shape
        tokens = semantic_map.flatten(2).transpose(1, 2)
        similarity = cosine_similarity_matrix(tokens, eps=self.eps)
        laplacian = self.laplacian.to(device=semantic_map.device, dtype=semantic_map.dtype)
        semantic_laplacian = laplacian * (self.lam * similarity - 1)
        inverse = newton_schulz_inverse(
            semantic_laplacian, alpha=self.alpha, iterations=self.iterations
        )
        attention = attention_map.reshape(batch, -1)
        diffused = (inverse @ attention.unsqueeze(2)).squeeze(2)
        if self.normalize:
            knee = self.beta * attention.amax(dim=1, keepdim=True).clamp(min=self.eps)
            filtered = _minmax(F.tanhshrink(diffused / knee), self.eps)
        else:
            filtered = self.beta * F.tanhshrink(diffused / self.beta)
        weighted = semantic_map * filtered.view(batch, 1, height, width)
        filtered = filtered.view(batch, height, width)
        if self.residual:
            return semantic_map + weighted, attention_map + filtered
        return weighted, filtered


class SCM(nn.Module):
    """
    ``num_blocks`` stacked ADBs; returns the refined semantic map whose GAP feeds the loss.
    Training only: the model uses S0 and F0 directly at inference.
    """

    def __init__(
        self,
        *,
        grid_size: Tuple[int, int],
        num_blocks: int = 4,
        lam_init: float = 1.0,
        beta_init: float = 0.5,
        alpha: float = 0.002,
        iterations: int = 4,
        residual: bool = True,
        normalize: bool = True,
        eps: float = 1e-8,
    ):
        """
        Args:
            grid_size: (H, W) of the token grid.
            num_blocks: L.
            others: as in :class:`ActivationDiffusionBlock`, shared by all blocks.
        """
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.normalize = normalize
        self.eps = eps
        self.blocks = nn.ModuleList(
            ActivationDiffusionBlock(
                grid_size=self.grid_size,
                lam_init=lam_init,
                beta_init=beta_init,
                alpha=alpha,
                iterations=iterations,
                residual=residual,
                normalize=normalize,
                eps=eps,
            )
            for _ in range(num_blocks)
        )

    def forward(self, semantic_map: torch.Tensor, attention_map: torch.Tensor) -> torch.Tensor:
        """
        Args:
            semantic_map: S0, (B, C, H, W).
            attention_map: F0, (B, H, W).

        Returns:
            semantic_map: S^L, (B, C, H, W); classification logits are its spatial mean.
        """
        _check_maps(semantic_map, attention_map, self.grid_size)
        if self.normalize:
            batch = attention_map.shape[0]
            attention_map = _minmax(attention_map.reshape(batch, -1), self.eps).view_as(
                attention_map
            )
        for block in self.blocks:
            semantic_map, attention_map = block(semantic_map, attention_map)
        return semantic_map
