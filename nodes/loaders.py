"""Loader nodes: the DiT, the two text encoders and the VAE, each detected from the file's own keys."""

from __future__ import annotations

import logging

import folder_paths
import torch
from comfy_api.latest import io

from ..hunyuan_core.dit.checkpoint import load_dit
from ..hunyuan_core.refiner_vae import load_refiner_vae
from ..hunyuan_core.text.byt5 import load_glyph_encoder
from ..hunyuan_core.text.qwen import load_qwen_encoder
from ..hunyuan_core.vae import load_vae
from ..hunyuan_core.variants import DISTILLED, GLYPH_FILE, QWEN_FILE, REFINER_VAE_FILE, STAGE1_VAE_FILE
from . import host, management, widgets
from .model import wrap_dit
from .types import VAE, RefinerVAE, TextEncoderBundle, TextEncoders

WEIGHT_DTYPES = {
    "auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8_e4m3fn": "fp8", "fp8_e4m3fn_fast": "fp8_fast",
}  # fmt: skip
WEIGHT_DTYPE_CHOICES = tuple(WEIGHT_DTYPES)  # the weight_dtype menu and its check
QWEN_WEIGHT_DTYPE_CHOICES = ("auto", "fp8_e4m3fn")
NO_GLYPH = "none"
log = logging.getLogger(__name__)


class HunyuanImage21DiTLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21DiTLoader",
            display_name="HunyuanImage 2.1 DiT Loader",
            category="HunyuanImage/loaders",
            description=(
                "Loads a HunyuanImage-2.1 diffusion model (base, distilled or refiner) from models/diffusion_models. "
                "Any published format works: Tencent's bf16 or fp8 (+ its _scale file), Comfy-Org's repacks, "
                "diffusers weights, and GGUF quantizations (QuantStack's Q8_0 ... Q2_K, which stay quantized in "
                "memory). The variant is detected from the file and drives the sampler's defaults."
            ),
            inputs=[
                io.Combo.Input(
                    "dit_name",
                    options=management.model_files("diffusion_models"),
                    tooltip=(
                        f"The DiT file in models/diffusion_models, e.g. {DISTILLED.dit_file.name}, or a .gguf "
                        "quantization (smaller files for smaller GPUs; see the README's memory table)."
                    ),
                ),
                widgets.combo_input(
                    "weight_dtype",
                    WEIGHT_DTYPE_CHOICES,
                    default="auto",
                    tooltip=(
                        "auto keeps the file's precision (fp8 and GGUF files stay as they are) and computes in fp16 on "
                        "GPUs without bf16 (GTX 10xx, RTX 20xx, T4). fp16: that fp16 path anywhere. fp8_e4m3fn "
                        "stores a bf16 file's block weights in fp8 like the official fp8 release: half the memory, "
                        "slight quality cost. fp8_e4m3fn_fast also runs those layers as fp8 matmuls on GPUs that have "
                        "them (RTX 40xx, H100 and newer): faster, activations rounded to fp8 too, not official math."
                    ),
                ),
            ],
            outputs=[
                io.Model.Output(
                    display_name="model",
                    tooltip="ComfyUI's MODEL around the pack's DiT: its variant sets the sampler's official defaults, "
                    "and model patches (LoRA, shift, caching) apply to it.",
                )
            ],
            search_aliases=host.aliases("load diffusion model", "unet loader", "dit loader", "hunyuan dit"),
        )

    @classmethod
    def validate_inputs(cls, dit_name: str | None = None) -> bool | str:
        return widgets.verdict(management.file_problem("dit_name", "diffusion_models", dit_name))

    @classmethod
    def execute(cls, dit_name: str, weight_dtype: str) -> io.NodeOutput:
        widgets.require(widgets.choice_problem("weight_dtype", weight_dtype, WEIGHT_DTYPE_CHOICES))
        path = management.resolve("diffusion_models", dit_name)
        choice = WEIGHT_DTYPES[weight_dtype]
        fallback = management.no_bf16_dtype()  # GPUs without bf16 compute in fp16 (residual stream in fp32)
        if fallback is not None and choice != torch.bfloat16:
            log.info("HunyuanImage-2.1: this GPU has no native bf16; the DiT computes in fp16")
        with widgets.for_input("dit_name"):
            model = load_dit(
                path,
                dtype=choice if isinstance(choice, torch.dtype) else fallback,
                operations=management.operations(),
                quantize_fp8=choice in ("fp8", "fp8_fast"),
                fp8_matmul=choice == "fp8_fast",
            )
        return io.NodeOutput(wrap_dit(model))  # load_dit logged what the file is


