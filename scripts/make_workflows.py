"""Write the shipped workflows: a UI-format file (drag onto the canvas) and its API-format twin for each variant.

Both come from one graph description here, so they cannot drift apart; tests/test_workflow_twins.py checks the pair
against a real server's /object_info; tests/test_variants.py also checks that the files are what this
script writes now. Run: .venv/bin/python scripts/make_workflows.py (file names and official values come from
``hunyuan_core.variants``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the registry lives in the repository's core package
    sys.path.insert(0, str(ROOT))

from hunyuan_core.variants import (  # noqa: E402 (after the path set-up above)
    BASE,
    DISTILLED,
    GLYPH_FILE,
    QWEN_FILE,
    QWEN_FP8_FILE,
    REFINER,
    REFINER_CONDITION_STRENGTH,
    REFINER_VAE_FILE,
    STAGE1_VAE_FILE,
)
from hunyuan_core.variants import VARIANTS as VARIANT_REGISTRY  # noqa: E402

PROMPT = (
    "A cute, cartoon-style anthropomorphic penguin plush toy with fluffy fur, standing in a painting studio, "
    "wearing a red knitted scarf and a red beret with the word “Tencent” on it, holding a paintbrush with a "
    "focused expression as it paints an oil painting of the Mona Lisa, rendered in a photorealistic photographic "
    "style."
)
STAGE1_DEFAULTS = {
    BASE.name: f"{BASE.steps} steps, CFG {BASE.guidance_scale:g} then APG, shift {BASE.shift:g}",
    DISTILLED.name: (
        f"{DISTILLED.steps} steps, embedded guidance {DISTILLED.guidance_scale:g}, shift {DISTILLED.shift:g}"
    ),
}
NOTE = f"""HunyuanImage-2.1 ({{variant}}) with the official settings: leave steps, guidance and shift at -1 for the
model's own values ({{defaults}}).

Where the files go (Comfy-Org's repacks; Tencent's originals and fp8 files work too):
- models/diffusion_models/{{dit}}
- models/text_encoders/{QWEN_FILE.name} (or {QWEN_FP8_FILE.name})
- models/text_encoders/{GLYPH_FILE.name}
- models/vae/{STAGE1_VAE_FILE.name}

Put text to render in double quotes, ‘…’ or “…”. The model is trained at 2K: use a 2K size."""

REFINER_NOTE = f"""HunyuanImage-2.1 base, then the refiner (the official two-stage pipeline), with the official \
settings:
leave steps, guidance and shift at -1 (base {STAGE1_DEFAULTS[BASE.name]}; refiner {REFINER.steps} steps, guidance \
{REFINER.guidance_scale:g}
as an embedding, shift {REFINER.shift:g}, condition strength {REFINER_CONDITION_STRENGTH:g}). The refiner re-encodes \
the same prompt with its own template.

Where the files go (Comfy-Org's repacks; Tencent's originals and fp8 files work too):
- models/diffusion_models/{BASE.dit_file.name} and {REFINER.dit_file.name}
- models/text_encoders/{QWEN_FILE.name} and {GLYPH_FILE.name}
- models/vae/{STAGE1_VAE_FILE.name} and {REFINER_VAE_FILE.name}

