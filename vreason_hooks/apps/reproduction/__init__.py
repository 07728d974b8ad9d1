"""``vreason reproduce``: the paper's table in one command (see :mod:`vreason_hooks.apps.reproduce`).

One module per job: :mod:`.plan` (settings, variants, the lmms-eval command of each variant and benchmark),
:mod:`.checks` (bad input found before any run), :mod:`.jobs` (running a job, and what "finished" means),
:mod:`.scores` (a benchmark's headline score from lmms-eval's results), :mod:`.table` (table.json /
table.md, the published numbers), :mod:`.figures` and :mod:`.provenance` (versions and exact commands).
"""
