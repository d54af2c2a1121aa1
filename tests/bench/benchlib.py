"""What both benchmarks need: timing a command, medians, a process's resident memory."""
import statistics
import subprocess
import sys
import time


def timed(cmd, **kwargs):
    """Wall time of one command; a failure ends the benchmark with the command's message."""
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed ({result.returncode}): {result.stderr.strip()}')
    return elapsed


def median_ms(samples):
    return statistics.median(samples) * 1000.0


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return -1