The refiner works at the stage-1 size (2K): it runs 4x as many image tokens as stage 1."""

QWEN = QWEN_FILE.name
BYT5 = GLYPH_FILE.name
VAE = STAGE1_VAE_FILE.name
REFINER_DIT = REFINER.dit_file.name
REFINER_VAE = REFINER_VAE_FILE.name
VARIANTS = {name: (VARIANT_REGISTRY[name].dit_file.name, defaults) for name, defaults in STAGE1_DEFAULTS.items()}


@dataclass
class Node:
    id: int
    type: str
    widgets: list  # UI widgets_values (seed widgets carry their control value after them)
    api: dict  # API-format widget inputs
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot, type)
    outputs: list = field(default_factory=list)  # (name, type)
    pos: tuple = (0, 0)


def graph(variant: str) -> list[Node]:
    dit, defaults = VARIANTS[variant]
    return [
        Node(1, "HunyuanImage21DiTLoader", [dit, "auto"], {"dit_name": dit, "weight_dtype": "auto"},
             outputs=[("model", "MODEL")], pos=(0, 0)),
        Node(2, "HunyuanImage21TextEncoderLoader", [QWEN, BYT5, "auto"],
             {"qwen": QWEN, "byt5": BYT5, "qwen_weight_dtype": "auto"},
             outputs=[("text_encoders", "HY21_TEXT_ENCODERS")], pos=(0, 150)),
        Node(3, "HunyuanImage21VAELoader", [VAE], {"vae_name": VAE}, outputs=[("vae", "HY21_VAE")], pos=(0, 300)),
        Node(4, "HunyuanImage21TextEncode", [PROMPT, "", ""],
             {"prompt": PROMPT, "negative_prompt": "", "glyph_text": ""},
             links={"text_encoders": (2, 0, "HY21_TEXT_ENCODERS")},
             outputs=[("positive", "CONDITIONING"), ("negative", "CONDITIONING")], pos=(420, 150)),
        Node(5, "HunyuanImage21EmptyLatent", ["2048x2048 (1:1)", 2048, 2048, 1],
             {"size": "2048x2048 (1:1)", "width": 2048, "height": 2048, "batch_size": 1},
             outputs=[("LATENT", "LATENT")], pos=(420, 450)),
        Node(6, "HunyuanImage21Sampler", [42, "fixed", -1, -1.0, -1.0, "auto", "official", 1.0, "official"],
             {"seed": 42, "steps": -1, "guidance_scale": -1.0, "shift": -1.0, "guidance_mode": "auto",
              "apg_start": "official", "denoise": 1.0, "noise_mode": "official"},
             links={"model": (1, 0, "MODEL"), "positive": (4, 0, "CONDITIONING"), "negative": (4, 1, "CONDITIONING"),
                    "latent": (5, 0, "LATENT")},
             outputs=[("LATENT", "LATENT")], pos=(880, 150)),
        Node(7, "HunyuanImage21VAEDecode", ["auto", 0, 0], {"precision": "auto", "batch_slice": 0, "tile_size": 0},
             links={"vae": (3, 0, "HY21_VAE"), "latent": (6, 0, "LATENT")}, outputs=[("IMAGE", "IMAGE")],
             pos=(1300, 150)),
        Node(8, "SaveImage", [f"HunyuanImage21_{variant}"], {"filename_prefix": f"HunyuanImage21_{variant}"},
             links={"images": (7, 0, "IMAGE")}, pos=(1600, 150)),
        Node(9, "Note", [NOTE.format(variant=variant, defaults=defaults, dit=dit)], {}, pos=(0, 480)),
    ]  # fmt: skip


def refiner_graph() -> list[Node]:
    """Base, then the refiner: stage 1 previewed, the refined image saved."""
    nodes = [n for n in graph("base") if n.type not in ("SaveImage", "Note")]
    return [
        *nodes,
        Node(8, "PreviewImage", [], {}, links={"images": (7, 0, "IMAGE")}, pos=(1300, 420)),
        Node(10, "HunyuanImage21DiTLoader", [REFINER_DIT, "auto"], {"dit_name": REFINER_DIT, "weight_dtype": "auto"},
             outputs=[("model", "MODEL")], pos=(1300, -250)),
        Node(11, "HunyuanImage21RefinerVAELoader", [REFINER_VAE], {"vae_name": REFINER_VAE},
             outputs=[("refiner_vae", "HY21_REFINER_VAE")], pos=(1300, -100)),
        Node(12, "HunyuanImage21Refiner", [42, "fixed", -1, -1.0, -1.0, 0.25, "official", "auto"],
             {"seed": 42, "steps": -1, "guidance_scale": -1.0, "shift": -1.0, "condition_strength": 0.25,
              "noise_mode": "official", "vae_precision": "auto"},
             links={"model": (10, 0, "MODEL"), "refiner_vae": (11, 0, "HY21_REFINER_VAE"),
                    "text_encoders": (2, 0, "HY21_TEXT_ENCODERS"), "positive": (4, 0, "CONDITIONING"),
                    "image": (7, 0, "IMAGE")},
             outputs=[("IMAGE", "IMAGE")], pos=(1750, 0)),
        Node(13, "SaveImage", ["HunyuanImage21_refined"], {"filename_prefix": "HunyuanImage21_refined"},
             links={"images": (12, 0, "IMAGE")}, pos=(2200, 0)),
        Node(9, "Note", [REFINER_NOTE], {}, pos=(0, 480)),
    ]  # fmt: skip


CUSTOM_NOTE = f"""HunyuanImage-2.1 through ComfyUI's own sampling nodes: the pack's Scheduler (official sigmas)
and Guider (official guidance) with KSamplerSelect (euler), RandomNoise and SamplerCustomAdvanced. Leave steps,
guidance and shift at -1 for the model's official values; swap in the base DiT ({BASE.dit_file.name}) and the
guider runs CFG then APG ({STAGE1_DEFAULTS[BASE.name]}).

The one-node HunyuanImage 2.1 Sampler gives the same result with the official pipeline's noise; RandomNoise here
is ComfyUI's own draw. Any ComfyUI sampler, noise or sigma node can be swapped in."""


