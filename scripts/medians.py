"""Prints the median of one figure per line over the runs a figures script recorded.

usage: medians.py OUT < rows
OUT holds NAME.jsonl files (one JSON summary of wspush-bench per line); each row on stdin is
`NAME|key.key...|label`: the figure at that path in every summary of NAME.jsonl.
"""
import json
import os
import statistics
import sys


def values(out, name, path):
    found = []
    for line in open(os.path.join(out, name + ".jsonl")):
        value = json.loads(line)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            found.append(value)
    return found


def main():
    out = sys.argv[1]
    for row in sys.stdin:
        if not row.strip():
            continue
        name, path, label = row.rstrip("\n").split("|", 2)
        found = values(out, name, path.split("."))
        median = round(statistics.median(found), 3) if found else None
        print("%-70s median %-10s runs %s" % (label, median, [round(v, 3) for v in found]))


main()
