"""Name this process cnf-getppid (the programs count only that name) and call getppid() N times (argv[1])."""

import ctypes
import os
import sys

PR_SET_NAME = 15
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, b"cnf-getppid", 0, 0, 0)
for _call in range(int(sys.argv[1])):
    os.getppid()  # a real syscall each time: glibc does not cache getppid
print(int(sys.argv[1]))
