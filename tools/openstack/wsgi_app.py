"""WSGI entry point for gunicorn: serves the `application` of the module named by HARNESS_WSGI.

oslo.config parses sys.argv when a service builds its application (at import), and gunicorn's own
arguments make it fail ("unrecognized arguments"), so they are replaced by HARNESS_ARGV (for a
service that takes its configuration file from the command line only, like ironic).
"""

from __future__ import annotations

import importlib
import os
import sys

sys.argv = sys.argv[:1] + os.environ.get("HARNESS_ARGV", "").split()
application = importlib.import_module(os.environ["HARNESS_WSGI"]).application
