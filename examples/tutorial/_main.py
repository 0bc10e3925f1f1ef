"""The tutorial's main(): run f() under app_template, report start-up errors.

    try:
        app.run(argc, argv, f);
    } catch(std::runtime_error &e) {
        std::cerr << "Couldn't start application: " << e.what() << "\\n";
        return 1;
    }
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from reactor import app_template  # noqa: E402


def main(f, app=None) -> int:
    app = app or app_template()
    try:
        return app.run(sys.argv, f)
    except RuntimeError as e:
        print(f"Couldn't start application: {e}", file=sys.stderr)
        return 1
