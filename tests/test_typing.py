"""The public modules type-check (mypy, configured in pyproject.toml), and every
package ships its py.typed marker so a user's checker reads our annotations."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(300)
def test_mypy_is_clean_on_the_public_modules():
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir",
                        os.path.join(ROOT, ".venv", ".mypy_cache")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert r.returncode == 0 and not errors, "\n".join(errors or [r.stdout, r.stderr])


@pytest.mark.parametrize("pkg", ["reactor", "netstack", "drivers", "frames"])
def test_every_package_is_marked_typed(pkg):
    assert os.path.exists(os.path.join(ROOT, pkg, "py.typed"))
