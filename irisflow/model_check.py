"""A model version's checks, run in a short-lived process of their own.

Loading a version means importing scikit-learn and skops (about 100 MB that stay resident) and
unpacking the estimator. A gateway must know that a version loads before it reports it live,
but never scores with it, so it runs :func:`irisflow.registry.load_update` here, in a child
process that exits when the answer is known: the gateway keeps its memory and its event loop,
and what it learns is the same (checksum, zip limits, allow-list, contract, smoke prediction).

    python -m irisflow.model_check < update.json     # exit 0: loads; 1: refused (stderr says why)
"""

from __future__ import annotations

import asyncio
import sys

from irisflow.errors import ArtifactError
from irisflow.schemas import ModelUpdate
from irisflow.settings import ArtifactSettings

__all__ = ["check_elsewhere", "main"]

_REFUSED = 1
_TIMEOUT_SECONDS = 300.0


async def check_elsewhere(
    update: ModelUpdate, limits: ArtifactSettings, *, timeout: float = _TIMEOUT_SECONDS
) -> None:
    """Return if ``update`` passes every check a worker applies; :class:`ArtifactError` if not."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "irisflow.model_check",
        limits.model_dump_json(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(child.communicate(update.to_bytes()), timeout)
    except TimeoutError as exc:
        child.kill()
        await child.wait()
        raise ArtifactError(f"checking version {update.version} took over {timeout:g} s") from exc
    if child.returncode == 0:
        return
    reason = stderr.decode(errors="replace").strip().splitlines()
    detail = reason[-1] if reason else f"the check exited with code {child.returncode}"
    raise ArtifactError(detail)


def main() -> None:
    """Read one ModelUpdate (JSON) from stdin; exit 0 if it loads, 1 with the reason if not."""
    from irisflow.registry import load_update

    limits = ArtifactSettings.model_validate_json(sys.argv[1]) if len(sys.argv) > 1 else None
    try:
        update = ModelUpdate.from_bytes(sys.stdin.buffer.read())
        load_update(update, limits or ArtifactSettings())
    except Exception as exc:  # the reason is the whole answer: one line for the parent's log
        print(str(exc).replace("\n", " "), file=sys.stderr)
        sys.exit(_REFUSED)


if __name__ == "__main__":
    main()
