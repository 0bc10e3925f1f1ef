"""The optional C speedups: netstack/wire/_csum.c (RFC 1071 sums) and
drivers/_mmsg.c (sendmmsg/recvmmsg for packet sockets). Everything else is in
pyproject.toml. A machine without a compiler still installs: the extensions
are optional, and their users fall back to Python."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("netstack.wire._csum", ["netstack/wire/_csum.c"], optional=True),
                   Extension("drivers._mmsg", ["drivers/_mmsg.c"], optional=True)])
