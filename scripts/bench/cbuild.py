"""The benchmarks' C tools (loadgen.c, impair_bridge.c): built with gcc into
.venv/ when missing or older than their source, gcc installed if missing."""
import os
import shutil
import subprocess


def build_c(src: str, out: str) -> None:
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return
    if shutil.which("gcc") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "gcc", "libc6-dev"], check=True, stdout=subprocess.DEVNULL)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", out, src], check=True)
