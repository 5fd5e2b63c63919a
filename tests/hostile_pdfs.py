"""Hostile PDFs made from raw bytes, small on disk: a decompression bomb, thousands of pages,
millions of characters on one page, deeply nested objects, a non-PDF named .pdf, a truncated
file. Used by tests/test_hostile_pdfs.py (and the load tests, which upload them)."""

from __future__ import annotations

import zlib
from pathlib import Path

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
WORDS = b"lattice prism vector harbor meadow signal quartz ember delta fjord glacier orbit "


def pdf_bytes(objects: list[bytes]) -> bytes:
    """A PDF of numbered object bodies (object 1 is the catalog) with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes, filters: str = "") -> bytes:
    f = f" /Filter {filters}" if filters else ""
    return b"<< /Length %d%s >>\nstream\n" % (len(data), f.encode()) + data + b"\nendstream"


def text_ops(lines: list[bytes]) -> bytes:
    return b"BT /F1 10 Tf 72 720 Td 12 TL " + b" ".join(b"(%s) '" % ln for ln in lines) + b" ET"


def document(extra: list[bytes], pages: int = 1, contents: int = 4) -> bytes:
    """Catalog, page tree, font, `extra` objects (4...), then `pages` pages drawing object
    `contents`."""
    first = 4 + len(extra)
    kids = b" ".join(b"%d 0 R" % (first + i) for i in range(pages))
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages), FONT, *extra]
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % contents)
    return pdf_bytes(objs + [page] * pages)


def bomb(decompressed_mb: int = 2048) -> bytes:
    """A page whose content stream inflates to `decompressed_mb` MiB of spaces: deflated twice,
    a few KB on disk. The inner stream repeats one byte-aligned deflate segment (a full flush
    resets the window, so copies can follow each other), so making it costs no compression."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = text_ops([b"Decompression Bomb: A Paper That Inflates"]) + b"\n"
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    spaces = b" " * (1 << 20)
    segment = deflate.compress(spaces) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler = zlib.adler32(head)
    for _ in range(decompressed_mb):
        adler = zlib.adler32(spaces, adler)
    inner = (b"\x78\xda" + first + segment * decompressed_mb + deflate.flush()
             + adler.to_bytes(4, "big"))
    return document([stream(zlib.compress(inner, 9), "[/FlateDecode /FlateDecode]")])


def many_pages(pages: int = 5000) -> bytes:
    """`pages` pages sharing one content stream of 8 lines (the middle ones survive running
    header removal)."""
    line = b"A page of the five thousand page paper about lattice encoders: the prism"
    return document([stream(text_ops([line] * 8))], pages=pages)


def huge_page(chars: int = 3_000_000) -> bytes:
    """One page drawing `chars` characters (compressed: a few KB)."""
    line = WORDS * 2
    return document([stream(zlib.compress(text_ops([line] * (chars // len(line))), 9),
                            "/FlateDecode")])


def nested(depth: int = 200_000) -> bytes:
    """A readable page plus an object holding arrays nested `depth` deep."""
    return document([stream(text_ops([b"A Paper With Deeply Nested Objects"])),
                     b"<< /Deep " + b"[" * depth + b"]" * depth + b" >>"])


def write_all(folder: Path, *, huge_chars: int = 3_000_000, real: Path | None = None
              ) -> dict[str, Path]:
    """The synthetic hostile files in `folder`, by kind. `real`: a real PDF to truncate."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "bomb": bomb(),
        "pages-5000": many_pages(),
        "huge-page": huge_page(huge_chars),
        "nested": nested(),
        "not-a-pdf": b"PK\x03\x04\x14\x00 a zip archive renamed .pdf\x00\x01\x02" * 40,
        "truncated": (real.read_bytes()[: real.stat().st_size // 3] if real
                      else many_pages(20)[:2000]),
    }
    paths = {}
    for kind, data in made.items():
        paths[kind] = folder / f"{kind}.pdf"
        paths[kind].write_bytes(data)
    return paths
