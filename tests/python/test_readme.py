"""The README's Python quick start runs as written."""

import os

import pytest

from conftest import REPO


def test_quick_start_runs(tmp_path, capsys):
    pytest.importorskip("torch")
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Python\n"):]
    block = section[section.index("```python\n") + len("```python\n"):]
    block = block[:block.index("```\n")]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(block, "README.md (Python quick start)", "exec"), {})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "dp.safetensors").exists()
    eps, reference = map(float, capsys.readouterr().out.split())
    assert 0 < eps <= 3.0 and reference > 0
