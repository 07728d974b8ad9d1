"""lmms-eval integration of vreason-hooks: run any lmms-eval task under V-Reason.

    lmms-eval --model vreason_qwen2_5_vl --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct,lr=3e-4 \\
        --tasks mvbench --output_path runs/ --log_samples

Models are registered through the ``lmms_eval.models`` entry point (:mod:`.registration`); they are
lmms-eval's own wrappers with generation inside :func:`vreason_hooks.attach` (:mod:`.models`). See
docs/lmms-eval.md. """

from .lmms_eval_seam import ensure_filelock_api

# lmms-eval imports this package while it builds its model registry, before any run: the place to put back
# what a newer filelock removed, for every model of the run (the upstream baseline's too, so that both sides
# of
# a comparison run in one environment).
FILELOCK_API = ensure_filelock_api()
