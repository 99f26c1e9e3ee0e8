"""Print the local-head study's table (zoo models and recorded runs) as Markdown.

python scripts/local_heads_table.py

The table in ``vitlens/zoo/README.md`` and in the chapter "What makes attention local?".
"""

from __future__ import annotations

from vitlens.analyses.local_heads import (
    factor_effects,
    study_images,
    study_markdown,
    study_runs,
    study_table,
)


def main() -> None:
    rows = study_table(study_images()) + study_runs()
    print(study_markdown(rows))
    print()
    for e in factor_effects(rows):
        print(
            f"- {e['factor']} (`{e['base']}` -> `{e['changed']}`): local heads in the lower "
            f"half {e['local_base']} -> {e['local_changed']}, held-out accuracy "
            f"{e['accuracy_base']:.1%} -> {e['accuracy_changed']:.1%}"
        )


if __name__ == "__main__":
    main()
