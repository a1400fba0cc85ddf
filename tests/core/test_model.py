import functools

import pytest
import torch

from stargan_core.model import Discriminator, Generator, PatchMatmulConv2d, count_parameters


def test_paper_celeba_128_parameter_counts():
    # Choi et al. 2018, CelebA at 128 px with 5 domains: G 8.43M, D 44.76M parameters.
    g = Generator(c_dim=5, conv_dim=64, repeat_num=6)
    d = Discriminator(image_size=128, cls_dim=5, conv_dim=64, repeat_num=6)
    assert round(count_parameters(g) / 1e6, 2) == 8.43
    assert round(count_parameters(d) / 1e6, 2) == 44.76


def test_shapes_follow_image_size_and_domains():
    g = Generator(c_dim=7, conv_dim=8, repeat_num=2)
    d = Discriminator(image_size=64, cls_dim=5, conv_dim=8, repeat_num=4)
    x = torch.randn(3, 3, 64, 64)
    y = g(x, torch.rand(3, 7))
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1  # tanh output
    src, cls = d(x)
    assert src.shape == (3, 1, 4, 4)  # PatchGAN: one score per patch
    assert cls.shape == (3, 5)


def test_label_changes_the_output():
    torch.manual_seed(0)
    g = Generator(c_dim=3, conv_dim=8, repeat_num=1)
    x = torch.randn(2, 3, 32, 32)
    a = g(x, torch.tensor([[1.0, 0, 0]] * 2))
    b = g(x, torch.tensor([[0.0, 1, 0]] * 2))
    assert not torch.allclose(a, b)


def test_instance_norm_gives_the_same_output_in_eval_and_train():
    torch.manual_seed(0)
    g = Generator(c_dim=5, conv_dim=8, repeat_num=2)
    x, c = torch.randn(4, 3, 32, 32), torch.rand(4, 5)
    g.train()
    for _ in range(3):  # would update running statistics, were there any
        g(x * 3 + 1, c)
    out_train = g(x, c)
    g.eval()
    torch.testing.assert_close(g(x, c), out_train)
    assert not any(isinstance(b, torch.Tensor) and "running" in n for n, b in g.named_buffers())


def test_image_size_must_fit_discriminator_depth():
    with pytest.raises(ValueError, match="divisible by 2"):
        Discriminator(image_size=100, cls_dim=5, conv_dim=8, repeat_num=6)


def test_ds_last_layers_as_matrix_products_compute_the_convolution():
    """Forward, backward and the gradient penalty's double backward of the 2x2 and 1x1
    output layers match the convolution kernels'."""
    torch.manual_seed(0)
    d = Discriminator(image_size=32, cls_dim=5, conv_dim=8, repeat_num=5)
    patched = [m for m in d.modules() if isinstance(m, PatchMatmulConv2d)]
    assert [m.in_channels for m in patched] == [32, 64]  # outputs 2x2 and 1x1
    x = torch.randn(3, 3, 32, 32, requires_grad=True)

    def penalty_and_grads(d):
        src, cls = d(x)
        (grad,) = torch.autograd.grad(src.sum(), x, create_graph=True)
        loss = grad.square().sum() + cls.square().sum()
        return [src, cls, grad, *torch.autograd.grad(loss, list(d.parameters()))]

    as_matmul = penalty_and_grads(d)
    for m in patched:
        m.forward = functools.partial(torch.nn.Conv2d.forward, m)
    for a, b in zip(as_matmul, penalty_and_grads(d), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_projection_critic_judges_realism_for_the_labels():
    """D(x, c) = the plain score + <embed(2c - 1), features>: without labels the paper's
    critic, with them a score that depends on the labels (a woman is judged as a woman)."""
    torch.manual_seed(0)
    plain = Discriminator(image_size=32, cls_dim=5, conv_dim=8, repeat_num=5)
    d = Discriminator(image_size=32, cls_dim=5, conv_dim=8, repeat_num=5, projection=True)
    d.load_state_dict(plain.state_dict(), strict=False)  # the same weights but the embedding
    assert set(d.state_dict()) - set(plain.state_dict()) == {"embed.weight"}
    x = torch.randn(4, 3, 32, 32)
    woman, man = torch.tensor([[1.0, -1, -1, -1, 1]] * 4), torch.tensor([[1.0, -1, -1, 1, 1]] * 4)
    torch.testing.assert_close(d(x)[0], plain(x)[0])
    src_woman, cls_woman = d(x, woman)
    src_man, cls_man = d(x, man)
    assert not torch.allclose(src_woman, src_man)
    torch.testing.assert_close(cls_woman, cls_man)  # the labels change the score only
    src_woman.sum().backward()
    assert d.embed.weight.grad.abs().sum() > 0


def test_resize_upsampling_replaces_the_transposed_convolutions():
    """`upsampling="resize"`: nearest-neighbour doubling, then a 3x3 convolution (Odena et al.
    2016), which cannot paint the checkerboards a stride-2 transposed convolution starts with."""
    torch.manual_seed(0)
    g = Generator(c_dim=5, conv_dim=8, repeat_num=1, output="masked", upsampling="resize")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out, mask = g(x, torch.rand(2, 5), with_mask=True)
    assert out.shape == x.shape and mask.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="upsampling 'bilinear'.*transposed, resize"):
        Generator(c_dim=5, upsampling="bilinear")

