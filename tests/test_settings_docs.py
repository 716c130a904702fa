"""Every environment variable the settings read is documented in README.md and .env.example."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented():
    settings = (ROOT / "personatalk" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', settings))
    assert len(names) > 40  # the pattern still finds them
    readme, example = (ROOT / "README.md").read_text(), (ROOT / ".env.example").read_text()
    missing_readme = sorted(n for n in names if f"`{n}`" not in readme)
    missing_example = sorted(n for n in names if not re.search(rf"^#?\s*{n}=", example, re.M))
    assert missing_readme == [] and missing_example == [], (missing_readme, missing_example)
