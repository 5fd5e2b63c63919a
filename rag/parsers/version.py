"""The parsers' output version: bump it when any parser changes what it produces."""

PARSER_VERSION = "2"
