"""Generate an image with HunyuanImage-2.1 through a real, headless ComfyUI with this pack installed.

Starts the server on a free loopback port (base directory .host/demo unless --base-dir is given), queues the
shipped distilled workflow's API twin through POST /prompt, waits on the websocket, prints the saved files, and
stops the server. With --serve it keeps serving ComfyUI's web UI with live sampling previews on, and prints the
address that opens the distilled workflow on the canvas, ready to Run. Model files the workflow names but the
models folder lacks are written as a tiny random model set in the real formats under the real names (the image is
then noise, but every loader, encoder, the sampler and the decoder run for real); point --models-dir at a folder
holding the real weights to get a real image.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # hunyuan_core, for the tiny model set

from hy21_host import ComfyClient, ComfyHost, PromptRejectedError, repo_root
from hy21_host.browser import seed_ui_settings, template_url

DEFAULT_WORKFLOW = "workflows/api/hunyuanimage21_distilled_api.json"
UI_WORKFLOW = "hunyuanimage21_distilled"  # workflows/<name>.json, opened by the address --serve prints
MODEL_INPUTS = {"dit_name": "diffusion_models", "qwen": "text_encoders", "byt5": "text_encoders", "vae_name": "vae"}
ENHANCER_LOADER = "HunyuanImage21PromptEnhancerLoader"  # its model input: "<models folder>/<name>/" or a file


def missing_models(workflow: dict, models_dir: Path) -> list[Path]:
    """Model files (and prompt-enhancer folders) the workflow's loaders name that the models folder does not have."""
    missing = []
    for node in workflow.values():
        for name, folder in MODEL_INPUTS.items():
            value = node["inputs"].get(name)
            if isinstance(value, str) and value != "none" and not (models_dir / folder / value).exists():
                missing.append(models_dir / folder / value)
        choice = node["inputs"].get("model")
        if node["class_type"] == ENHANCER_LOADER and isinstance(choice, str):
            path = models_dir / choice  # a folder ("LLM/<name>/") is there when its config.json is
            if not (path / "config.json" if choice.endswith("/") else path).exists():
                missing.append(path)
    return missing


def saved_files(host: ComfyHost, outputs: dict) -> list[tuple[str, str, Path]]:
    """(node id, output kind, path) for every file the output nodes wrote."""
    found = []
    for node_id, ui in outputs.items():
        for kind, files in ui.items():
            for entry in files if isinstance(files, list) else []:
                if isinstance(entry, dict) and "filename" in entry:
                    found.append((node_id, kind, host.output_dir / entry.get("subfolder", "") / entry["filename"]))
    return found


def describe_file(path: Path) -> str:
    if path.suffix != ".latent":
        return ""
    import safetensors.torch

    tensor = safetensors.torch.load_file(str(path))["latent_tensor"]
    return f" (shape {list(tensor.shape)}, dtype {tensor.dtype})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW, help="API-format workflow JSON")
    parser.add_argument("--base-dir", type=Path, default=repo_root() / ".host" / "demo")
    parser.add_argument("--models-dir", type=Path, help="a models folder with the real weights (default: tiny set)")
    parser.add_argument("--serve", action="store_true", help="keep the server running after the prompt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    workflow = json.loads((repo_root() / args.workflow).read_text())
    args.base_dir.mkdir(parents=True, exist_ok=True)
    models = args.base_dir / "models"
    if args.models_dir:
        if models.exists() and not models.is_symlink():
            print(f"{models} already holds a (tiny) model set; pass another --base-dir", file=sys.stderr)
            return 2
        models.unlink(missing_ok=True)
        models.symlink_to(args.models_dir.resolve(), target_is_directory=True)
    elif models.is_symlink():
        models.unlink()
    host = ComfyHost(base_dir=args.base_dir, previews=args.serve)
    if args.serve:
        seed_ui_settings(args.base_dir)  # open on the canvas, not on the first-run template browser
    missing = missing_models(workflow, host.models_dir)
    if missing:
        from hy21_host.tiny_models import write_tiny_models

        print("real weights not found (" + ", ".join(p.name for p in missing) + ")")
        print(f"writing a tiny random model set under {host.models_dir}: the image will be noise")
        write_tiny_models(host.models_dir)
    print(f"starting ComfyUI from {host.comfyui} (log: {host.log_path})")
    host.start()
    try:
        print(f"ComfyUI is serving at {host.url}; running {args.workflow}")
        started = time.perf_counter()
        result = ComfyClient(host.url).run(workflow).raise_for_error()
        print(f"prompt {result.prompt_id} finished with '{result.status}' in {time.perf_counter() - started:.2f} s")
        for node_id, kind, path in saved_files(host, result.outputs):
            print(f"node {node_id} saved {kind}: {path}{describe_file(path)}")
        if args.serve:
            if host.frontend is None:
                print(f"serving the HTTP API only at {host.url}: no web UI installed (run scripts/setup.sh)")
            else:
                print(f"open {template_url(host.url, UI_WORKFLOW)} for the distilled workflow, ready to Run")
            print(f"serving at {host.url}; press Ctrl-C to stop")
            while host.alive():
                time.sleep(1)
    except PromptRejectedError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
