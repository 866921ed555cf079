"""Helpers shared by the tests: row factories, fakes, app builders, child servers.

Test modules import from here, never from one another or from a conftest.py; fixtures
stay in the conftest.py files and call these.
"""
