"""The optional C speedup (netstack/wire/_csum.c: RFC 1071 sums). Everything
else is in pyproject.toml. A machine without a compiler still installs: the
extension is optional, and netstack.wire.checksum falls back to Python."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("netstack.wire._csum", ["netstack/wire/_csum.c"], optional=True)])
