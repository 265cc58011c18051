"""Adobe / Resolve ``.cube`` 3D LUT files: reading, writing and applying them.

A ``.cube`` file holds a uniform N x N x N lattice of output colours. Keywords come
first (``TITLE "..."``, ``LUT_3D_SIZE N``, optionally ``DOMAIN_MIN r g b`` /
``DOMAIN_MAX r g b`` or the older ``LUT_3D_INPUT_RANGE lo hi``), then N^3 lines of three
numbers with **red varying fastest**, then green, then blue. Line ``r + N*g + N*N*b``
is therefore the output colour at lattice point (r, g, b), which makes the table,
reshaped to ``(N, N, N, 3)`` and with the colour axis moved to the front, exactly this
project's LUT layout ``lut[c, b, g, r]``; :func:`ailut_jax.lut_transform` applies it.

Applying a LUT here means what ffmpeg's ``lut3d=...:interp=trilinear``, OBS or
Resolve do: map the input from the domain to ``[0, N-1]``, clamp it to the lattice and
interpolate trilinearly between the 8 surrounding lattice points.

The ``ailut apply-cube`` and ``ailut export-cube`` commands are in :mod:`ailut_jax.cli.cube`;
the export itself (which needs a model) is :mod:`ailut_jax.export_cube`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ailut_jax.ops import lut_transform

MIN_SIZE, MAX_SIZE = 2, 256  # the Adobe Cube LUT specification's limits for LUT_3D_SIZE
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class CubeFormatError(ValueError):
    """A ``.cube`` file is malformed; the message names the file and, where known, the line."""


@dataclasses.dataclass(frozen=True)
class CubeLUT:
    """A 3D LUT read from or written to a ``.cube`` file.

    Attributes:
      table: ``(3, N, N, N)`` float64 output colours, indexed ``[c, b, g, r]`` (the
        project's LUT layout; red is the last, fastest axis as in the file).
      title: the ``TITLE`` string, or None.
      domain_min, domain_max: ``(3,)`` input range per channel R, G, B mapped onto the
        lattice; ``(0, 0, 0)`` and ``(1, 1, 1)`` by default.
    """

    table: np.ndarray
    title: str | None = None
    domain_min: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    domain_max: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(3))

    @property
    def size(self) -> int:
        return self.table.shape[-1]


# --------------------------------------------------------------------------- writing


def _check_table(table) -> np.ndarray:
    table = np.asarray(table, dtype=np.float64)
    n = table.shape[-1] if table.ndim == 4 else 0
    if table.ndim != 4 or table.shape != (3, n, n, n):
        raise ValueError(f"a 3D LUT table must have shape (3, N, N, N), got {table.shape}")
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise ValueError(f".cube LUTs must have {MIN_SIZE} <= N <= {MAX_SIZE}, got N={n}")
    if not np.all(np.isfinite(table)):
        raise ValueError("a 3D LUT table must hold finite values only")
    return table


def format_cube(
    table,
    title: str | None = None,
    domain_min=(0.0, 0.0, 0.0),
    domain_max=(1.0, 1.0, 1.0),
    comments: tuple[str, ...] = (),
    decimals: int = 6,
) -> str:
    """The text of a ``.cube`` file for a ``(3, N, N, N)`` table indexed ``[c, b, g, r]``."""
    table = _check_table(table)
    n = table.shape[-1]
    lines = [f"# {c}" for text in comments for c in text.splitlines()]
    if title is not None:
        # The title is a quoted string on one line: drop what would end it early.
        clean = " ".join(title.replace('"', "'").split())
        lines.append(f'TITLE "{clean}"')
    lines.append(f"LUT_3D_SIZE {n}")
    dmin, dmax = np.asarray(domain_min, np.float64), np.asarray(domain_max, np.float64)
    if dmin.shape != (3,) or dmax.shape != (3,) or np.any(dmin >= dmax):
        raise ValueError(f"domain_min must be below domain_max per channel, got {dmin}, {dmax}")
    lines.append("DOMAIN_MIN " + " ".join(f"{v:.{decimals}f}" for v in dmin))
    lines.append("DOMAIN_MAX " + " ".join(f"{v:.{decimals}f}" for v in dmax))
    # (3, b, g, r) -> rows in file order: r fastest, then g, then b.
    rows = np.moveaxis(table, 0, -1).reshape(-1, 3)
    fmt = f"%.{decimals}f %.{decimals}f %.{decimals}f"
    body = "\n".join(fmt % tuple(row) for row in rows.tolist())
    return "\n".join(lines) + "\n" + body + "\n"


def write_cube(path: str | os.PathLike, table, title: str | None = None, **kwargs) -> None:
    """Write a ``(3, N, N, N)`` ``[c, b, g, r]`` table as a ``.cube`` file (atomically)."""
    path = Path(path)
    text = format_cube(table, title=title, **kwargs)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- reading


def _floats(tokens: list[str], where: str, what: str) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens])
    except ValueError:
        raise CubeFormatError(
            f"{where}: {what} must be numbers, got {' '.join(tokens)!r}"
        ) from None
    if not np.all(np.isfinite(values)):
        raise CubeFormatError(f"{where}: {what} must be finite, got {' '.join(tokens)!r}")
    return values


def parse_cube(text: str, source: str = "<string>") -> CubeLUT:
    """Parse the text of a ``.cube`` file; raises :class:`CubeFormatError` if malformed."""
    size = None
    title = None
    domain_min, domain_max = np.zeros(3), np.ones(3)
    tokens: list[str] = []
    data_lines: list[int] = []  # line number of each data row, for error messages
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        head = line.split(None, 1)[0]
        if _KEYWORD.fullmatch(head):
            if data_lines:
                raise CubeFormatError(f"{where}: keyword {head} after the first data line")
            args = line.split("#", 1)[0].split()[1:] if head != "TITLE" else []
            if head == "TITLE":
                match = re.fullmatch(r'TITLE\s+"([^"]*)"\s*(#.*)?', line)
                if match is None:
                    raise CubeFormatError(f'{where}: expected TITLE "text", got {line!r}')
                title = match.group(1)
            elif head == "LUT_3D_SIZE":
                if len(args) != 1 or not args[0].isdigit():
                    raise CubeFormatError(f"{where}: expected LUT_3D_SIZE N, got {line!r}")
                size = int(args[0])
                if not MIN_SIZE <= size <= MAX_SIZE:
                    raise CubeFormatError(
                        f"{where}: LUT_3D_SIZE must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}"
                    )
            elif head in ("LUT_1D_SIZE", "LUT_1D_INPUT_RANGE"):
                raise CubeFormatError(
                    f"{where}: {head}: this is a 1D LUT (or a 1D shaper); only 3D LUTs "
                    "(LUT_3D_SIZE) are supported"
                )
            elif head in ("DOMAIN_MIN", "DOMAIN_MAX"):
                if len(args) != 3:
                    raise CubeFormatError(f"{where}: expected {head} r g b, got {line!r}")
                values = _floats(args, where, head)
                if head == "DOMAIN_MIN":
                    domain_min = values
                else:
                    domain_max = values
            elif head == "LUT_3D_INPUT_RANGE":
                if len(args) != 2:
                    raise CubeFormatError(f"{where}: expected {head} min max, got {line!r}")
                lo, hi = _floats(args, where, head)
                domain_min, domain_max = np.full(3, lo), np.full(3, hi)
            else:
                raise CubeFormatError(f"{where}: unknown keyword {head!r}")
            continue
        row = line.split("#", 1)[0].split()
        if len(row) != 3:
            raise CubeFormatError(
                f"{where}: a data line must hold 3 numbers (R G B), got {len(row)}: {line!r}"
            )
        tokens.extend(row)
        data_lines.append(lineno)

    if size is None:
        raise CubeFormatError(
            f"{source}: missing LUT_3D_SIZE (not a 3D .cube file, or the header is missing)"
        )
    expected = size**3
    if len(data_lines) != expected:
        raise CubeFormatError(
            f"{source}: LUT_3D_SIZE {size} needs {size}^3 = {expected} data lines, "
            f"found {len(data_lines)}"
        )
    if np.any(domain_min >= domain_max):
        raise CubeFormatError(
            f"{source}: DOMAIN_MIN {domain_min.tolist()} must be below DOMAIN_MAX "
            f"{domain_max.tolist()} in every channel"
        )
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        for i, lineno in enumerate(data_lines):  # find the first offending line
            _floats(tokens[3 * i : 3 * i + 3], f"{source}:{lineno}", "LUT entries")
    table = np.moveaxis(values.reshape(size, size, size, 3), -1, 0)
    return CubeLUT(np.ascontiguousarray(table), title, domain_min, domain_max)


def read_cube(path: str | os.PathLike) -> CubeLUT:
    """Read a ``.cube`` 3D LUT file; raises :class:`CubeFormatError` naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CubeFormatError(f"{path}: not a text file ({exc})") from None
    return parse_cube(text, source=str(path))


# --------------------------------------------------------------------------- applying


def _lattice_coordinates(img, cube: CubeLUT):
    """Input colours mapped from the domain onto ``[0, 1]`` and clamped to the lattice."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim < 3 or img.shape[-1] != 3:
        raise ValueError(f"img must have shape (..., H, W, 3), got {img.shape}")
    unit = (img - cube.domain_min) / (cube.domain_max - cube.domain_min)
    return np.clip(unit, 0.0, 1.0)


def apply_cube_numpy(img, cube: CubeLUT) -> np.ndarray:
    """Trilinear application in float64 numpy: ``(..., H, W, 3)`` in, same shape out.

    The independent reference for :func:`apply_cube`: lattice cell ``floor(x * (N-1))``
    (the last cell for ``x = 1``), fraction ``x * (N-1) - cell``.
    """
    n = cube.size
    scaled = _lattice_coordinates(img, cube) * (n - 1)
    cell = np.clip(np.floor(scaled), 0, n - 2).astype(np.intp)
    frac = scaled - cell
    flat = cube.table.reshape(3, -1)
    out = np.zeros(scaled.shape[:-1] + (3,))
    for db in (0, 1):
        wb = frac[..., 2] if db else 1 - frac[..., 2]
        for dg in (0, 1):
            wg = frac[..., 1] if dg else 1 - frac[..., 1]
            for dr in (0, 1):
                wr = frac[..., 0] if dr else 1 - frac[..., 0]
                index = ((cell[..., 2] + db) * n + cell[..., 1] + dg) * n + cell[..., 0] + dr
                out += np.moveaxis(flat[:, index], 0, -1) * (wr * wg * wb)[..., None]
    return out


def apply_cube(img, cube: CubeLUT, *, dtype=np.float32, impl: str = "auto") -> np.ndarray:
    """Apply a ``.cube`` LUT to ``(..., H, W, 3)`` floats with :func:`ailut_jax.lut_transform`.

    Inputs are mapped from the file's domain to ``[0, 1]`` and clamped, as ffmpeg, OBS
    and Resolve do, so the result never extrapolates. Returns a numpy array of ``dtype``.
    """
    unit = _lattice_coordinates(img, cube).astype(dtype)
    batch = unit.shape[:-3]
    table = np.broadcast_to(cube.table.astype(dtype), batch + cube.table.shape)
    return np.asarray(lut_transform(jnp.asarray(unit), jnp.asarray(table), impl=impl))


def _ffmpeg_filter_path(path: Path) -> str:
    # Inside an ffmpeg filter graph ':' separates options and '\\' and "'" escape; quote
    # the path so that any of them in a directory name survives.
    escaped = str(path).replace("\\", "\\\\").replace("'", "'\\\\\\''").replace(":", "\\:")
    return f"'{escaped}'"


def apply_cube_ffmpeg(cube_path: str | os.PathLike, img_u8: np.ndarray) -> np.ndarray:
    """Apply a ``.cube`` file with ffmpeg's ``lut3d`` filter (trilinear), uint8 RGB in and out.

    Raw ``rgb24`` frames go through pipes, so no image codec or colour-space conversion
    touches the pixels: only the filter does. ffmpeg truncates (does not round) when it
    writes 8-bit output. Raises ``FileNotFoundError`` if ffmpeg is not installed.
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FileNotFoundError("ffmpeg is not installed (Debian/Ubuntu: apt-get install ffmpeg)")
    img_u8 = np.ascontiguousarray(img_u8)
    if img_u8.dtype != np.uint8 or img_u8.ndim != 3 or img_u8.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img_u8.shape} {img_u8.dtype}")
    h, w, _ = img_u8.shape
    cmd = [
        exe, "-v", "error", "-nostdin",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "pipe:0",
        "-vf", f"lut3d=file={_ffmpeg_filter_path(Path(cube_path))}:interp=trilinear",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]  # fmt: skip
    result = subprocess.run(cmd, input=img_u8.tobytes(), capture_output=True, check=False)
    if result.returncode != 0 or len(result.stdout) != img_u8.size:
        raise RuntimeError(
            f"ffmpeg failed (exit {result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return np.frombuffer(result.stdout, np.uint8).reshape(h, w, 3)
