"""The lazy-layer contract of current ComfyUI, on any host: layers that hold no tensor until loading gives one.

With dynamic VRAM (current ComfyUI on NVIDIA GPUs), ``comfy.ops`` ``Linear`` and ``Embedding`` are built with
``weight = None`` / ``bias = None`` and receive their tensors only in ``_load_from_state_dict``. A loader that sets
parameters by name over ``model.state_dict()`` never sees them (a ``None`` weight is not in the state dict) and
hands back a model whose first forward fails. Every loader of the pack, given such an operations namespace, must
give a model that runs and equals the eager one bit for bit, and the completeness check must catch a layer that
was left without its tensor.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from dit_files import TINY_DISTILLED, to_layout, to_official_fp8
from dit_files import random_state as dit_state
from helpers import save
from refiner_vae_files import TINY as REFINER_TINY
from refiner_vae_files import comfy_org as refiner_comfy_org
from refiner_vae_files import random_state as refiner_state
from text_files import (
    BYT5_TOKENIZER,
    QWEN_TOKENIZER,
    qwen_single_file_state,
    save_glyph_comfy,
    tiny_glyph_t5,
    tiny_qwen_vl,
)
from torch import nn
from vae_files import TINY as VAE_TINY
from vae_files import comfy_org as vae_comfy_org
from vae_files import random_state as vae_state

from hunyuan_core.checkpoints.errors import CheckpointError
from hunyuan_core.dit import keys as K
from hunyuan_core.dit.checkpoint import load_dit
from hunyuan_core.refiner_vae import load_refiner_vae
from hunyuan_core.text.byt5 import load_glyph_encoder
from hunyuan_core.text.qwen import load_qwen_encoder
from hunyuan_core.vae import load_vae

pytestmark = pytest.mark.unit


class LazyTensors:
    """``weight`` and ``bias`` are ``None`` until ``_load_from_state_dict`` finds them, as in current comfy.ops."""

    takes_tensors = True
    reports_missing = True

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for leaf in self.lazy_leaves:
            key = prefix + leaf
            if key in state_dict and self.takes_tensors:
                setattr(self, leaf, nn.Parameter(state_dict[key], requires_grad=False))
            elif self.reports_missing:
                missing.append(key)


def lazy(layer: type[nn.Module], base: type[LazyTensors] = LazyTensors) -> type[nn.Module]:
    """``layer`` built as usual (on the meta device, so nothing is allocated), then emptied: the tensors it had
    are ``None`` until loading gives them."""

    class Lazy(base, layer):
        def __init__(self, *args, **kwargs) -> None:
            layer.__init__(self, *args, **{**kwargs, "device": "meta"})
            self.lazy_leaves = [leaf for leaf in ("weight", "bias") if getattr(self, leaf, None) is not None]
            for leaf in self.lazy_leaves:
                self.register_parameter(leaf, None)

    Lazy.__name__ = Lazy.__qualname__ = f"Lazy{layer.__name__}"
    return Lazy


class DroppingTensors(LazyTensors):
    """A lazy layer that never takes its tensors and says so (reports them missing): the loader must refuse."""

    takes_tensors = False


class SilentlyDroppingTensors(DroppingTensors):
    """Never takes its tensors and reports nothing: only the completeness check after loading can see it."""

    reports_missing = False


LAYERS = ("Linear", "Embedding", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm")
LAZY = SimpleNamespace(**{name: lazy(getattr(nn, name)) for name in LAYERS})


def dropping(base: type[LazyTensors]) -> SimpleNamespace:
    """The lazy namespace, except that its ``Linear`` never receives a tensor."""
    return SimpleNamespace(**{**vars(LAZY), "Linear": lazy(nn.Linear, base)})


DROPPING = pytest.mark.parametrize("ops", [dropping(DroppingTensors), dropping(SilentlyDroppingTensors)],
                                   ids=["reported", "silent"])  # fmt: skip


def lazy_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, LazyTensors)]


def assert_no_empty_layer(model: nn.Module) -> None:
    for name, module in model.named_modules():
        for leaf in getattr(module, "lazy_leaves", ()):
            tensor = getattr(module, leaf)
            assert isinstance(tensor, torch.Tensor) and not tensor.is_meta, f"{name}.{leaf}"
        if isinstance(module, (nn.Linear, nn.Embedding)):
            assert isinstance(module.weight, torch.Tensor) and not module.weight.is_meta, name


def assert_same_state(lazy: nn.Module, eager: nn.Module) -> None:
    got, want = lazy.state_dict(), eager.state_dict()
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


# --- the DiT -----------------------------------------------------------------------------------------------------


def dit_inputs(cfg) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "x": torch.randn(1, cfg.in_channels, 2, 3, generator=g),
        "t": torch.tensor([700.0]),
        "text": torch.randn(1, 5, cfg.text_dim, generator=g),
        "text_mask": torch.tensor([[1, 1, 1, 1, 0]]),
        "byt5": torch.randn(1, 4, cfg.byt5_dim, generator=g),
        "byt5_mask": torch.tensor([[1, 1, 0, 0]]),
        "guidance": torch.tensor([3250.0]),
        "timestep_r": torch.tensor([500.0]),
    }


def run_dit(model: nn.Module, cfg) -> torch.Tensor:
    with torch.no_grad():
        return model(**dit_inputs(cfg))


@pytest.fixture(scope="module")
def dit_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit")
    state = dit_state(TINY_DISTILLED)
    bf16 = save({k: v.to(torch.bfloat16) for k, v in state.items()}, root / "distilled_bf16.safetensors")
    ckpt, _, _ = to_official_fp8(to_layout(state, K.OFFICIAL_SPLIT, TINY_DISTILLED.hidden_size), True)
    fp8 = save(ckpt, root / "distilled_fp8.safetensors")
    return {"bf16": bf16, "fp8": fp8}


@pytest.mark.parametrize(
    ("file", "options"),
    [("bf16", {}), ("bf16", {"dtype": torch.float32}), ("fp8", {}), ("bf16", {"quantize_fp8": True})],
    ids=["bf16", "bf16-as-fp32", "official-fp8", "quantized-at-load"],
)
def test_dit_loads_into_lazy_layers(dit_files, file, options):
    eager = load_dit(dit_files[file], **options)
    lazy = load_dit(dit_files[file], operations=LAZY, **options)
    assert {type(m) for m in lazy_layers(lazy)} >= {LAZY.Linear, LAZY.LayerNorm}
    assert_no_empty_layer(lazy)
    assert_same_state(lazy, eager)
    assert torch.equal(run_dit(lazy, TINY_DISTILLED), run_dit(eager, TINY_DISTILLED))


def test_dit_lazy_linears_all_received_their_tensors(dit_files):
    lazy = load_dit(dit_files["bf16"], operations=LAZY)
    linears = [m for m in lazy.modules() if isinstance(m, nn.Linear)]
    assert len(linears) > 30 and all(type(m) is LAZY.Linear for m in linears)
    assert all(m.weight.dtype == torch.bfloat16 and not m.weight.requires_grad for m in linears)


@DROPPING
def test_dit_layer_left_without_its_tensor_is_named(dit_files, ops):
    with pytest.raises(CheckpointError, match=r"distilled_bf16\.safetensors: .*(left unfilled|did not take).*weight"):
        load_dit(dit_files["bf16"], operations=ops)


# --- the two VAEs ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory):
    return save(vae_comfy_org(vae_state(VAE_TINY)), tmp_path_factory.mktemp("vae") / "vae.safetensors")


@pytest.fixture(scope="module")
def refiner_vae_file(tmp_path_factory):
    state = refiner_comfy_org(refiner_state(REFINER_TINY))
    return save(state, tmp_path_factory.mktemp("refiner_vae") / "refiner_vae.safetensors")


def test_stage1_vae_loads_with_lazy_operations(vae_file):
    eager = load_vae(vae_file, dtype=torch.float32)
    lazy = load_vae(vae_file, dtype=torch.float32, operations=LAZY)
    assert {type(m) for m in lazy_layers(lazy)} == {LAZY.Conv2d, LAZY.GroupNorm}
    assert_no_empty_layer(lazy)
    assert_same_state(lazy, eager)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(lazy.decode(lazy.encode(image).mode()), eager.decode(eager.encode(image).mode()))


def test_refiner_vae_loads_with_lazy_operations(refiner_vae_file):
    eager = load_refiner_vae(refiner_vae_file, dtype=torch.float32)
    lazy = load_refiner_vae(refiner_vae_file, dtype=torch.float32, operations=LAZY)
    assert LAZY.Conv3d in {type(m) for m in lazy_layers(lazy)}
    assert_no_empty_layer(lazy)
    assert_same_state(lazy, eager)
    image = torch.rand(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(lazy.decode(lazy.encode(image).mode()), eager.decode(eager.encode(image).mode()))


# --- the two text encoders ----------------------------------------------------------------------------------------


PROMPT = 'A cat holding a sign that says "hello"'


@pytest.fixture(scope="module")
def qwen_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen") / "qwen_2.5_vl_7b.safetensors"
    return save(qwen_single_file_state(tiny_qwen_vl(hidden=128, heads=1, kv_heads=1, layers=4)), path)


def test_qwen_loads_into_lazy_layers(qwen_file):
    eager = load_qwen_encoder(qwen_file, tokenizer_dirs=[QWEN_TOKENIZER])
    lazy = load_qwen_encoder(qwen_file, tokenizer_dirs=[QWEN_TOKENIZER], operations=LAZY)
    assert {type(m) for m in lazy_layers(lazy)} == {LAZY.Linear, LAZY.Embedding}
    assert_no_empty_layer(lazy)
    assert_same_state(lazy, eager)
    assert torch.equal(lazy.encode(PROMPT).states, eager.encode(PROMPT).states)


@DROPPING
def test_qwen_layer_left_without_its_tensor_is_named(qwen_file, ops):
    with pytest.raises(CheckpointError, match=r"qwen_2\.5_vl_7b\.safetensors: .*(left unfilled|did not take).*weight"):
        load_qwen_encoder(qwen_file, tokenizer_dirs=[QWEN_TOKENIZER], operations=ops)


def test_glyph_encoder_loads_into_lazy_layers(tmp_path):
    path = save_glyph_comfy(tiny_glyph_t5(width=64), tmp_path / "byt5.safetensors")
    eager = load_glyph_encoder(path, tokenizer_dirs=[BYT5_TOKENIZER], expected_width=None)
    lazy = load_glyph_encoder(path, tokenizer_dirs=[BYT5_TOKENIZER], expected_width=None, operations=LAZY)
    assert {type(m) for m in lazy_layers(lazy)} == {LAZY.Linear, LAZY.Embedding}
    assert lazy.model.encoder.embed_tokens is lazy.model.shared  # still one embedding, as in the file
    assert_no_empty_layer(lazy)
    assert_same_state(lazy, eager)
    assert torch.equal(lazy.encode(PROMPT).states, eager.encode(PROMPT).states)
