"""Spreadsheet-safe CSV cells (CSV/formula injection, OWASP).

A text cell that starts with ``= + - @`` (or a tab or carriage return) is a formula to Excel and LibreOffice:
an exported note such as ``=HYPERLINK(...)`` would run when an engineer opens the file. Such cells leave with a
leading apostrophe, which spreadsheets show as text; our own CSV import takes it off again, so an export
re-imports as it was. Numbers are not text cells and stay as they are (``-3.5`` is a number).

>>> neutralise("=1+2"), neutralise("-3 psi"), neutralise("W-1"), neutralise("")
("'=1+2", "'-3 psi", 'W-1', '')
>>> restore(neutralise("@SUM(A1)")), restore("'quoted"), restore("plain")
('@SUM(A1)', "'quoted", 'plain')
"""

__all__ = ["neutralise", "restore"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def restore(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_STARTS) else text
