"""The README's Python API example runs as written (on a generated data set, in a temporary
folder): the block after ``<!-- api-example -->``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_api_example_runs(tmp_path: Path, synthetic_npz: Path) -> None:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "README.md has no API example"
    script = tmp_path / "example.py"
    script.write_text(block.group(1))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={"CIFAR_SEARCH_DATA": str(synthetic_npz),
                                                        "PATH": "/usr/bin:/bin",
                                                        "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "studies" / "notebook.db").is_file()
    assert "tensor([[" in proc.stdout
