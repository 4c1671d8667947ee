"""The benchmarks' output: a markdown table of (measure, value) rows, ready for the README."""

from __future__ import annotations


def print_measures(rows: list[tuple[str, str]]) -> None:
    """Print ``rows`` as a two-column markdown table, the measure column padded to its widest entry."""
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
