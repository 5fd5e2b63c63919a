"""A hand-kept NeurIPS 2020 reading list mixing several copy-pasted entry formats.

Sections are '### ' headings ("NeurIPS'20 Tutorials", "... Oral", "... Spotlight", "Other
papers"). Inside them an entry starts with one of:

* ``Tutorial: (Track1) Title`` -- a tutorial (kind "tutorial"), abstract and URL follow;
* ``2 - Oral: Title`` / ``6 - Spotlight: Title`` -- a schedule entry; its label is its section;
* ``[Title](url)`` -- a Markdown link;
* a bare title line directly followed by an author line.

After the title come, in any order: an author line ("A (Org) · B (Org)" or "A, B, C"), a
"Link: url" or bare URL, and abstract or note lines. Schedule noise (weekday names, "22:15 –
22:30 CST", "12:25") is dropped. One record per entry: authors with affiliations stripped, url,
section, and a text of "Authors: <the author line as written>" followed by the abstract and
notes. Lines that belong to no entry are kept in the entry before them. Duplicate entries (the
same talk listed twice) stay separate records, as in the document. Venue and year: NeurIPS, from
the section headings ("NeurIPS'20"), defaulting to 2020.
"""

from __future__ import annotations

import re

from rag.models import Paper
from rag.parsers.common import Draft, finish, fold, plain, split_authors

VENUE, DEFAULT_YEAR = "NeurIPS", 2020
_HEADING = re.compile(r"^#{2,4}\s+(.+)$")
_TUTORIAL = re.compile(r"^Tutorial:\s*(?:\((Track\s*\d+)\)\s*)?(.+)$", re.IGNORECASE)
_SCHEDULED = re.compile(r"^\d+\s*-\s*(Oral|Spotlight|Poster|Tutorial|Invited Talk):\s*(.+)$")
_MD_LINK = re.compile(r"^\[([^\]]+)\]\((\S+?)\)\s*$")
_LINK_LINE = re.compile(r"^(?:Link:\s*)?(https?://\S+)$")
_TIME = re.compile(r"^(?:\d{1,2}:\d{2}(?:\s*[–-]\s*\d{1,2}:\d{2})?(?:\s*[A-Z]{2,4})?"
                   r"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\w*(?:,.*@.*)?)$")
_YEAR = re.compile(r"NeurIPS\s*'(\d{2})\b|NeurIPS\s*(\d{4})")
_PARTICLES = {"van", "de", "der", "von", "di", "da", "del", "le", "la", "du", "al", "den", "y"}


def detect(text: str) -> bool:
    head = text[:3000]
    return bool(re.search(r"^#{2,4}\s+NeurIPS\s*'?\d{2}", head, re.MULTILINE)) and bool(
        re.search(r"^(Tutorial:|\d+\s*-\s*(Oral|Spotlight):)", text, re.MULTILINE)
    )


def parse(text: str, source: str) -> list[Paper]:
    year = _year(text)
    lines = [ln.strip() for ln in text.split("\n")]
    drafts: list[Draft] = []
    section: str | None = None
    fresh = True  # at the start of a block: a bare title line may open an entry here
    for i, line in enumerate(lines):
        if not line:
            fresh = True
        elif heading := _HEADING.match(line):
            section, fresh = _section_name(heading.group(1)), True
        elif not _TIME.match(line):
            entry = _entry_start(line, lines, i, fresh)
            if entry:
                entry.section = entry.section or section
                drafts.append(entry)
            else:
                _add_line(drafts, line, section)
            fresh = False
    for d in drafts:
        d.venue, d.year = VENUE, year
        d.text = "\n".join(d.lines)
    return finish(drafts, source)


def _year(text: str) -> int:
    m = _YEAR.search(text)
    if not m:
        return DEFAULT_YEAR
    return 2000 + int(m.group(1)) if m.group(1) else int(m.group(2))


def _section_name(heading: str) -> str:
    name = re.sub(r"^NeurIPS\s*'?\d{2,4}\s*", "", plain(heading))
    name = re.sub(r"\s*\([^)]*\)\s*$", "", name)
    return name.strip() or plain(heading)


def _entry_start(line: str, lines: list[str], i: int, fresh: bool) -> Draft | None:
    """A new entry when `line` opens one, else None."""
    if m := _TUTORIAL.match(line):
        return Draft(title=m.group(2), kind="tutorial", section="Tutorials")
    if m := _SCHEDULED.match(line):
        kind = "tutorial" if m.group(1) == "Tutorial" else "paper"
        return Draft(title=m.group(2), kind=kind, section=m.group(1))
    if m := _MD_LINK.match(line):
        return Draft(title=m.group(1), url=m.group(2))
    nxt = _next_content(lines, i)
    if fresh and nxt and is_author_line(nxt) and not is_author_line(line) and "://" not in line:
        return Draft(title=line)
    return None


def _next_content(lines: list[str], i: int) -> str:
    for line in lines[i + 1:]:
        if line and not _TIME.match(line):
            return line
        if not line:
            return ""
    return ""


def _add_line(drafts: list[Draft], line: str, section: str | None) -> None:
    if not drafts:
        drafts.append(Draft(title=section or "Notes", kind="document", section=section))
    d = drafts[-1]
    link = _LINK_LINE.match(line)
    if link and d.url is None:
        d.url = link.group(1)
    elif not d.authors and not d.lines and is_author_line(line):
        d.authors = split_authors(line)
        d.lines.append(f"Authors: {fold(line)}")
    else:
        d.lines.append(fold(line))


def is_author_line(line: str) -> bool:
    """'A (Org) · B (Org)', 'A, B, C' or 'Name (Org)': every part a short capitalised name."""
    s = plain(line)
    if not s or s.endswith(".") or "://" in s:
        return False
    if " · " in s:
        return True
    names = split_authors(s)
    if len(names) < 2 and "(" not in s:
        return False
    return all(_name_like(n) for n in names)


def _name_like(name: str) -> bool:
    words = name.split()
    if not 1 < len(words) <= 6 or any(ch.isdigit() for ch in name):
        return False
    return all(w[0].isupper() or w.lower() in _PARTICLES for w in words)
