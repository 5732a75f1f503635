"""From predictions to the paper's tables and figures: metrics (:mod:`.metrics`, the paper's F1
included), paired bootstrap statistics (:mod:`.bootstrap`), fold summaries joined with the paper's
numbers (:mod:`.tables`), one Markdown/LaTeX renderer for every table (:mod:`.render`), figures
(:mod:`.figures`), the leaderboard scoring of the official test set (:mod:`.leaderboard`) and the
report (:mod:`.report`). The paper's numbers ship as CSV files beside these modules.

May import: :mod:`patchlesion.method`, :mod:`patchlesion.data` and the shared modules; never
``engine`` or ``cli`` (results are computed from files, not from models).
"""
