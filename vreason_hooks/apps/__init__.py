"""Applications built on the library: the ``vreason`` CLI, the demo, video question answering, video reading,
synthetic clips, plots, packaged assets, tiny test checkpoints, test builders and ``vreason doctor``.

Imports go one way: these modules use :mod:`vreason_hooks` (the library); the library never imports from here
(``tests/unit/test_layout.py`` checks it). Their extra dependencies (rich, matplotlib) come with
``pip install 'vreason-hooks[cli]'``.
"""
