"""lmms-eval integration of vreason-hooks: run any lmms-eval task under V-Reason.

    lmms-eval --model vreason_qwen2_5_vl --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct,lr=3e-4 \\
        --tasks mvbench --output_path runs/ --log_samples

Models are registered through the ``lmms_eval.models`` entry point (:mod:`.registration`); they are
lmms-eval's own wrappers with generation inside :func:`vreason_hooks.attach` (:mod:`.models`). See
docs/lmms-eval.md.
"""
