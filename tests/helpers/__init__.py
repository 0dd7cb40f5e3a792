"""Helpers shared by several test modules: data builders and readers, no tests of their own."""
