"""The pack inside the real ComfyUI 0.3.75, and inside a simulated newer one (its new hooks set on the real modules).

- Registration through ComfyUI's own custom-node loader: every node on 0.3.75, every schema builds without the
  newer optional fields; none on a host reporting an older version, with one error line.
- ``management.patch``: 0.3.75's plain ModelPatcher and no dtype archiving; where the host has
  ``CoreModelPatcher`` and ``archive_model_dtypes`` (current releases), that class, archiving first, and the patcher
  still loads and runs through ``load_models_gpu``.
"""

from __future__ import annotations

import pytest

from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.server  # the pack's import into a real ComfyUI (no server process)

EXPECTED_NODES = {
    "HunyuanImage21DiTLoader", "HunyuanImage21LoraLoader", "HunyuanImage21TextEncoderLoader", "HunyuanImage21VAELoader",
    "HunyuanImage21TextEncode", "HunyuanImage21EmptyLatent", "HunyuanImage21Sampler", "HunyuanImage21VAEDecode",
    "HunyuanImage21VAEEncode", "HunyuanImage21RefinerVAELoader", "HunyuanImage21Refiner", "HunyuanImage21Guider",
    "HunyuanImage21Scheduler", "HunyuanImage21StepCache", "HunyuanImage21PromptEnhancerLoader",
    "HunyuanImage21PromptEnhancer",
}  # fmt: skip

REGISTRATION_PROBE = """
import asyncio, dataclasses, inspect, logging, os, tempfile
import comfyui_version
import nodes
from comfy_api.latest import io

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.levelname, record.name, record.getMessage()))
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.DEBUG)

def load_pack(version):
    # ComfyUI's own loader, from a custom_nodes-like folder holding the pack under its installed name
    comfyui_version.__version__ = version
    before, records[:] = set(nodes.NODE_CLASS_MAPPINGS), []
    folder = tempfile.mkdtemp(prefix="hy21_" + version.replace(".", "_"))
    os.symlink(sys.argv[2], os.path.join(folder, "ComfyUI-HunyuanImage21"))
    loaded = asyncio.run(nodes.load_custom_node(os.path.join(folder, "ComfyUI-HunyuanImage21")))
    new = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
    pack_lines = [r for r in records if "HunyuanImage-2.1" in r[2]]
    return {"loaded": loaded, "nodes": new, "lines": pack_lines}

real = comfyui_version.__version__
old = load_pack("0.3.60")
new = load_pack(real)
schemas = {}
for node_id in new["nodes"]:
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    schema = cls.GET_SCHEMA()
    inputs = cls.INPUT_TYPES()
    specs = {**inputs.get("required", {}), **inputs.get("optional", {})}
    schemas[node_id] = {
        "inputs": sorted(specs),
        "combos": sorted(name for name, spec in specs.items() if spec[0] == "COMBO"),
        "validated": {
            name: param.default is not inspect.Parameter.empty
            for name, param in inspect.signature(cls.validate_inputs).parameters.items()
            if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
        },
    }
result = {
    "real": real, "old": old, "new": new, "schemas": schemas,
    "schema_has_aliases": "search_aliases" in {f.name for f in dataclasses.fields(io.Schema)},
    "inputs_have_advanced": "advanced" in inspect.signature(io.Int.Input).parameters,
}
"""

