"""Word count as a PyCOMPSs workflow: one task per input file, then a reduction.

With the COMPSs runtime (enqueue_compss), each count_words call is a task that COMPSs schedules
on the allocated nodes; without it, the decorators fall back to plain calls, so the same file
runs anywhere with python3.
"""

import os
import sys
from collections import Counter

try:
    from pycompss.api.api import compss_wait_on
    from pycompss.api.task import task
except ImportError:  # no COMPSs runtime: tasks are plain calls

    def task(**_options):
        return lambda function: function

    def compss_wait_on(value):
        return value


@task(returns=1)
def count_words(path):
    with open(path, encoding="utf-8") as handle:
        return Counter(handle.read().split())


@task(returns=1)
def merge(first, second):
    return first + second


def main(data_dir, out_dir):
    files = sorted(os.path.join(data_dir, name) for name in os.listdir(data_dir))
    total = Counter()
    for partial in [count_words(path) for path in files]:
        total = merge(total, partial)
    total = compss_wait_on(total)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "counts.txt"), "w", encoding="utf-8") as out:
        for word, count in sorted(total.items(), key=lambda item: (-item[1], item[0])):
            out.write(f"{word} {count}\n")
    print(f"counted {sum(total.values())} words in {len(files)} files")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
