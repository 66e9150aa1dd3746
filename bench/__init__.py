"""`make bench`: the budgets of DESIGN.md, measured side by side in one run on this machine.

A top-level package on purpose: nothing under avatarapp/ or worker/ imports it, and it
imports nothing from tests/. Its extra dependencies are the `bench` group of pyproject.toml.
"""
