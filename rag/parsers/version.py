"""The parsers' output version: bump it when any parser changes what it produces (3: a PDF
page's small print, footnotes and captions, follows its body text)."""

PARSER_VERSION = "3"
