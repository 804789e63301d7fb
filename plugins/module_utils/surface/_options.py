# Copyright: (c) 2026, cnf.ebpf contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument specs of the options several modules share, one function each, documented once in
plugins/doc_fragments/ (tests/unit/test_shared_options.py fails when a spec and its fragment disagree).

Each call returns a new dict, so no two argument specs share a mutable default."""

from __future__ import annotations

from typing import Any

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _apps


def pin_root() -> dict[str, Any]:
    """bpffs directory of the bpf_program applications; documented by cnf.ebpf.application.pin_root."""
    return {"type": "path", "default": _apps.DEFAULT_PIN_ROOT}


def state_dir() -> dict[str, Any]:
    """Directory of the applications' state files (and caches); documented by cnf.ebpf.application.state_dir."""
    return {"type": "path", "default": _apps.DEFAULT_STATE_DIR}


def lock_timeout() -> dict[str, Any]:
    """Seconds to wait for an application or map lock; documented by cnf.ebpf.application.lock_timeout."""
    return {"type": "int", "default": 60}


def formats() -> dict[str, Any]:
    """Text forms by field path; documented by cnf.ebpf.encoding.formats."""
    return {"type": "dict", "default": {}}


def type_schema() -> dict[str, Any]:
    """A key, value or event type in the schema language (a C scalar name or a struct, union or enum schema), at any
    level of a spec; the language is documented by the note of cnf.ebpf.encoding.type_schemas.

    no_log=False: these are type schemas, not secrets (validate-modules flags "key" in option names)."""
    return {"type": "raw", "no_log": False}
