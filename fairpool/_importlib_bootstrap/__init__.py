"""The directory that ``fairpool run`` puts first on ``PYTHONPATH``: its ``sitecustomize``.

Only :mod:`sitecustomize` belongs here: every module in this directory becomes
importable by its bare name in the processes that run with it on the path.
See :mod:`fairpool.autopatch`.

Why the name: the hook's loader runs eventlet's module code, so its frame sits
between the service's ``import eventlet`` and eventlet's import-time warning
(the deprecation banner). :mod:`warnings` skips the frames of files whose path
holds both "importlib" and "_bootstrap" when it looks for the line to blame,
so with this name the banner names the service's own import line, as it does
without fairpool, and the warning filters that match on the service's module
keep matching.
"""
