"""`make setup`: the check's wheel holds the check and its example configuration, and
not ``datadog_checks/__init__.py`` (datadog-checks-base owns that namespace)."""

from __future__ import annotations

import sys
import zipfile

WANTED = {
    "datadog_checks/tcaudit/__init__.py",
    "datadog_checks/tcaudit/__about__.py",
    "datadog_checks/tcaudit/check.py",
    "datadog_checks/tcaudit/data/conf.yaml.example",
}


def main(path: str) -> int:
    names = set(zipfile.ZipFile(path).namelist())
    missing = WANTED - names
    if missing:
        print(f"{path}: missing {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    if "datadog_checks/__init__.py" in names:
        print(f"{path}: ships datadog_checks/__init__.py", file=sys.stderr)
        return 1
    stray = {n for n in names if not n.startswith(("datadog_checks/tcaudit/", "datadog_tcaudit-"))}
    if stray:
        print(f"{path}: unexpected {', '.join(sorted(stray))}", file=sys.stderr)
        return 1
    print(f"{path}: {len(names)} files, contents as expected")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
