"""Write the book's cast (``book/_cast.md``): which model plays each role in each profile.

Run after changing a profile's models or seeds; ``tests/test_profiles.py`` checks that the
page is what the profiles give.
"""

from pathlib import Path

from vitlens.book.profiles import cast_table

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    (ROOT / "book" / "_cast.md").write_text(cast_table())
    print(f"wrote {ROOT / 'book' / '_cast.md'}")
