"""Text that came from a submission, made safe for where it is shown.

A submission controls its exception messages, its file and folder names and
what it prints. Shown raw, an ANSI escape recolours or erases the terminal,
a carriage return overwrites a line, a newline forges a whole line (``ok
simplified_attention.softmax 5/5``, ``Total: 100/100``), a cell starting with
``=`` becomes a spreadsheet formula, and a name that is not valid UTF-8
cannot even be written to a UTF-8 file. Every such text goes through one of
the functions here before it enters a report: ``printable`` (lines kept),
``one_line`` (reasons and notes), ``spreadsheet_cell`` (CSV) or, for a
student's folder name, ``name_shown``.
"""

from __future__ import annotations

import re
import unicodedata

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-byte ESC sequences.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional
# overrides that make a terminal show text in another order than it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (zero-width), unassigned
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters
# shown as nothing, whatever their category (a combining grapheme joiner, the
# variation selectors, the Hangul fillers), and the blank Braille pattern.
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
              (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
              (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
              (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def _valid(text) -> str:
    """A str that encodes as UTF-8: every surrogate becomes U+FFFD, the escape
    of an undecodable byte and a lone one alike (``"\\ud800"`` in a student's
    message, or in the name of a class of theirs)."""
    return _SURROGATE.sub("\ufffd", str(text))


def printable(text) -> str:
    """``text`` without escape sequences and control characters; newlines and tabs kept."""
    text = _valid(text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


def one_line(text) -> str:
    """``text`` as one printable line: a newline shows as ``\\n``, so it can never start a line of its own."""
    return printable(text).replace("\n", "\\n").replace("\t", " ")


def name_shown(name, separators: str = "") -> str:
    """A student's folder name as one printable line that no other name is shown as.

    ``one_line`` drops escape sequences and turns bytes that are not UTF-8 into
    U+FFFD, so ``xred`` and ``x<ESC>[31mred``, or ``bob<0xff>`` and ``bob<0xfe>``,
    would be one name in grades.csv: one student's row would pass for
    another's. A name that is not already plain is written escaped instead:
    a byte that is not UTF-8 as ``\\xNN``, a control character, an invisible one
    (a zero-width space, a format character, a space other than " ", what
    Unicode says to show as nothing) or a leading ``'`` (which a CSV cell puts
    before ``=x``) as ``\\uNNNN`` (``\\UNNNNNNNN`` above U+FFFF), and
    each of ``separators`` too (where names are listed: ``ann; ben`` is not two
    students), a space at either end, and the combining marks of a name not in
    Unicode's composed form (NFC: macOS writes "José" decomposed), a backslash
    doubled. A plain name has no backslash and an escaped one always has one,
    so two folders never share a shown name.
    Letters that look alike in other scripts are letters, and stay.
    """
    name = str(name)
    decomposed = unicodedata.normalize("NFC", name) != name  # "José" with its accent apart: not the other "José"

    def hidden(at: int, ch: str) -> bool:
        code, category = ord(ch), unicodedata.category(ch)
        return (ch in "\t\n\r" or ch in separators or (at == 0 and ch == "'") or bool(_CONTROL.match(ch))
                or (ch == " " and at in (0, len(name) - 1))  # "ann " is not "ann"
                or (decomposed and category.startswith("M")) or category in _INVISIBLE
                or (category == "Zs" and ch != " ") or any(lo <= code <= hi for lo, hi in _IGNORABLE))

    out = []  # a plain name comes out as it went in
    for at, ch in enumerate(name):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogate escape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif hidden(at, ch):  # fixed width: U+E0001 is not U+E000 and a "1"
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def spreadsheet_cell(text) -> str:
    """A CSV cell that a spreadsheet shows as text: one printable line, and a
    leading ``'`` where the first character would start a formula."""
    cell = one_line(text)
    if _valid(text).startswith(FORMULA_LEADS) or cell.lstrip().startswith(FORMULA_LEADS):
        return "'" + cell
    return cell
