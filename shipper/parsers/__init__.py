"""Fluent Bit parsers: [PARSER] definitions, Parsers_File, the regex/json/logfmt/ltsv formats."""
