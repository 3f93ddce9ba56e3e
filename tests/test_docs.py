"""Repository hygiene: the README config table is generated from the server's own key list, and
tools/lint.sh finds no banned C functions."""
import re
import subprocess

from conftest import BUILD, ROOT


def test_readme_config_table_is_current():
    table = subprocess.run([str(BUILD / "cloob-server"), "--print-config-table"], capture_output=True,
                           text=True, check=True).stdout.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- config-table:begin[^>]*-->\n(.*?)\n<!-- config-table:end -->", readme, re.S)
    assert m, "README.md lost its config-table markers"
    assert m.group(1).strip() == table, \
        "README config table is stale: regenerate it with build/cloob-server --print-config-table"


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme[:1500]
    assert "make deps run" in head and "make deps test" in head


def test_lint_banned_functions():
    r = subprocess.run([str(ROOT / "tools" / "lint.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
