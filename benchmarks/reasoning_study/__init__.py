"""Machinery of the V-Reason reasoning study on a real text LLM (driver: ``benchmarks/reasoning.py``).

One module per job: ``tasks`` (problems and their scorers), ``prompting`` (chat prompt and answer
extraction, identical for every variant), ``variants`` (the configurations compared), ``runner``
(batched greedy generation with a V-Reason session attached), ``stats`` (confidence intervals, paired
tests), ``report`` (markdown table and figures from the results JSON).
"""
