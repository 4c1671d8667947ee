"""The summaries `make run` and `make cold-start` print (`python -m r2ec_pipeline.reporting [--cold-start]`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r2ec_pipeline.reporting.tables import cold_start_tables, comparisons_table, markdown_table, results_table


def _registration_line(registration: dict[str, Any]) -> str:
    return (
        f"Registered model: {registration['model_name']} version {registration['version']} "
        f"(aliases: {', '.join(registration['aliases']) or 'none'}); {registration['promotion']}"
    )


def print_summary(
    metrics_path: str | Path, registration_path: str | Path, shipped_path: str | Path | None = None
) -> str:
    """What `make run` prints at the end: the test table, the registered version(s) and, with a shipped
    checkpoint, how it compares with this run's RecPO model on the validation users promotion reads."""
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
    shipped = {k: v for k, v in metrics.get("comparisons", {}).get("valid", {}).items() if k.startswith("shipped.")}
    if shipped:
        lines += [
            f"Shipped checkpoint − this run's RecPO model on {users.get('valid', '?')} validation users, 95% bootstrap CIs:",
            markdown_table(comparisons_table(shipped)),
        ]
    if Path(registration_path).is_file():
        lines.append(_registration_line(json.loads(Path(registration_path).read_text())))
    if shipped_path is not None and Path(shipped_path).is_file():
        lines += [_registration_line(version) for version in json.loads(Path(shipped_path).read_text())["versions"]]
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
