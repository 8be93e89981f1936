"""Fixtures: a migrated database of each dialect (as tests/store)."""

from tests.store.conftest import db_url

__all__ = ["db_url"]
