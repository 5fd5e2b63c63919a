"""The parsers' output version: bump it when any parser changes what it produces (3: a PDF
page's small print, footnotes and captions, follows its body text; 4: a PDF's arXiv stamp gives
the paper's URL)."""

PARSER_VERSION = "4"
