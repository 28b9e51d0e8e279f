"""Helpers shared by the test modules (waiting on conditions, shared node servers...).

Each module here says what it owns; none holds a test.
"""
