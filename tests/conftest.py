import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def readme_python():
    """``readme_python(text)``: the README's Python block holding ``text``, to run as written."""
    def block(containing: str) -> str:
        return next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if containing in b)
    return block
