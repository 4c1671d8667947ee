"""`python -m r2ec_pipeline.reporting [--cold-start]`: the summary `make run` (or `make cold-start`) prints."""

import sys

from r2ec_pipeline.reporting.summary import print_cold_start, print_summary

if sys.argv[1:] == ["--cold-start"]:
    print(print_cold_start("data/08_reporting/cold_start.json"))
else:
    print(
        print_summary(
            "data/08_reporting/metrics.json",
            "data/08_reporting/registration.json",
            "data/08_reporting/registration_shipped.json",
        )
    )
