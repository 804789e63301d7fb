"""A managed host without libbpf.so.1: the module fails with Ansible's missing-library message.

The kernel cannot be made to lack a shared library, so this one error path is simulated by pointing the loader at a
library name that does not exist.
"""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.kernel import _libbpf
from ansible_collections.cnf.ebpf.plugins.module_utils.surface._common import fail_without_libbpf


class _Failed(Exception):
    pass


class _FakeModule:
    def fail_json(self, **kwargs: Any) -> None:
        raise _Failed(kwargs)


def test_missing_libbpf_names_the_distro_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_libbpf, "_lib", None)
    monkeypatch.setattr(_libbpf, "LIBBPF_SONAME", "libbpf-not-installed.so.1")
    with pytest.raises(_Failed) as failed:
        fail_without_libbpf(_FakeModule())
    result = failed.value.args[0]
    assert "Failed to import the required Python library (libbpf (Debian/Ubuntu: libbpf1" in result["msg"]
    assert "libbpf-not-installed.so.1" in result["exception"]
    with pytest.raises(_libbpf.LibbpfMissing):
        _libbpf.load_libbpf()