class HunyuanImage21TextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = management.model_files("text_encoders")
        return host.build(
            io.Schema,
            node_id="HunyuanImage21TextEncoderLoader",
            display_name="HunyuanImage 2.1 Text Encoder Loader",
            category="HunyuanImage/loaders",
            description=(
                "Loads the two text encoders of HunyuanImage-2.1 from models/text_encoders: Qwen2.5-VL-7B (a single "
                f"file such as {QWEN_FILE.name}, its fp8_scaled variant, a llama.cpp GGUF such as "
                "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf, or a Qwen2.5-VL-7B-Instruct folder) and the Glyph-SDXL-v2 ByT5 "
                "encoder that renders quoted text."
            ),
            inputs=[
                io.Combo.Input(
                    "qwen",
                    options=management.model_folders("text_encoders") + files,
                    tooltip=(
                        "Qwen2.5-VL-7B file (safetensors, or a llama.cpp GGUF: its quantized weights stay quantized) "
                        "or folder; only its language model is loaded (no vision tower, no mmproj)."
                    ),
                ),
                io.Combo.Input(
                    "byt5",
                    options=[NO_GLYPH, *files],
                    default=GLYPH_FILE.name if GLYPH_FILE.name in files else NO_GLYPH,
                    tooltip=(
                        f"The ByT5 glyph encoder ({GLYPH_FILE.name} or byt5_model.pt). Needed for text in quotes "
                        "to be rendered well; 'none' skips it (quoted text then loses its glyph cue)."
                    ),
                ),
                widgets.combo_input(
                    "qwen_weight_dtype",
                    QWEN_WEIGHT_DTYPE_CHOICES,
                    default="auto",
                    optional=True,
                    tooltip=(
                        "auto keeps the Qwen file's precision (fp8-scaled and GGUF files stay as they are). "
                        "fp8_e4m3fn stores a bf16 file's decoder weights in fp8 as they load: about half of its "
                        "15 GB, a small change in the prompt encoding."
                    ),
                ),
            ],
            outputs=[
                TextEncoders.Output(display_name="text_encoders", tooltip="Both encoders, for the text-encode node.")
            ],
            search_aliases=host.aliases("load clip", "text encoder loader", "qwen2.5-vl", "byt5", "glyph"),
        )

    @classmethod
    def validate_inputs(cls, qwen: str | None = None) -> bool | str:
        return widgets.verdict(management.file_problem("qwen", "text_encoders", qwen))

    @classmethod
    def execute(cls, qwen: str, byt5: str, qwen_weight_dtype: str = "auto") -> io.NodeOutput:
        widgets.require(
            management.file_problem("byt5", "text_encoders", byt5, extra=(NO_GLYPH,)),
            widgets.choice_problem("qwen_weight_dtype", qwen_weight_dtype, QWEN_WEIGHT_DTYPE_CHOICES),
        )
        with widgets.for_input("qwen"):
            qwen_model = load_qwen_encoder(
                management.resolve("text_encoders", qwen),
                tokenizer_dirs=[management.host_tokenizer_dir("qwen25_tokenizer")],
                operations=management.operations(),
                quantize_fp8=qwen_weight_dtype == "fp8_e4m3fn",
            )
        glyph = None
        if byt5 != NO_GLYPH:
            with widgets.for_input("byt5"):
                glyph = load_glyph_encoder(
                    management.resolve("text_encoders", byt5),
                    tokenizer_dirs=[management.host_tokenizer_dir("byt5_tokenizer")],
                    operations=management.operations(),
                )
        bundle = TextEncoderBundle(
            qwen=management.patch(qwen_model, "text"),
            glyph=None if glyph is None else management.patch(glyph, "text"),
        )
        return io.NodeOutput(bundle)


