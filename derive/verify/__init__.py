"""Stage 7: generated code against what we did not generate: hand-written loops, finite differences,
SymPy; and the self-check every module passes before it is written."""
