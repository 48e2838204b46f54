"""Concrete DropBlock: the block mask from seeds, the masked features in training, identity at
test."""
import torch

from wsod_d2.modeling.wsod.concrete_dropblock import ConcreteDropBlock, block_mask


def make(drop_rate=0.3, block_size=3):
    return ConcreteDropBlock(
        16, drop_rate=drop_rate, block_size=block_size, temperature=0.01, hard=True
    )


def test_block_mask_shape_and_count():
    seeds = torch.zeros(2, 7, 7)
    seeds[0, 1, 1] = seeds[0, 5, 5] = 1.0  # two interior seeds: 2 x 9 cells dropped
    seeds[1, 0, 0] = 1.0  # a corner seed: its block is cut to 2 x 2
    keep = block_mask(seeds, 3)
    assert keep.shape == (2, 7, 7)
    assert int((keep == 0).sum(dim=(1, 2))[0]) == 18 and int((keep == 0).sum(dim=(1, 2))[1]) == 4
    assert keep[0, :3, :3].eq(0).all() and keep[0, 4:, 4:].eq(0).all() and keep[0, 3, 3] == 1
    even = torch.zeros(1, 7, 7)
    even[0, 3, 3] = 1.0
    dropped = (block_mask(even, 2) == 0).nonzero().tolist()
    assert dropped == [[0, 3, 3], [0, 3, 4], [0, 4, 3], [0, 4, 4]]


def test_training_masks_whole_blocks_and_rescales():
    torch.manual_seed(0)
    cdb = make(drop_rate=1.0).train()
    x = torch.rand(50, 16, 7, 7) + 0.5
    out = cdb(x)
    assert out.shape == x.shape
    ratio = out / x  # one value per cell, shared by the channels
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))
    keep = ratio[:, 0]
    dropped = keep == 0
    assert dropped.any() and not dropped.all()
    # Kept cells are rescaled by (cells / kept cells), over the whole batch of RoIs.
    scale = keep.numel() / (~dropped).sum()
    assert torch.allclose(keep[~dropped], scale.expand(int((~dropped).sum())), rtol=1e-5)
    # Every dropped cell lies in a 3 x 3 block of dropped cells.
    # (an opening: erode the dropped set by a 3 x 3 block, dilate it back, get the same set.)
    kept_grown = torch.nn.functional.max_pool2d((~dropped).float()[:, None], 3, 1, 1)[:, 0]
    assert (block_mask(1.0 - kept_grown, 3) == 0).eq(dropped).all()


def test_identity_at_test_and_gradient_only_through_the_mask():
    cdb = make()
    x = torch.rand(4, 16, 7, 7)
    assert cdb.eval()(x) is x
    assert make(drop_rate=0.0).train()(x) is x
    cdb.train()
    x.requires_grad_()
    cdb(x).sum().backward()
    # The generator reads detached features: it gets a gradient, through the mask only.
    assert all(p.grad is not None for p in cdb.generator.parameters())
