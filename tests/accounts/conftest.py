"""Fixtures for the accounts tests: Mailweb wired to the Entra stand-in."""

from tests.accounts.entra_setup import entra  # noqa: F401  (fixture found by name)
