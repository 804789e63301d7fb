"""Resources layer: the things on the host that the collection manages, each behind one interface.

Pinned maps and their entries, BPF objects (compile with clang, load, reuse pinned maps, migrate), bcc programs,
attachments (netlink XDP/tc through pyroute2, bpf links, cgroups, tracing), application state files and layouts,
locks, facts about what the kernel runs, event capture. Resources do the I/O that planning decides; `_host` is the
door through which the surface sees the errors and facts of the layers beneath.

May import: kernel, types.
"""
