"""Task hooks of vreason_synth; the code lives in the installed package (vreason_lmms_eval.synthetic_task)."""

from vreason_lmms_eval.synthetic_task import doc_to_text, doc_to_visual, process_results  # noqa: F401
