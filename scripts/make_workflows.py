"""Write the shipped workflows: a UI-format file (drag onto the canvas) and its API-format twin for each variant.

Both come from one graph description here, so they cannot drift apart; tests/test_workflow_twins.py checks the pair
against a real server's /object_info; tests/test_variants.py also checks that the files are what this
script writes now. Run: .venv/bin/python scripts/make_workflows.py (file names and official values come from
``hunyuan_core.variants``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the registry lives in the repository's core package
    sys.path.insert(0, str(ROOT))

from hunyuan_core.text.reprompt import MAX_NEW_TOKENS  # noqa: E402
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
    # input name -> (source node id, output slot, type), in the node's socket order (required inputs, then optional
    # ones, as /object_info lists them): the frontend numbers the slots that way, and the file's links must agree
    links: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)  # (name, type)
    column: int = 0  # the layout's column, left to right; nodes stack in list order within a column
    title: str | None = None  # the title shown instead of the node's display name (UI file only)


def graph(variant: str) -> list[Node]:
    dit, defaults = VARIANTS[variant]
    return [
        Node(1, "HunyuanImage21DiTLoader", [dit, "auto"], {"dit_name": dit, "weight_dtype": "auto"},
             outputs=[("model", "MODEL")], column=0),
        Node(2, "HunyuanImage21TextEncoderLoader", [QWEN, BYT5, "auto"],
             {"qwen": QWEN, "byt5": BYT5, "qwen_weight_dtype": "auto"},
             outputs=[("text_encoders", "HY21_TEXT_ENCODERS")], column=0),
        Node(3, "HunyuanImage21VAELoader", [VAE], {"vae_name": VAE}, outputs=[("vae", "HY21_VAE")], column=0),
        Node(4, "HunyuanImage21TextEncode", [PROMPT, "", ""],
             {"prompt": PROMPT, "negative_prompt": "", "glyph_text": ""},
             links={"text_encoders": (2, 0, "HY21_TEXT_ENCODERS")},
             outputs=[("positive", "CONDITIONING"), ("negative", "CONDITIONING")], column=1),
        Node(5, "HunyuanImage21EmptyLatent", ["2048x2048 (1:1)", 2048, 2048, 1],
             {"size": "2048x2048 (1:1)", "width": 2048, "height": 2048, "batch_size": 1},
             outputs=[("LATENT", "LATENT")], column=1),
        Node(6, "HunyuanImage21Sampler", [42, "fixed", -1, -1.0, -1.0, "auto", "official", 1.0, "official"],
             {"seed": 42, "steps": -1, "guidance_scale": -1.0, "shift": -1.0, "guidance_mode": "auto",
              "apg_start": "official", "denoise": 1.0, "noise_mode": "official"},
             links={"model": (1, 0, "MODEL"), "positive": (4, 0, "CONDITIONING"), "latent": (5, 0, "LATENT"),
                    "negative": (4, 1, "CONDITIONING")},
             outputs=[("LATENT", "LATENT")], column=2),
        Node(7, "HunyuanImage21VAEDecode", ["auto", 0, 0], {"precision": "auto", "batch_slice": 0, "tile_size": 0},
             links={"vae": (3, 0, "HY21_VAE"), "latent": (6, 0, "LATENT")}, outputs=[("IMAGE", "IMAGE")],
             column=3),
        Node(8, "SaveImage", [f"HunyuanImage21_{variant}"], {"filename_prefix": f"HunyuanImage21_{variant}"},
             links={"images": (7, 0, "IMAGE")}, column=4),
        Node(9, "Note", [NOTE.format(variant=variant, defaults=defaults, dit=dit)], {}, column=0),
    ]  # fmt: skip


def refiner_graph() -> list[Node]:
    """Base, then the refiner: stage 1 previewed, the refined image saved."""
    nodes = [n for n in graph("base") if n.type not in ("SaveImage", "Note")]
    return [
        *nodes,
        Node(8, "PreviewImage", [], {}, links={"images": (7, 0, "IMAGE")}, column=3),
        Node(10, "HunyuanImage21DiTLoader", [REFINER_DIT, "auto"], {"dit_name": REFINER_DIT, "weight_dtype": "auto"},
             outputs=[("model", "MODEL")], column=4),
        Node(11, "HunyuanImage21RefinerVAELoader", [REFINER_VAE], {"vae_name": REFINER_VAE},
             outputs=[("refiner_vae", "HY21_REFINER_VAE")], column=4),
        Node(12, "HunyuanImage21Refiner", [42, "fixed", -1, -1.0, -1.0, 0.25, "official", "auto"],
             {"seed": 42, "steps": -1, "guidance_scale": -1.0, "shift": -1.0, "condition_strength": 0.25,
              "noise_mode": "official", "vae_precision": "auto"},
             links={"model": (10, 0, "MODEL"), "refiner_vae": (11, 0, "HY21_REFINER_VAE"),
                    "text_encoders": (2, 0, "HY21_TEXT_ENCODERS"), "positive": (4, 0, "CONDITIONING"),
                    "image": (7, 0, "IMAGE")},
             outputs=[("IMAGE", "IMAGE")], column=5),
        Node(13, "SaveImage", ["HunyuanImage21_refined"], {"filename_prefix": "HunyuanImage21_refined"},
             links={"images": (12, 0, "IMAGE")}, column=6),
        Node(9, "Note", [REFINER_NOTE], {}, column=0),
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
             column=2),
        Node(7, "HunyuanImage21Scheduler", [-1, -1.0], {"steps": -1, "shift": -1.0},
             links={"model": (1, 0, "MODEL")}, outputs=[("SIGMAS", "SIGMAS")], column=2),
        Node(8, "HunyuanImage21Guider", [-1.0, "auto", "official"],
             {"guidance_scale": -1.0, "guidance_mode": "auto", "apg_start": "official"},
             links={"model": (1, 0, "MODEL"), "positive": (4, 0, "CONDITIONING"), "negative": (4, 1, "CONDITIONING")},
             outputs=[("GUIDER", "GUIDER")], column=2),
        Node(9, "RandomNoise", [42, "fixed"], {"noise_seed": 42}, outputs=[("NOISE", "NOISE")], column=2),
        Node(10, "SamplerCustomAdvanced", [], {},
             links={"noise": (9, 0, "NOISE"), "guider": (8, 0, "GUIDER"), "sampler": (6, 0, "SAMPLER"),
                    "sigmas": (7, 0, "SIGMAS"), "latent_image": (5, 0, "LATENT")},
             outputs=[("output", "LATENT"), ("denoised_output", "LATENT")], column=3),
        Node(11, "HunyuanImage21VAEDecode", ["auto", 0, 0], {"precision": "auto", "batch_slice": 0, "tile_size": 0},
             links={"vae": (3, 0, "HY21_VAE"), "latent": (10, 0, "LATENT")}, outputs=[("IMAGE", "IMAGE")],
             column=4),
        Node(12, "SaveImage", ["HunyuanImage21_custom_sampling"], {"filename_prefix": "HunyuanImage21_custom_sampling"},
             links={"images": (11, 0, "IMAGE")}, column=5),
        Node(13, "Note", [CUSTOM_NOTE], {}, column=0),
    ]  # fmt: skip


# The prompt enhancer is a Hugging Face folder, not one file: the loader names it as "<models folder>/<name>/".
ENHANCER_REPO = "PromptEnhancer/PromptEnhancer-7B"
ENHANCER = "LLM/PromptEnhancer-7B/"
ENHANCER_NOTE = f"""Optional: the official prompt enhancer ("reprompt") rewrites your prompt in detail before the
Text Encode node encodes it. Write the prompt in the Prompt Enhancer node; the two Preview as Text nodes show the
rewritten prompt and the model's reasoning after a Run.

