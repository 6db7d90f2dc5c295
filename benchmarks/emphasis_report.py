"""The emphasis benchmark's figures for the suite's report, and its table for the terminal
(:mod:`benchmarks.emphasis_recall` makes the results)."""

from __future__ import annotations

from typing import Any

from .emphasis_recall import ALPHAS, TARGET


def figures(found: dict[str, Any], figure: Any) -> list[dict[str, Any]]:
    """The report's rows (``figure``: :func:`benchmarks.report._figure`): the product's pool,
    and each mechanism's smallest pool reaching the target."""
    size, pool = found["size"], found.get("product_pool")
    rows = []
    key = f"hybrid@{pool}"
    if "product" in found["recall"]:
        for alpha in ALPHAS:
            worst = min(found["recall"]["product"][f"{kind}@{alpha:g}"] for kind in ("text", "image"))
            rows.append(
                figure(
                    "22 emphasis",
                    f"recall@10 at alpha {alpha:g}, {size:,} rows, the product's candidates",
                    worst,
                    ">=",
                    TARGET,
                )
            )
    elif key in found["recall"]:
        for alpha in ALPHAS:
            worst = min(found["recall"][key][f"{kind}@{alpha:g}"] for kind in ("text", "image"))
            rows.append(
                figure(
                    "22 emphasis",
                    f"recall@10 at alpha {alpha:g}, {size:,} rows, hybrid pool {pool}",
                    worst,
                    ">=",
                    TARGET,
                )
            )
    for mechanism, answer in found["answer"].items():
        if mechanism == "product":
            continue
        rows.append(
            figure(
                "22 emphasis",
                f"smallest pool of {mechanism} reaching {TARGET} at every alpha, {size:,} rows",
                answer["pool"] if answer else None,
                note=f"{answer['candidates']} candidates, re-score {answer['rescore_ms']} ms"
                if answer
                else "none",
            )
        )
    return rows


def table(result: dict[str, Any]) -> str:
    lines = [
        "mechanism@pool          cands  rescore_ms  "
        + "  ".join(f"{k}@{a:g}" for k in ("text", "image") for a in ALPHAS)
    ]
    for key, r in result["recall"].items():
        cells = "  ".join(f"{r[f'{k}@{a:g}']:>8.3f}" for k in ("text", "image") for a in ALPHAS)
        cost = result["rescore"][key]
        lines.append(f"{key:<24}{cost['candidates']:>5}  {cost['rescore_ms']:>10.3f}  {cells}")
    return "\n".join(lines)
