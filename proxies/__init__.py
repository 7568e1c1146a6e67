"""Proxy tasks: small seeded training tasks for update rules, and prompt tasks."""
