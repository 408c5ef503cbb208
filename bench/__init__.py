"""Benchmarks: each prints a table comparing the bot to a naive baseline in the same run."""
