"""maml/cpu_allocator.py: freed tensor memory stays in the process, so an inner step's
activations are not page-faulted back in at every step (counted, not timed)."""
import json
import os
import platform
import subprocess
import sys

import pytest

from maml.cpu_allocator import keep_freed_memory, user_tunes_malloc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Allocates and frees what one 5-shot inner step does in its largest tensors (45 MB)
# 30 times and prints the minor page faults each allocation took. glibc settles its heap
# in the first few (they fault either way, more of them on a loaded machine), so the
# test counts the last ten.
PROGRAM = """
import json, resource, sys, torch
from maml.cpu_allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(45 << 20, dtype=torch.uint8).fill_(1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""
PAGES = (45 << 20) // 4096      # 4 KiB pages of one allocation


def faults(mode, **env):
    environ = {k: v for k, v in os.environ.items() if not user_tunes_malloc({k: v})}
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], cwd=REPO, check=True,
                         capture_output=True, text=True, env={**environ, **env}).stdout
    return json.loads(out)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_back():
    default, kept = faults("default"), faults("keep")
    assert kept["applied"] is True
    assert sum(default["faults"][-10:]) > 5 * PAGES     # default: mmap / munmap each time
    assert sum(kept["faults"][-10:]) < PAGES            # kept: the same memory again


def test_a_user_tuning_malloc_is_left_alone():
    assert user_tunes_malloc({"MALLOC_ARENA_MAX": "2"})
    assert user_tunes_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1"})
    assert not user_tunes_malloc({"PATH": "/bin"})
    if platform.libc_ver()[0] == "glibc":
        assert faults("keep", MALLOC_ARENA_MAX="2")["applied"] is False


def test_the_setting_is_applied_once_per_process():
    assert keep_freed_memory() is keep_freed_memory()
