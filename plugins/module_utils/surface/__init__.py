"""Surface layer: what Ansible sees. One file per module (argument spec, check and diff mode, results), the options
they share, and the restore at boot, which replays the surface functions without Ansible.

It asks resources what exists, planning what to do, and resources to do it; it never reaches the kernel or the
types directly (what it needs of them comes through `resources._host` and the planners).

May import: resources, planning.
"""
