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


PUBLIC = ["reactor", "netstack.sockets.api", "netstack.config", "netstack.interface", "netstack.testing",
          "netstack.testing.replay", "netstack.testing.apps"]


def _unannotated() -> list:
    import importlib
    import inspect
    missing = []

    def check(qual, fn):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return
        for name, p in sig.parameters.items():
            if name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.annotation is inspect.Parameter.empty:
                missing.append(f"{qual}({name})")
        if sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__":
            missing.append(f"{qual} -> ?")
    for m in PUBLIC:
        mod = importlib.import_module(m)
        for n in mod.__all__:
            obj = getattr(mod, n)
            if inspect.isclass(obj) and obj.__module__.split(".")[0] in ("reactor", "netstack"):
                for an, av in vars(obj).items():
                    if an.startswith("_") and an != "__init__":
                        continue
                    f = av.__func__ if isinstance(av, (staticmethod, classmethod)) else av
                    if inspect.isfunction(f):
                        check(f"{m}.{n}.{an}", f)
            elif inspect.isfunction(obj):
                check(f"{m}.{n}", obj)
    return missing


def test_the_public_api_is_fully_annotated():
    """Every function and public method named in a public module's __all__ has
    an annotation for each parameter and its return (mypy checks them)."""
    assert _unannotated() == []
