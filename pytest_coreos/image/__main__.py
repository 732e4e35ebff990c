"""``python -m pytest_coreos.image [box|--rootfs|--hash]``: build the stand-in image."""

from __future__ import annotations

import os
import sys

from pytest_coreos.image.builder import MODES, command


def main(argv: list[str]) -> int:
    """Run the builder in this process's place, with its arguments."""
    mode = argv[0] if argv else "box"
    if len(argv) > 1 or mode not in MODES:
        print(f"usage: python -m pytest_coreos.image [{'|'.join(MODES)}]", file=sys.stderr)
        return 2
    argv = command(mode)
    os.execvp(argv[0], argv)  # noqa: S606 - the builder, by its path in the package


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
