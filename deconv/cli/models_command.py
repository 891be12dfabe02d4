"""``deconv models``: list the zoo with provenance and whether the weights are here."""

from __future__ import annotations

import argparse

from deconv.zoo import list_models, model_info


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand."""
    p = sub.add_parser("models", help="list the model zoo and weight availability")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one row per model: name, weights here?, offline?, source, licence."""
    rows = [("name", "weights here", "offline", "source", "licence")]
    for name in list_models():
        info = model_info(name)
        try:
            here = "yes" if info.available() else "no"
        except Exception as exc:  # a broken install must not break the listing
            here = f"no ({exc})"
        rows.append((name, here, "yes" if info.offline else "no", info.source, info.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0
