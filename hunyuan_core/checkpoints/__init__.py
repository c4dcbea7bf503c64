"""The checkpoint toolkit every loader in the core uses; never imports ComfyUI.

- ``errors``: ``CheckpointError``, the base of every loader's refusal.
- ``files``: ``TensorFile`` (safetensors by plain reads, pickles via ``torch.load(weights_only=True)`` only) and
  ``open_checkpoint`` (folder search, failures as the loader's own error).
- ``identify``: what a file appears to be, for refusals (``describe_checkpoint``, ``describe_foreign_vae``).
- ``complete``: the one completeness check and its message (missing / misshapen tensors, which file to re-download).
- ``meta``: build on the meta device, shapes without memory, and ``load_weights``, the one load loop: each module's
  tensors streamed from the file through ``load_state_dict(assign=True)``, so eager, lazy and quantized
  ``comfy.ops`` layers all receive them as ComfyUI's own loaders hand them over.
- ``operations``: ``adopt_operations``, the host's layer classes put into a transformers model's meta build, and
  ``adopt_streaming``, the host's streamable class for modules that own a parameter (norm scales).
- ``fp8``: fp8 dtypes, the official per-tensor quantization (in row chunks, so a bf16 file quantizes at load without
  a float32 copy of a layer) and ``Fp8Weight`` (a weight with its scale, as readers hand it over).
- ``gguf_quants``: GGUF tensor bytes dequantized in plain torch on any device (F32 ... Q2_K), equal to the ``gguf``
  package's reference bit for bit.
- ``gguf_file``: ``GGUFFile``, GGUF checkpoints with ``TensorFile``'s interface (header by the ``gguf`` package,
  tensors by plain reads); block-quantized tensors come back as ``GGMLWeight`` and stay quantized.
- ``quantized``: ``QuantizedWeights`` / ``QuantizedLinear``, the one linear layer for fp8 and GGML weights (stored
  compact, expanded per call on the weight's device); a host hands its streaming variant in as
  ``operations.QuantizedLinear``.
- ``views``: a file seen under the model's parameter names (``NamedView``).
- ``vae_layouts``: what the stage-1 and refiner VAE loaders share (layouts, diffusers names, ``VAEFormat``,
  ``VAELoader``).
"""
