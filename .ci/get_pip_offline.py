# Copyright (c) cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for ansible-test's get-pip bootstrap script (cnf.ebpf offline get-pip).

ansible-test creates its sanity virtual environments without pip and then runs
a ``get-pip.py`` downloaded from ci-files.testing.ansible.com, which is not
reachable from our CI machines. ``make sanity`` stores this file in
``~/.ansible/test/cache/get_pip_<version>.py`` instead: it installs pip from
the wheel bundled with the interpreter (``ensurepip``), then hands the
requested packages (e.g. ``pip==24.2``) to that pip, which gets them from PyPI.
"""

import ensurepip
import os
import subprocess
import sys

# get-pip.py specific switches that `pip install` does not understand.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    """Bootstrap pip, then install the requested packages."""
    # ensurepip points PIP_CONFIG_FILE at /dev/null; the pip install below must
    # see the machine's pip configuration (index mirrors, CA bundle) again.
    env = dict(os.environ)
    ensurepip.bootstrap(upgrade=True, default_pip=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args], env=env))


if __name__ == "__main__":
    main()
