"""Kernel layer: the only code that talks to libbpf.so.1 and libbcc (through ctypes).

Library loading and prototypes (libbpf 1.1, Debian 12), file descriptors with deterministic ownership, object info
and ids, map syscalls on raw bytes (batched, with fallbacks), BPF objects (open, load, pin), links and attach
syscalls, ring/perf buffer readers, raw BTF and the BTF writer. Every failure is one `BpfError(op, obj, errno)`.
It names what it reads with the types layer's words (map and program type names, BTF types).

May import: types.
"""
