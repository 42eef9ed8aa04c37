"""Redaction of what the audit records: secrets in argv and messages replaced by `***`.

Redaction errs on the side of hiding: a long random-looking string is hidden even when it is
only an id, because a key that slipped into argv must never reach the database.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

REDACTED = "***"
DETAIL_MAX_CHARS = 500

# Option and variable names whose values are secrets (matched anywhere in the case-folded
# name). The lookahead lets a position that starts no branch be passed over at once.
_SECRET_NAME = re.compile(
    r"(?=[acpst._-])(?:pass(?:word|wd|phrase)?(?:$|[-_.])|(?:^|[-_.])(?:pwd|auth)(?:$|[-_.])|"
    r"secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|authorization|"
    r"cookie|session[-_]?id|signature)"
)
# Options whose next element is `user:password`.
_USER_OPTIONS = frozenset({"-u", "--user", "--proxy-user"})
_USER_OPTION_MAX_CHARS = max(len(option) for option in _USER_OPTIONS)
# An option name longer than this is not read whole (see _hides_next).
_OPTION_NAME_MAX_CHARS = 4096

# Every pattern below does work in proportion to the text, whatever the text: each repeat is
# possessive (never given back) and can start only where nothing before it could have, so no
# character is read again for each position a match might start from. A scan that would read
# on to the end of the text from every letter, `?` or space took quadratic time.

# `://user:password@`: user and password are single runs, so one pass from each `://` decides;
# the scheme before it is checked by `_has_scheme` (a run that holds a letter).
_USERINFO = re.compile(r"://[^/@\s:]*+:([^/@\s]*+)(?=@)")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# `?name=value` (or `&`, `;`). When a name is not followed by `=`, the second branch takes the
# whole run: a `?` inside it would end at the same place and fail the same way.
_QUERY_PARAM = re.compile(r"[?&;](?:([^=&#;\s]++)=([^&#;\s]*+)|[^=&#;\s]*+)")
_BEARER = re.compile(r"\b(?:bearer|basic)\s++(\S++)", re.IGNORECASE)
_HEADER_NAME = re.compile(r"([A-Za-z0-9_-]++):")
# Runs of characters keys are made of; "/", "." and "=" split paths, names and options. Only
# from the start of a run: a run shorter than a key is then read once, not once per character.
_KEY_MIN_CHARS = 20
_KEY_CHARS_TEXT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_-~"
_KEY_CHARS = frozenset(_KEY_CHARS_TEXT)
_RUN = re.compile(r"(?<![A-Za-z0-9+_\-~])[A-Za-z0-9+_\-~]{20,}+")
# Read on a reversed text: the last run without a "/", "@" or whitespace.
_NOT_A_SEPARATOR = re.compile(r"[^/@\s]*+")
_HEX = frozenset("0123456789abcdefABCDEF")
# Every rule below needs one of these, or 20 characters: most elements skip them all.
_MAYBE_SECRET = re.compile(r"[=:\s]")


def is_secret_name(name: str) -> bool:
    """Whether an option or variable name says its value is a secret."""
    return bool(_SECRET_NAME.search(name.lstrip("-").casefold()))


def looks_random(text: str) -> bool:
    """A long string of key characters with the entropy of a generated secret."""
    n = len(text)
    if n < _KEY_MIN_CHARS:
        return False
    counts = Counter(text)
    if not (any(c.isdigit() for c in counts) and any(c.isalpha() for c in counts)):
        return False
    entropy = -sum(k / n * math.log2(k / n) for k in counts.values())
    if n >= 32 and all(c in _HEX or c == "-" for c in counts):
        return entropy >= 3.0  # hex keys, UUID-shaped ones included
    # Random text of n characters has close to log2(n) bits each; words and names much less.
    # (At 0.85, one random key of 64 characters in five passed for plain text; at 0.8, fewer
    # than one in a hundred from 40 characters up, and hyphenated names still do not.)
    return entropy >= 0.8 * math.log2(min(n, 64))


def redact_element(element: str) -> str:
    """One argv element with what looks secret replaced by `***`."""
    if len(element) < 20 and not _MAYBE_SECRET.search(element):
        return element
    name, sep, _value = element.partition("=")
    if sep and name and not name.startswith(("http:", "https:")) and is_secret_name(name):
        return f"{name}={REDACTED}"
    header = _HEADER_NAME.match(element)
    if header and is_secret_name(header[1]):
        value = element[header.end() :]
        if value and not value.isspace():
            return f"{header[1]}: {REDACTED}"
    text = _mask_url_passwords(element)
    text = _mask_groups(text, _QUERY_PARAM, lambda m: is_secret_name(m[1]) if m[1] else False)
    folded = text.casefold()
    if "bearer" in folded or "basic" in folded:  # a plain search first: the pattern is slower
        text = _mask_groups(text, _BEARER, lambda m: True)
    return _RUN.sub(lambda m: REDACTED if looks_random(m[0]) else m[0], text)


def _mask_url_passwords(text: str) -> str:
    if "://" not in text:
        return text
    return _mask_groups(text, _USERINFO, lambda m: _has_scheme(text, m.start()))


def _has_scheme(text: str, end: int) -> bool:
    """Whether `text[:end]` ends with a URL scheme: a run of scheme characters with a letter.
    (The runs read here end at different `://` and hold no `/`: each character is read once.)"""
    i = end - 1
    while i >= 0 and text[i] in _SCHEME_CHARS:
        if text[i].isalpha():
            return True
        i -= 1
    return False


def _mask_groups(
    text: str, pattern: re.Pattern[str], secret: Callable[[re.Match[str]], bool]
) -> str:
    """`text` with the last group of each match of `pattern` that `secret` accepts replaced."""
    pieces: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        group = match.lastindex
        if group is None or match[group] is None or not secret(match):
            continue
        pieces.append(text[done : match.start(group)])
        pieces.append(REDACTED)
        done = match.end(group)
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """argv as it may be recorded: secret values, and values of secret options, hidden."""
    out: list[str] = []
    previous = ""
    for element in argv:
        # Only an option changes how the next element is read.
        if previous.startswith("-"):
            out.append(redact_after(previous, element))
        else:
            out.append(redact_element(element))
        previous = element
    return out


def redact_after(previous: str | None, element: str) -> str:
    """One argv element redacted, `previous` being the element before it (None for the first):
    the value of a secret option is hidden whole, that of `-u` after the `:`."""
    if previous is not None and previous.startswith("-"):
        if _hides_next(previous):
            return REDACTED
        if len(previous) <= _USER_OPTION_MAX_CHARS and previous in _USER_OPTIONS:
            user, sep, _ = element.partition(":")
            if sep:
                return f"{user}:{REDACTED}"
    return redact_element(element)


def _hides_next(option: str) -> bool:
    """Whether `option` (`--password`, say) takes a secret as the next element. An option
    name too long to read whole is taken for one that does, unless it holds an `=`."""
    head = option[:_OPTION_NAME_MAX_CHARS]
    if "=" in head:
        return False
    return len(head) < len(option) or is_secret_name(head)


def redact_text(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """A message (a denial's reason, say) word by word, cut to `limit` characters."""
    if len(text) > limit * 2:
        text = drop_split_secret(text[: limit * 2], text[limit * 2])
    words = []
    for word in text.split(" "):
        core = word.strip("'\"`,;()[]")
        words.append(word.replace(core, redact_element(core)) if core else word)
    out = " ".join(words)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def drop_split_secret(prefix: str, following: str) -> str:
    """`prefix`, the beginning of a text cut before the character `following`, without the
    part of a secret the cut splits when that part, on its own, would not be recognised: the
    start of a key shorter than a key, or a URL's user and password before the `@` that
    shows them for what they are. (Every other rule judges the part it sees alike.)"""
    if following in _KEY_CHARS and prefix and prefix[-1] in _KEY_CHARS:
        run = len(prefix) - len(prefix.rstrip(_KEY_CHARS_TEXT))
        if run < _KEY_MIN_CHARS:
            prefix = prefix[: len(prefix) - run]
    tail = _NOT_A_SEPARATOR.match(prefix[::-1])
    end = len(prefix) - (tail.end() if tail else 0)
    if prefix.endswith("://", 0, end):
        prefix = prefix[:end]
    return prefix


# `name=value` or `name: value` in free text: the value hidden when the name says it is secret.
_ASSIGNED = re.compile(r"([A-Za-z0-9_.-]++)(?:=|:[ \t]*+)([^\s,;&]++)")


def redact_log(text: str, known: Sequence[str] = ()) -> str:
    """A log line with its secrets hidden and its ids kept (unlike `redact_text`, a long
    random-looking run stays: task ids are that). Hidden: every `known` secret value (the
    server's token, the database password, the llm key...), URL passwords, `bearer`/`basic`
    credentials, and values given under a secret name (`token=…`, `API_KEY: …`, `?key=…`)."""
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if not _MAYBE_SECRET.search(text):
        return text
    text = _mask_url_passwords(text)
    folded = text.casefold()
    if "bearer" in folded or "basic" in folded:
        text = _mask_groups(text, _BEARER, lambda m: True)
    return _mask_groups(text, _ASSIGNED, lambda m: is_secret_name(m[1]))
