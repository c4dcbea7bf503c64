"""The refiner stage as one core call (``hunyuan_core.pipelines.refine_image``), on the tiny model set in the real
file formats: it must be exactly the official procedure composed by hand, step by step."""

from __future__ import annotations

import pytest
import torch
from text_files import QWEN_TOKENIZER

from hunyuan_core.dit.checkpoint import load_dit
from hunyuan_core.pipelines import RefinerSettings, refine_image
from hunyuan_core.refiner_vae import load_refiner_vae
from hunyuan_core.refiner_vae.images import decode_image, encode_image
from hunyuan_core.sampling import Conditioning, build_schedule, make_noise
from hunyuan_core.sampling.guidance import EmbeddedGuidance
from hunyuan_core.sampling.refiner import refine
from hunyuan_core.text.encoder import encode_prompt
from hunyuan_core.text.qwen import load_qwen_encoder
from hunyuan_core.variants import BASE, QWEN_FILE, REFINER
from hy21_host.tiny_models import write_tiny_models

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

PROMPT = 'a lighthouse at dusk, a sign saying "OPEN"'
SEED = 77


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_models(root)
    dit = load_dit(root / "diffusion_models" / REFINER.dit_file.name, dtype=torch.float32)
    vae = load_refiner_vae(root / "vae" / REFINER.vae_file.name, dtype=torch.float32)
    qwen = load_qwen_encoder(root / "text_encoders" / QWEN_FILE.name, tokenizer_dirs=[QWEN_TOKENIZER])
    return dit, vae, qwen, root


def image(seed: int) -> torch.Tensor:
    return torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(seed))


def by_hand(dit, vae, qwen, pixels, settings: RefinerSettings) -> torch.Tensor:
    """The official order: refiner-template prompt, posterior sample (seed + 1), start noise (seed), augmentation
    noise (seed + 2, fp32), 4 steps at shift 4 with embedded guidance and no MeanFlow, decode."""
    positive = Conditioning.of(encode_prompt(qwen, None, PROMPT, template=REFINER.template))
    posterior = torch.Generator("cpu").manual_seed(SEED + 1)
    latent = encode_image(vae, pixels, precision="fp32", sample=True, generator=posterior)
    packed = (1, 64, *latent.shape[2:])
    refined = refine(
        dit, latent, positive, noise=make_noise(packed, SEED, settings.noise_mode),
        condition_noise=make_noise(packed, SEED + 2, "comfy"), strength=settings.condition_strength,
        schedule=build_schedule(settings.steps or 4, settings.shift or 4.0),
        guidance=EmbeddedGuidance(settings.guidance_scale or 3.5, meanflow=False),
    )  # fmt: skip
    return decode_image(vae, refined, precision="fp32")


@pytest.mark.parametrize(
    "settings",
    [
        RefinerSettings(vae_precision="fp32"),
        RefinerSettings(
            steps=3, shift=2.5, guidance_scale=3.25, condition_strength=0.4, noise_mode="comfy", vae_precision="fp32"
        ),
    ],
    ids=["official", "custom"],
)
def test_refine_image_is_the_procedure_composed_by_hand(models, settings):
    dit, vae, qwen, _ = models
    pixels = image(3)
    prepared = []
    got = refine_image(dit, vae, qwen, pixels, PROMPT, SEED, settings, prepare=prepared.append)
    assert got.shape == pixels.shape and got.dtype == torch.float32
    assert prepared == [qwen, vae, dit, vae]  # each model made ready right before its use, in order
    assert torch.equal(got, by_hand(dit, vae, qwen, pixels, settings))


def test_refine_image_reports_each_step_and_refuses_a_stage1_model(models):
    dit, vae, qwen, root = models
    steps = []
    refine_image(dit, vae, qwen, image(4), PROMPT, SEED, RefinerSettings(steps=2, vae_precision="fp32"),
                 callback=lambda i, total, x, x0: steps.append((i, total)))  # fmt: skip
    assert steps == [(0, 2), (1, 2)]
    base = load_dit(root / "diffusion_models" / BASE.dit_file.name, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"base model .* not the refiner"):
        refine_image(base, vae, qwen, image(4), PROMPT, SEED)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        RefinerSettings(condition_strength=1.5)