Where the model goes: the whole Hugging Face folder {ENHANCER_REPO}
(https://huggingface.co/{ENHANCER_REPO}: config.json, the tokenizer files and the *.safetensors shards) as
- models/{ENHANCER}
The loader lists it as {ENHANCER}. It is a folder, not one file, so ComfyUI's missing-models dialog cannot fetch it:
download the folder yourself. PromptEnhancer-32B or Qwen2.5-VL-7B-Instruct folders work too, and so does a GGUF of
one in models/LLM, or the text encoder file itself when it carries the LM head (then listed as text_encoders/...).

Without the enhancer, use the plain distilled workflow (hunyuanimage21_distilled): it needs none of this.
Decoding is greedy: an unchanged prompt gives the same rewrite, and ComfyUI does not run the enhancer again."""


def enhanced_graph() -> list[Node]:
    """The distilled workflow with the prompt enhancer in front of its Text Encode (the encoder's prompt widget fed by
    the enhancer's STRING), and the rewrite and the reasoning shown in ComfyUI's own Preview as Text nodes."""
    distilled = {n.id: n for n in graph("distilled")}
    right = {i: replace(n, column=n.column + 1) for i, n in distilled.items() if n.column > 0}  # room for column 1
    encode = right[4]
    encode.links = {**encode.links, "prompt": (11, 0, "STRING")}  # a linked widget: its slot after the sockets
    prefix = "HunyuanImage21_distilled_enhanced"
    save = replace(right[8], widgets=[prefix], api={"filename_prefix": prefix})
    return [
        *(distilled[i] for i in (1, 2, 3)),
        Node(10, "HunyuanImage21PromptEnhancerLoader", [ENHANCER, "auto"], {"model": ENHANCER, "weight_dtype": "auto"},
             outputs=[("enhancer", "HY21_PROMPT_ENHANCER")], column=1),
        Node(11, "HunyuanImage21PromptEnhancer", [PROMPT, "", MAX_NEW_TOKENS],
             {"prompt": PROMPT, "extra_instruction": "", "max_new_tokens": MAX_NEW_TOKENS},
             links={"enhancer": (10, 0, "HY21_PROMPT_ENHANCER")},
             outputs=[("prompt", "STRING"), ("reasoning", "STRING")], column=1),
        encode, right[5],
        Node(12, "PreviewAny", [], {}, links={"source": (11, 0, "STRING")}, column=2, title="Enhanced prompt"),
        Node(13, "PreviewAny", [], {}, links={"source": (11, 1, "STRING")}, column=2, title="Enhancer reasoning"),
        right[6], right[7], save, distilled[9],
        Node(14, "Note", [ENHANCER_NOTE], {}, column=1),
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


# Each node's body size in the UI file (title bar excluded): at least what ComfyUI's frontend computes for the node
# (1.32.9 measured: the DiT loader 231x82, the text encode 239x216, the sampler 214x330, ...), so the frontend keeps
# it on load, and room for the prompt, the note and the image in the output nodes.
SIZES = {
    "HunyuanImage21DiTLoader": (420, 100), "HunyuanImage21TextEncoderLoader": (420, 130),
    "HunyuanImage21VAELoader": (420, 80), "HunyuanImage21RefinerVAELoader": (420, 80),
    "HunyuanImage21TextEncode": (420, 300), "HunyuanImage21EmptyLatent": (420, 150),
    "HunyuanImage21Sampler": (420, 350), "HunyuanImage21Refiner": (420, 380), "HunyuanImage21VAEDecode": (420, 150),
    "HunyuanImage21Scheduler": (420, 120), "HunyuanImage21Guider": (420, 160), "KSamplerSelect": (420, 80),
    "RandomNoise": (420, 110), "SamplerCustomAdvanced": (420, 160),
    "SaveImage": (520, 580), "PreviewImage": (520, 580), "Note": (420, 380),
    "HunyuanImage21PromptEnhancerLoader": (420, 100), "HunyuanImage21PromptEnhancer": (420, 300),
    "PreviewAny": (420, 200),
}  # fmt: skip
TITLE_HEIGHT = 30  # LiteGraph draws the title bar above a node's position
COLUMN_GAP = 60  # between the columns
ROW_GAP = 40  # between a node's bottom and the next node's title bar

# Where the files the loaders name come from: the Comfy-Org repack on Hugging Face, one URL per file, which the
# frontend's missing-models dialog offers when the file is not in the models folder.
MODEL_URL = "https://huggingface.co/Comfy-Org/HunyuanImage_2.1_ComfyUI/resolve/main/split_files/{folder}/{name}"
MODEL_WIDGETS = {  # loader type -> (widget index, models folder) of each file it names
    "HunyuanImage21DiTLoader": ((0, "diffusion_models"),),
    "HunyuanImage21TextEncoderLoader": ((0, "text_encoders"), (1, "text_encoders")),
    "HunyuanImage21VAELoader": ((0, "vae"),),
    "HunyuanImage21RefinerVAELoader": ((0, "vae"),),
}


def layout(nodes: list[Node]) -> dict[int, tuple[int, int]]:
    """Each node's position: columns left to right, each as wide as its widest node, nodes stacked in list order
    with their title bars clear of the node above, so no two nodes overlap on the canvas."""
    widths: dict[int, int] = {}
    for node in nodes:
        widths[node.column] = max(widths.get(node.column, 0), SIZES[node.type][0])
    x_of, x = {}, 0
    for column in sorted(widths):
        x_of[column] = x
        x += widths[column] + COLUMN_GAP
    positions, next_y = {}, {}
    for node in nodes:
        y = next_y.get(node.column, 0)
        positions[node.id] = (x_of[node.column], y)
        next_y[node.column] = y + SIZES[node.type][1] + ROW_GAP + TITLE_HEIGHT
    return positions


def model_files(node: Node) -> list[dict]:
    """The frontend's ``models`` entries for the files a loader names: name, folder, download URL."""
    return [
        {"name": node.widgets[index], "url": MODEL_URL.format(folder=folder, name=node.widgets[index]),
         "directory": folder}
        for index, folder in MODEL_WIDGETS.get(node.type, ())
    ]  # fmt: skip


def input_slot(node: Node, name: str, kind: str, link: int) -> dict:
    """A linked input as the frontend saves it; a widget fed by a link (an API widget input of the node) is marked
    with the widget it stands for, which keeps its value in ``widgets_values``."""
    if name in node.api:
        return {"name": name, "type": kind, "widget": {"name": name}, "link": link}
    return {"name": name, "type": kind, "link": link}


def to_ui(nodes: list[Node]) -> dict:
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    positions = layout(nodes)
    models_of = {node.id: model_files(node) for node in nodes}
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
        properties = {"Node name for S&R": node.type}
        if models_of[node.id]:
            properties["models"] = models_of[node.id]
        titled = {"title": node.title} if node.title else {}
        ui_nodes.append({
            "id": node.id, "type": node.type, **titled, "pos": list(positions[node.id]),
            "size": list(SIZES[node.type]), "flags": {}, "order": order, "mode": 0,
            "inputs": [input_slot(node, n, t, link_ids[n]) for n, (_, _, t) in node.links.items()],
            "outputs": [{"name": n, "type": t, "links": out_links.get((node.id, i), [])}
                        for i, (n, t) in enumerate(node.outputs)],
            "properties": properties, "widgets_values": node.widgets,
        })  # fmt: skip
    models = {entry["url"]: entry for entries in models_of.values() for entry in entries}
    return {
        "last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
        "groups": [], "config": {}, "extra": {}, "models": list(models.values()), "version": 0.4,
    }  # fmt: skip


# The template browser's card for each workflow: ``workflows/<name>.jpg`` next to the JSON (ComfyUI serves both),
# drawn here from the same graph: the workflow's title and settings over a map of its nodes and links.
THUMBNAIL_SIZE = 512
CAPTIONS = {
    "hunyuanimage21_distilled": ("distilled", STAGE1_DEFAULTS[DISTILLED.name]),
    "hunyuanimage21_base": ("base", STAGE1_DEFAULTS[BASE.name]),
    "hunyuanimage21_base_refiner": ("base + refiner", f"two stages, refiner {REFINER.steps} steps"),
    "hunyuanimage21_custom_sampling": ("custom sampling", "SamplerCustomAdvanced, official guider and sigmas"),
    "hunyuanimage21_distilled_enhanced": (
        "distilled + prompt enhancer",
        f"PromptEnhancer-7B rewrites the prompt, then {DISTILLED.steps} steps",
    ),
}
LINK_COLOURS = {"MODEL": (180, 160, 255), "CONDITIONING": (255, 200, 120), "LATENT": (255, 150, 200),
                "IMAGE": (120, 220, 160), "STRING": (140, 200, 255)}  # fmt: skip


def thumbnail(name: str, nodes: list[Node]) -> bytes:
    """The workflow's card as JPEG bytes: title and settings, then every node as a box and every link as a line,
    scaled to fit (the default font, so the picture is the same on every machine)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    size = THUMBNAIL_SIZE
    image = Image.new("RGB", (size, size), (24, 26, 32))
    draw = ImageDraw.Draw(image)
    title, settings = CAPTIONS[name]
    draw.text((24, 22), "HunyuanImage 2.1", fill=(240, 240, 245), font=ImageFont.load_default(40))
    draw.text((24, 74), title, fill=(120, 180, 255), font=ImageFont.load_default(30))
    draw.text((24, 114), settings, fill=(190, 190, 200), font=ImageFont.load_default(16))
    positions = layout(nodes)
    boxes = {n.id: (positions[n.id][0], positions[n.id][1] - TITLE_HEIGHT, *SIZES[n.type]) for n in nodes}
    left, top = min(b[0] for b in boxes.values()), min(b[1] for b in boxes.values())
    right = max(b[0] + b[2] for b in boxes.values())
    bottom = max(b[1] + b[3] + TITLE_HEIGHT for b in boxes.values())
    area = (24, 160, size - 24, size - 24)
    scale = min((area[2] - area[0]) / (right - left), (area[3] - area[1]) / (bottom - top))

    margin_x = (area[2] - area[0] - (right - left) * scale) / 2  # centred in the area
    margin_y = (area[3] - area[1] - (bottom - top) * scale) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return area[0] + margin_x + (x - left) * scale, area[1] + margin_y + (y - top) * scale

    for node in nodes:
        x, y, w, h = boxes[node.id]
        fill = (
            (70, 60, 30)
            if node.type == "Note"
            else (44, 52, 70)
            if node.type.startswith("HunyuanImage21")
            else (50, 50, 54)
        )
        draw.rounded_rectangle((*at(x, y), *at(x + w, y + h + TITLE_HEIGHT)), radius=3, fill=fill,
                               outline=(90, 100, 120))  # fmt: skip
        draw.rectangle((*at(x, y), *at(x + w, y + TITLE_HEIGHT)), fill=(30, 34, 44))
    for node in nodes:
        for _, (src, _, kind) in node.links.items():
            sx, sy, sw, _ = boxes[src]
            tx, ty, _, _ = boxes[node.id]
            start, end = at(sx + sw, sy + 2 * TITLE_HEIGHT), at(tx, ty + 2 * TITLE_HEIGHT)
            draw.line((start, end), fill=LINK_COLOURS.get(kind, (200, 200, 200)), width=2)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def graphs() -> dict[str, list[Node]]:
    """Every shipped workflow's graph, by file name."""
    found = {f"hunyuanimage21_{variant}": graph(variant) for variant in VARIANTS}
    found["hunyuanimage21_base_refiner"] = refiner_graph()
    found["hunyuanimage21_custom_sampling"] = custom_sampling_graph()
    found["hunyuanimage21_distilled_enhanced"] = enhanced_graph()
    return found


def render() -> dict[Path, str]:
    """Every shipped workflow file (UI and API twin) and the text it must hold."""
    files = {}
    for name, nodes in graphs().items():
        files[ROOT / "workflows" / f"{name}.json"] = json.dumps(to_ui(nodes), indent=1, ensure_ascii=False) + "\n"
        files[ROOT / "workflows" / "api" / f"{name}_api.json"] = (
            json.dumps(to_api(nodes), indent=1, ensure_ascii=False) + "\n"
        )
    return files


def render_thumbnails() -> dict[Path, bytes]:
    """Every workflow's template-browser thumbnail and the JPEG bytes it must hold."""
    return {ROOT / "workflows" / f"{name}.jpg": thumbnail(name, nodes) for name, nodes in graphs().items()}


def main() -> None:
    for path, text in render().items():
        path.write_text(text)
    for path, data in render_thumbnails().items():
        path.write_bytes(data)


if __name__ == "__main__":
    main()
