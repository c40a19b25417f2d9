"""Projector builder: key names and shapes per type; pretrained adapter loading and its errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from llava.model.multimodal_projector.builder import IdentityMap, build_vision_projector


def _config(projector_type: str) -> SimpleNamespace:
    return SimpleNamespace(mm_projector_type=projector_type, mm_hidden_size=16, hidden_size=32)


@pytest.mark.parametrize(
    ("projector_type", "shapes"),
    [
        ("linear", {"weight": (32, 16), "bias": (32,)}),
        ("mlp2x_gelu", {"0.weight": (32, 16), "0.bias": (32,), "2.weight": (32, 32), "2.bias": (32,)}),
        (
            "mlp3x_gelu",
            {
                "0.weight": (32, 16),
                "0.bias": (32,),
                "2.weight": (32, 32),
                "2.bias": (32,),
                "4.weight": (32, 32),
                "4.bias": (32,),
            },
        ),
        ("identity", {}),
    ],
)
def test_keys_and_shapes(projector_type, shapes):
    projector = build_vision_projector(_config(projector_type))
    assert {k: tuple(v.shape) for k, v in projector.state_dict().items()} == shapes


def test_default_type_is_linear_and_mlp_uses_gelu():
    assert isinstance(
        build_vision_projector(SimpleNamespace(mm_hidden_size=4, hidden_size=8)), torch.nn.Linear
    )
    assert isinstance(build_vision_projector(_config("mlp2x_gelu"))[1], torch.nn.GELU)


def test_identity_map():
    projector = build_vision_projector(_config("identity"))
    assert isinstance(projector, IdentityMap)
    assert projector.config == {"mm_projector_type": "identity"}
    x = torch.randn(2, 3)
    assert projector(x) is x


@pytest.mark.parametrize("bad", ["mlp2x_relu", "qformer", "mlpx_gelu"])
def test_unknown_type_names_it(bad):
    with pytest.raises(ValueError, match=bad):
        build_vision_projector(_config(bad))


def test_pretrain_adapter_is_loaded(make_llava, tmp_path):
    source = make_llava(mm_projector_type="mlp2x_gelu")
    projector = source.get_model().mm_projector.state_dict()
    state = {f"model.mm_projector.{k}": v + 1.0 for k, v in projector.items()}  # differ from a fresh init
    torch.save(state, tmp_path / "mm_projector.bin")

    model = make_llava(
        mm_projector_type="mlp2x_gelu", pretrain_mm_mlp_adapter=str(tmp_path / "mm_projector.bin")
    )
    loaded = model.get_model().mm_projector.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key.removeprefix("model.mm_projector.")], value)


def test_mismatched_adapter_names_file_and_type(make_llava, tmp_path):
    # Upstream issue #577: a `linear` adapter (weight/bias) given to an mlp2x_gelu projector (0.*/2.*).
    path = tmp_path / "linear_projector.bin"
    torch.save(
        {"model.mm_projector.weight": torch.zeros(32, 16), "model.mm_projector.bias": torch.zeros(32)}, path
    )
    with pytest.raises(ValueError) as err:
        make_llava(mm_projector_type="mlp2x_gelu", pretrain_mm_mlp_adapter=str(path))
    message = str(err.value)
    assert str(path) in message and "'mlp2x_gelu'" in message
    assert "0.weight(32, 16)" in message and "weight(32, 16)" in message


def test_adapter_with_wrong_shapes_is_reported(make_llava, tmp_path):
    path = tmp_path / "mm_projector.bin"
    torch.save(
        {"model.mm_projector.weight": torch.zeros(32, 8), "model.mm_projector.bias": torch.zeros(32)}, path
    )
    with pytest.raises(ValueError, match=r"shape mismatch: \['weight'\]"):
        make_llava(mm_projector_type="linear", pretrain_mm_mlp_adapter=str(path))
