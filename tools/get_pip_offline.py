"""Stands in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com.

That host is not reachable here; PyPI is. ansible-test runs this inside the empty virtual
environment it creates for a sanity test, with pip's own install arguments: pip comes from the
standard library's ensurepip, then installs the requested pip version from PyPI.
"""

import subprocess
import sys

BOOTSTRAP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
arguments = [arg for arg in sys.argv[1:] if arg not in BOOTSTRAP_ONLY]
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *arguments], check=True)
