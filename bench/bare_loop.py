"""The floor for an extract: GET each URL in a file (one per line) with requests over one
keep-alive session, Sage's Basic auth, read the body and discard it. No parsing at all.

Run by overhead.py as a child process: ``python bench/bare_loop.py URLS_FILE USER PASSWORD``.
"""

from __future__ import annotations

import sys

import requests


def main(urls_file: str, user: str, password: str) -> None:
    with open(urls_file) as handle:
        urls = handle.read().split()
    session = requests.Session()
    session.auth = (user, password)
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    for url in urls:
        response = session.get(url, headers=headers, timeout=120)
        response.raise_for_status()
        response.content  # noqa: B018 - read the body, then drop it


if __name__ == "__main__":
    main(*sys.argv[1:4])