def vae_loader_schema(
    node_id: str, display_name: str, description: str, file_tooltip: str, output: io.Output, aliases: list[str]
) -> io.Schema:
    """The schema both VAE loaders share: one file from models/vae, one output."""
    return host.build(
        io.Schema,
        node_id=node_id,
        display_name=display_name,
        category="HunyuanImage/loaders",
        description=description,
        inputs=[io.Combo.Input("vae_name", options=folder_paths.get_filename_list("vae"), tooltip=file_tooltip)],
        outputs=[output],
        search_aliases=aliases,
    )


class HunyuanImage21VAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return vae_loader_schema(
            "HunyuanImage21VAELoader",
            "HunyuanImage 2.1 VAE Loader",
            f"Loads HunyuanImage-2.1's 32x VAE from models/vae: Comfy-Org's {STAGE1_VAE_FILE.name}, Tencent's "
            f"{STAGE1_VAE_FILE.official}, or diffusers weights.",
            "The stage-1 VAE file (64 latent channels, 32x compression).",
            VAE.Output(display_name="vae", tooltip="The VAE, for the pack's decode and encode nodes."),
            host.aliases("load vae", "vae loader"),
        )

    @classmethod
    def validate_inputs(cls, vae_name: str | None = None) -> bool | str:
        return management.file_problem("vae_name", "vae", vae_name) or True

    @classmethod
    def execute(cls, vae_name: str) -> io.NodeOutput:
        # fp32 weights as the official pipeline keeps them; the decode node picks fp16 autocast on GPUs.
        with widgets.for_input("vae_name"):
            vae = load_vae(management.resolve("vae", vae_name), dtype=torch.float32, operations=management.operations())
        return io.NodeOutput(management.patch(vae, "vae"))


class HunyuanImage21RefinerVAELoader(io.ComfyNode):
    # Not a subclass of the stage-1 loader: ComfyUI caches schema facts on the class, a subclass would inherit them.
    @classmethod
    def define_schema(cls) -> io.Schema:
        return vae_loader_schema(
            "HunyuanImage21RefinerVAELoader",
            "HunyuanImage 2.1 Refiner VAE Loader",
            f"Loads the refiner's 16x causal-3D VAE from models/vae: Comfy-Org's {REFINER_VAE_FILE.name}, Tencent's "
            f"{REFINER_VAE_FILE.official}, or diffusers weights (AutoencoderKLHunyuanImageRefiner).",
            "The refiner VAE file (32 latent channels, 16x compression), not the stage-1 VAE.",
            RefinerVAE.Output(display_name="refiner_vae", tooltip="For the HunyuanImage 2.1 Refiner node."),
            host.aliases("load vae", "refiner vae", "vae loader"),
        )

    @classmethod
    def validate_inputs(cls, vae_name: str | None = None) -> bool | str:
        return management.file_problem("vae_name", "vae", vae_name) or True

    @classmethod
    def execute(cls, vae_name: str) -> io.NodeOutput:
        # fp32 weights; the refiner node runs them under fp16 autocast on GPUs, as the official decode does.
        path = management.resolve("vae", vae_name)
        with widgets.for_input("vae_name"):
            vae = load_refiner_vae(path, dtype=torch.float32, operations=management.operations())
        return io.NodeOutput(management.patch(vae, "vae"))
