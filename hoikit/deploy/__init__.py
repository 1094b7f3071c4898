"""Deployment: ONNX export of hoikit models (:mod:`.onnx_export`), the onnxruntime runner
(:mod:`.onnx_runtime`), and the traceable rewrites of the data-dependent steps they need
(:mod:`.traceable`, :mod:`.graphs`). ``onnx`` / ``onnxruntime`` are the optional extra ``.[onnx]``;
only the export and runner modules import them. See docs/onnx.md."""
