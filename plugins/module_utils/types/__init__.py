"""Types layer: the vocabulary every other layer shares, as plain Python.

BTF (parsed from the kernel's or an ELF's raw blob, built from a YAML schema, laid out with clang's rules, compared
field by field and turned back into schemas), the codecs compiled from it (dict <-> bytes, per-CPU values, LPM keys,
text formats for addresses and MACs), the kernel's names for map, program and link types and flags, and `MapSpec` /
`MapState`, the declared and the pinned map. Pure: no I/O, no file descriptors, no ctypes.

May import: nothing from this collection.
"""
