#!/usr/bin/env python3
"""Matches each kill (ms since epoch) to the unavailability window around it: the longest gap
between successful sends that overlaps [kill, kill + 5 s]. Prints each window and p50/p99/max."""
import sys

kills = [int(x) for x in open(sys.argv[1]).read().split()]
gaps = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
windows = []
for k in kills:
    over = [b - a for a, b in gaps if b >= k and a <= k + 5000]
    windows.append(max(over, default=0))
windows_sorted = sorted(windows)


def pct(p):
    return windows_sorted[min(len(windows_sorted) - 1, int(p * len(windows_sorted)))]


print("unavailability per kill (ms):", " ".join(str(w) for w in windows))
print(f"kills: {len(windows)}  p50: {pct(0.5)} ms  p99: {pct(0.99)} ms  max: {windows_sorted[-1]} ms")
