"""Paper-shaped tables: tidy rows from a grid of measured cells with the paper's beside them,
and their Markdown with 'ours (paper)' cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfadv.report import ours_and_paper


def grid(cells: dict, rows, columns, row_labels: dict, paper: dict, *,
         average: str | None = "average", no_average=("none",), **extra) -> list[dict]:
    """Tidy rows of a paper table: one per (row, column), ``cells[(row, key)]`` measured and
    ``paper[row][i]`` the paper's number for the i-th of ``columns`` ((key, label) pairs).
    ``average`` adds the mean over ``rows`` of each column (NaN for ``no_average`` ones), as
    the papers' Average row; ``extra`` fields go into every row."""
    out = []
    for row in tuple(rows) + ((average,) if average else ()):
        for i, (key, label) in enumerate(columns):
            if row == average:
                value = np.nan if key in no_average else float(np.mean(
                    [cells[(r, key)] for r in rows]))
            else:
                value = cells[(row, key)]
            out.append({"attack": row_labels[row], "defense": label, "defense_key": key,
                        "accuracy": value, "paper": paper[row][i], **extra})
    return out


def markdown_by_evaluation(table: pd.DataFrame, title: str, notes, how: dict) -> str:
    """One 'ours (paper)' block per value of ``table.evaluation`` (``how`` explains each),
    then the notes."""
    parts = [f"### {title}\n"]
    for evaluation in dict.fromkeys(table.evaluation):
        sub = table[table.evaluation == evaluation]
        parts.append(f"**{evaluation}**: {how[evaluation]}. Accuracy %, ours (paper).\n\n"
                     f"{ours_and_paper(sub).to_markdown(index=False)}\n")
    return "\n".join(parts) + "\n" + "\n\n".join(notes) + "\n"
