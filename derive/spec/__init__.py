"""Stage 1: a .cell file (or a built-in one, in cells/) read into a Cell by the project's own parser."""