PATCH_PROBE = (
    IMPORT_PACK
    + """
import types
import torch
import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
from hy21_pack.nodes import management

def tiny():
    ops = management.operations()
    model = torch.nn.Sequential(ops.Linear(4, 3, dtype=torch.float32), torch.nn.GELU(), ops.Linear(3, 2))
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    return model

def run(patcher):
    mm.load_models_gpu([patcher])
    loaded = any(m.model is patcher for m in mm.current_loaded_models)
    x = torch.ones(1, 4, device=patcher.load_device)
    with torch.no_grad():
        y = patcher.model(x)
    return loaded, y.cpu().tolist()

result = {"ops": issubclass(management.operations(), comfy.ops.manual_cast)}

# ComfyUI 0.3.75 as it is
result["old_has_hooks"] = [hasattr(comfy.model_patcher, "CoreModelPatcher"), hasattr(mm, "archive_model_dtypes")]
patcher = management.patch(tiny(), "diffusion")
loaded, y_old = run(patcher)
# the host's class with the pack's QuantizedPatching mixed in (LoRA on fp8 / GGUF layers): mixin first, host class after
mixin, host_class = type(patcher).__bases__
result["old"] = {"type": host_class.__name__, "exact": host_class is comfy.model_patcher.ModelPatcher,
                 "mixin": mixin.__name__, "loaded": loaded}

# a newer host: its hooks, set on the real modules the way its main.py and model_management provide them
events = []
class NewerPatcher(comfy.model_patcher.ModelPatcher):
    def __init__(self, model, *args, **kwargs):
        events.append(("wrap", id(model)))
        super().__init__(model, *args, **kwargs)

def archive_model_dtypes(model):
    events.append(("archive", id(model)))
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            setattr(module, name + "_comfy_model_dtype", param.dtype)

comfy.model_patcher.CoreModelPatcher = NewerPatcher
mm.archive_model_dtypes = archive_model_dtypes
model = tiny()
patcher = management.patch(model, "text")
loaded, y_new = run(patcher)
result["new"] = {
    "type": type(patcher).__bases__[-1].__name__, "events": [(e, i == id(model)) for e, i in events], "loaded": loaded,
    "archived": getattr(model[0], "weight_comfy_model_dtype", None) == torch.float32, "same_output": y_new == y_old,
    "load_device": str(patcher.load_device), "text_device": str(mm.text_encoder_device()),
}
"""
)


@pytest.fixture(scope="module")
def registration() -> dict:
    return run_in_comfyui(REGISTRATION_PROBE)


def test_the_host_is_comfyui_0_3_75_without_the_newer_fields(registration):
    assert registration["real"] == "0.3.75"
    assert not registration["schema_has_aliases"] and not registration["inputs_have_advanced"]


def test_0_3_75_registers_every_node_through_comfyuis_loader(registration):
    new = registration["new"]
    assert new["loaded"] is True
    assert set(new["nodes"]) == EXPECTED_NODES
    assert not [line for line in new["lines"] if line[0] in ("WARNING", "ERROR")], new["lines"]


def test_every_schema_builds_and_validate_inputs_names_at_most_one_input(registration):
    """ComfyUI attaches a failing validate_inputs message to every input it names and skips its own checks for
    them: each node names at most one (with a default, so a missing input gets ComfyUI's own message). Every combo
    is still refused with its choices (test_input_validation.py, through a server)."""
    schemas = registration["schemas"]
    assert set(schemas) == EXPECTED_NODES
    for node_id, info in schemas.items():
        assert info["inputs"], node_id
        assert len(info["validated"]) <= 1, f"{node_id}: validate_inputs names {sorted(info['validated'])}"
        assert all(info["validated"].values()), f"{node_id}: validate_inputs needs a default for a missing input"
        assert set(info["validated"]) <= set(info["inputs"]), node_id
    assert sum(len(info["combos"]) for info in schemas.values()) >= 13


def test_older_host_gets_no_nodes_and_one_error_line(registration):
    old = registration["old"]
    assert old["loaded"] is True  # the pack imported fine: it chose to register nothing
    assert old["nodes"] == []
    errors = [line for line in old["lines"] if line[0] == "ERROR"]
    assert len(errors) == 1, old["lines"]
    message = errors[0][2]
    assert "need ComfyUI >=0.3.75" in message and "this is ComfyUI 0.3.60" in message and "update" in message


@pytest.fixture(scope="module")
def patching() -> dict:
    return run_in_comfyui(PATCH_PROBE)


def test_loaders_build_with_manual_cast(patching):
    assert patching["ops"] is True


def test_0_3_75_gets_a_plain_model_patcher_and_no_archiving(patching):
    assert patching["old_has_hooks"] == [False, False]
    assert patching["old"] == {"type": "ModelPatcher", "exact": True, "mixin": "QuantizedPatching", "loaded": True}


def test_newer_host_gets_its_patcher_after_archiving(patching):
    new = patching["new"]
    assert new["type"] == "NewerPatcher"
    assert new["events"] == [["archive", True], ["wrap", True]]  # the model archived first, then wrapped
    assert new["archived"] is True
    assert new["loaded"] is True and new["same_output"] is True  # load_models_gpu loads it and it runs
    assert new["load_device"] == new["text_device"]  # the role still picks the devices
