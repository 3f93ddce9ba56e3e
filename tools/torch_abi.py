#!/usr/bin/env python3
"""Prints 1 or 0: the _GLIBCXX_USE_CXX11_ABI that the libtorch in TORCH_DIR was built with.

Used by the Makefile when building against a libtorch other than Debian's (the official
archives and pip wheels have shipped both ABIs). It looks for std::__cxx11 mangled names in
libc10.so, which is where std::string first appears in libtorch's exported API.
"""
import pathlib
import sys


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for cand in (root / "lib" / "libc10.so", root / "libc10.so"):
        if cand.exists():
            data = cand.read_bytes()
            print(1 if b"NSt7__cxx1112basic_string" in data else 0)
            return 0
    print(f"torch_abi.py: no libc10.so under {root}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
