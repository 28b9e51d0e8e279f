"""Asking for a transfer code, with tab completion of the code words (readline).

``peerpy receive`` without a code prompts for it as magic-wormhole does:
``Enter the code: 7-pur<TAB>`` completes to ``7-purple-``.  Completion needs
the standard library's :mod:`readline` (absent on Windows: the prompt then
works without completion) and a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..transfer.auth import Code, parse_code
from ..transfer.errors import BadCodeError, TransferUsageError
from ..transfer.words import WORDS

__all__ = ["check_code", "complete_code", "prompt_code"]

PROMPT = "Enter the code (Tab completes the words): "


def complete_code(text: str) -> list[str]:
    """Completions of a partly typed code: ``7-pur`` -> ``["7-purple-"]``.

    The nameplate (the number) is left to the person; each word completes to
    the words that start with what is typed, followed by a ``-``.
    """
    head, sep, last = text.rpartition("-")
    if not sep or not head:
        return []
    prefix = head + sep
    return [f"{prefix}{word}-" for word in WORDS if word.startswith(last.lower())]


def check_code(text: str) -> Code:
    """Parse ``text``; refuse a code of list words with one typed only in part (half-typed).

    The sender gives each code one try, so ``7-purple-sau`` (Tab not pressed,
    or Enter too early) would end the transfer on both sides: it is caught
    here, before anything is sent.  A code with a word that starts no list
    word is a chosen one (``send --code 7-no-thanks``) and is left to the sender.
    """
    code = parse_code(text)
    starts = {word: [w for w in WORDS if w.startswith(word)] for word in code.words}
    if not all(starts.values()):  # a word of no list word's: a chosen code (send --code)
        return code
    for word, completions in starts.items():
        if word not in WORDS:
            shown = " or ".join(completions[:3]) + (" or ..." if len(completions) > 3 else "")
            raise BadCodeError(
                f"{text!r} looks half-typed: {word!r} is the start of {shown}; type the "
                "whole code (nothing was sent: the sender's one try is not used up)"
            )
    return code


def _completer(text: str, state: int) -> str | None:
    import readline

    matches = complete_code(readline.get_line_buffer()[: readline.get_endidx()])
    # readline replaces only the current "word": hand back its part of each match.
    start = readline.get_begidx()
    options = [match[start:] for match in matches]
    return options[state] if state < len(options) else None


def prompt_code(read: Callable[[str], str] = input) -> str:
    """Ask for the code on the terminal; return it stripped.

    Raise :class:`TransferUsageError` when standard input is not a terminal
    (give the code as an argument then) or ends without a code.
    """
    if read is input and not sys.stdin.isatty():
        raise TransferUsageError(
            "no code given and standard input is not a terminal: "
            "pass the code, as in `peerpy receive 7-purple-sausage`"
        )
    if read is input:
        try:
            import readline
        except ImportError:  # pragma: no cover - Windows
            pass
        else:
            readline.set_completer_delims(" \t\n")
            readline.set_completer(_completer)
            readline.parse_and_bind("tab: complete")
    try:
        code = read(PROMPT).strip().rstrip("-")  # completion leaves a trailing -
    except EOFError:
        code = ""
    if not code:
        raise TransferUsageError("no code entered")
    return code
