"""The summaries `make run` and `make cold-start` print (`python -m r2ec_pipeline.reporting [--cold-start]`)."""

from __future__ import annotations

import json
from pathlib import Path

from r2ec_pipeline.reporting.tables import cold_start_tables, comparisons_table, markdown_table, results_table


def print_summary(metrics_path: str | Path, registration_path: str | Path) -> str:
    """What `make run` prints at the end: the test table and the registered model version."""
    metrics = json.loads(Path(metrics_path).read_text())
    users = metrics.get("users", {})
    lines = [
        f"Test metrics ({users.get('test', '?')} test users, full ranking over the catalog, history masked):",
        markdown_table(results_table(metrics, "test")),
    ]
    if metrics.get("comparisons", {}).get("test"):
        lines += [
            "Paired differences on the same test users, 95% bootstrap CIs:",
            markdown_table(comparisons_table(metrics["comparisons"]["test"])),
        ]
    if Path(registration_path).is_file():
        registration = json.loads(Path(registration_path).read_text())
        lines.append(
            f"Registered model: {registration['model_name']} version {registration['version']} "
            f"(aliases: {', '.join(registration['aliases']) or 'none'}); {registration['promotion']}"
        )
    return "\n".join(lines)


def print_cold_start(report_path: str | Path) -> str:
    """What `make cold-start` prints: the held-out items, the update and both tables."""
    report = json.loads(Path(report_path).read_text())
    held, update = report["held_out"], report["update"]
    results, differences = cold_start_tables(report)
    return "\n".join(
        [
            f"Cold start: the newest {held['items']} of {held['catalog_items']} items ({held['fraction']:.0%} by first "
            f"interaction) held out of training and added by a catalog update ({update['encode_seconds']:.1f} s to "
            f"encode them); {report['users']} test users whose target is one of them, full ranking, history masked:",
            markdown_table(results),
            "Paired differences on the same users, 95% bootstrap CIs:",
            markdown_table(differences),
        ]
    )
