"""Hooks of the ``vreason_text`` task of the vLLM tests: three text questions, scored by exact match."""


def doc_to_visual(doc):
    return []


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"exact": float(results[0].strip() == doc["answer"])}
