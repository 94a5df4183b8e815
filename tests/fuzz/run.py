"""Running a target of :mod:`tests.fuzz.targets` under atheris, with its seeds.

atheris instruments voxwire's Python modules as they are imported (coverage feedback for
the parsers, codecs and the SIP server), then hands the process to libFuzzer, which takes
its usual flags from ``sys.argv``. A target's :class:`~tests.fuzz.targets.Finding` or any
other exception is a crash: libFuzzer writes the input to ``crash-<sha1>`` and exits 1.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["fuzz"]


def fuzz(target: str) -> None:
    """Fuzz ``target`` ("codec", "sip" or "twcc") with the flags and corpora of
    ``sys.argv``."""
    import atheris

    with atheris.instrument_imports(include=["voxwire"]):
        from tests.fuzz import targets

    one_input: Callable[[bytes], None]
    if target == "codec":
        one_input, seeds = targets.codec_input, targets.codec_seeds()
    elif target == "sip":
        one_input, seeds = targets.sip_input, targets.sip_seeds()
    elif target == "twcc":
        one_input, seeds = targets.twcc_input, targets.twcc_seeds()
    else:
        raise SystemExit(f"unknown target {target!r}: codec, sip or twcc")
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix=f"voxwire-fuzz-{target}-"))
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i:03}").write_bytes(seed)
        argv.append(str(corpus))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
