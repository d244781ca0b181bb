"""Fault-injection suite (issue #8): the pipeline under crashes, dropped broker connections
and a storage outage, on real servers.

A package on purpose: its modules import as ``faults.*``, so this folder's ``conftest.py``
never shadows ``tests/conftest.py`` (which other test modules import as ``conftest``).
"""