def custom_sampling_graph() -> list[Node]:
    """The distilled model through SamplerCustomAdvanced with the pack's scheduler and guider."""
    loaders = [n for n in graph("distilled") if n.id in (1, 2, 3, 4, 5)]
    return [
        *loaders,
        Node(6, "KSamplerSelect", ["euler"], {"sampler_name": "euler"}, outputs=[("SAMPLER", "SAMPLER")],
             pos=(880, -150)),
        Node(7, "HunyuanImage21Scheduler", [-1, -1.0], {"steps": -1, "shift": -1.0},
             links={"model": (1, 0, "MODEL")}, outputs=[("SIGMAS", "SIGMAS")], pos=(880, 0)),
        Node(8, "HunyuanImage21Guider", [-1.0, "auto", "official"],
             {"guidance_scale": -1.0, "guidance_mode": "auto", "apg_start": "official"},
             links={"model": (1, 0, "MODEL"), "positive": (4, 0, "CONDITIONING"), "negative": (4, 1, "CONDITIONING")},
             outputs=[("GUIDER", "GUIDER")], pos=(880, 150)),
        Node(9, "RandomNoise", [42, "fixed"], {"noise_seed": 42}, outputs=[("NOISE", "NOISE")], pos=(880, 400)),
        Node(10, "SamplerCustomAdvanced", [], {},
             links={"noise": (9, 0, "NOISE"), "guider": (8, 0, "GUIDER"), "sampler": (6, 0, "SAMPLER"),
                    "sigmas": (7, 0, "SIGMAS"), "latent_image": (5, 0, "LATENT")},
             outputs=[("output", "LATENT"), ("denoised_output", "LATENT")], pos=(1300, 150)),
        Node(11, "HunyuanImage21VAEDecode", ["auto", 0, 0], {"precision": "auto", "batch_slice": 0, "tile_size": 0},
             links={"vae": (3, 0, "HY21_VAE"), "latent": (10, 0, "LATENT")}, outputs=[("IMAGE", "IMAGE")],
             pos=(1700, 150)),
        Node(12, "SaveImage", ["HunyuanImage21_custom_sampling"], {"filename_prefix": "HunyuanImage21_custom_sampling"},
             links={"images": (11, 0, "IMAGE")}, pos=(2000, 150)),
        Node(13, "Note", [CUSTOM_NOTE], {}, pos=(0, 480)),
    ]  # fmt: skip


def to_api(nodes: list[Node]) -> dict:
    api = {}
    for node in nodes:
        if node.type == "Note":  # frontend-only
            continue
        inputs = dict(node.api)
        inputs.update({name: [str(src), slot] for name, (src, slot, _) in node.links.items()})
        api[str(node.id)] = {"class_type": node.type, "inputs": inputs}
    return api


def to_ui(nodes: list[Node]) -> dict:
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    for node in nodes:
        for slot_name, (src, slot, kind) in node.links.items():
            link_id = len(links) + 1
            target_slot = list(node.links).index(slot_name)
            links.append([link_id, src, slot, node.id, target_slot, kind])
            out_links.setdefault((src, slot), []).append(link_id)
    for order, node in enumerate(nodes):
        link_ids = {
            name: next(link[0] for link in links if link[3] == node.id and link[4] == i)
            for i, name in enumerate(node.links)
        }
        ui_nodes.append({
            "id": node.id, "type": node.type, "pos": list(node.pos), "size": [400, 200 if node.type != "Note" else 300],
            "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": link_ids[n]} for n, (_, _, t) in node.links.items()],
            "outputs": [{"name": n, "type": t, "links": out_links.get((node.id, i), [])}
                        for i, (n, t) in enumerate(node.outputs)],
            "properties": {"Node name for S&R": node.type}, "widgets_values": node.widgets,
        })  # fmt: skip
    return {
        "last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }  # fmt: skip


def render() -> dict[Path, str]:
    """Every shipped workflow file (UI and API twin) and the text it must hold."""
    graphs = {f"hunyuanimage21_{variant}": graph(variant) for variant in VARIANTS}
    graphs["hunyuanimage21_base_refiner"] = refiner_graph()
    graphs["hunyuanimage21_custom_sampling"] = custom_sampling_graph()
    files = {}
    for name, nodes in graphs.items():
        files[ROOT / "workflows" / f"{name}.json"] = json.dumps(to_ui(nodes), indent=1, ensure_ascii=False) + "\n"
        files[ROOT / "workflows" / "api" / f"{name}_api.json"] = (
            json.dumps(to_api(nodes), indent=1, ensure_ascii=False) + "\n"
        )
    return files


def main() -> None:
    for path, text in render().items():
        path.write_text(text)


if __name__ == "__main__":
    main()
