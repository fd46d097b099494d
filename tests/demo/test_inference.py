"""Tests for captum_rig.demo._inference: the demo's models, cheaper and the same function."""

import pytest
import torch
from torch import nn

from captum_rig.demo._inference import inference_model
from captum_rig.models import DEMO_MODELS, load_demo_model


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_inference_model_is_the_same_function(name):
    """Logits and input gradients match the model as loaded, to float error."""
    model = load_demo_model(name)
    fast = inference_model(model)
    x = torch.rand(8, 3, 32, 32)
    torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    grads = []
    for net in (model, fast):
        xg = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(net(xg)[:, 2].sum(), xg)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)
    assert (
        grads[1].shape == x.shape
        and grads[1].is_contiguous()
        or grads[1].is_contiguous(memory_format=torch.channels_last)
    ), "a gradient per pixel, in some dense layout"


def test_inference_model_folds_batchnorm_and_leaves_the_original_alone():
    """No BatchNorm left, no parameter asks for gradients; the loaded model is unchanged."""
    model = load_demo_model("natural")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules()), "BatchNorm folded"
    assert not any(p.requires_grad for p in fast.parameters()), "inference only"
    assert not fast.training, "eval mode"
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "original untouched"
    assert all(p.requires_grad for p in model.parameters()), "original untouched"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
