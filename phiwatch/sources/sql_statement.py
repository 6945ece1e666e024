"""The kind of a T-SQL batch, from a fixed vocabulary: the only thing of a SQL audit
statement that leaves the archive.

A statement names patients (`SELECT * FROM patients WHERE mrn = 'MRN123'`), so nothing of
its text is copied: the scanner reads keywords outside string literals, quoted identifiers
and comments, and the kind it returns is built only from the constants below (`SELECT`,
`DROP TABLE`, `ALTER ROLE ADD MEMBER`, `EXEC sp_set_firewall_rule`, `OTHER`).

A batch can hold several statements and T-SQL needs no `;` between them, so the scanner does
not split statements: it takes every statement verb at parenthesis depth 0 and keeps the most
significant one (`SELECT 1; DROP TABLE x` is a `DROP TABLE`; `INSERT ... SELECT` an
`INSERT`). Verbs inside parentheses are sub-queries or hints (`OPTION (MERGE JOIN)`), and
`ON DELETE`/`ON UPDATE`, `FOR INSERT, UPDATE` are clauses, not statements.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Most significant first: a change to who may do what, or a removal, outranks a read.
_PRIORITY = (
    "DROP",
    "GRANT",
    "DENY",
    "REVOKE",
    "ALTER",
    "CREATE",
    "TRUNCATE",
    "DELETE",
    "UPDATE",
    "MERGE",
    "INSERT",
    "EXEC",
    "SELECT",
)
_RANK = {verb: at for at, verb in enumerate(_PRIORITY)}
_CLASSIFICATION = ["SENSITIVITY", "CLASSIFICATION"]
_ALIASES = {"EXECUTE": "EXEC"}
# A verb after one of these is a clause of another statement: ON DELETE CASCADE, a trigger's
# FOR INSERT, UPDATE, MERGE's WHEN MATCHED THEN UPDATE, WITH GRANT OPTION.
_CLAUSE_BEFORE = {"ON", "FOR", "AFTER", "OF", "INSTEAD", ",", "OR", "WITH", "TO", "THEN"}
# What follows DROP inside ALTER TABLE: not a DROP statement.
_NOT_DROP_STATEMENT = {"COLUMN", "CONSTRAINT", "PERIOD", "MEMBER", "SIGNATURE", "FILE"}

# Object classes named after CREATE/ALTER/DROP, longest first (they are matched as prefixes
# of the keyword sequence that follows the verb).
_OBJECT_CLASSES: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(words.split())
            for words in (
                "TABLE",
                "VIEW",
                "PROCEDURE",
                "PROC",
                "FUNCTION",
                "TRIGGER",
                "INDEX",
                "SCHEMA",
                "DATABASE",
                "DATABASE AUDIT SPECIFICATION",
                "DATABASE SCOPED CREDENTIAL",
                "SERVER AUDIT",
                "SERVER AUDIT SPECIFICATION",
                "SERVER ROLE",
                "ROLE",
                "APPLICATION ROLE",
                "USER",
                "LOGIN",
                "CREDENTIAL",
                "CERTIFICATE",
                "MASTER KEY",
                "SYMMETRIC KEY",
                "ASYMMETRIC KEY",
                "SENSITIVITY CLASSIFICATION",
                "SECURITY POLICY",
                "EXTERNAL DATA SOURCE",
                "EXTERNAL TABLE",
                "SYNONYM",
                "SEQUENCE",
                "TYPE",
                "AUTHORIZATION",
            )
        ),
        key=len,
        reverse=True,
    )
)
_CANONICAL_CLASS: dict[tuple[str, ...], tuple[str, ...]] = {("PROC",): ("PROCEDURE",)}
# System procedures worth naming (security and exfiltration relevant, next-wave.md §1);
# any other procedure is just `EXEC`.
_PROCEDURES = {
    name.upper(): name
    for name in (
        "sp_addrolemember",
        "sp_droprolemember",
        "sp_addsrvrolemember",
        "sp_dropsrvrolemember",
        "sp_addlogin",
        "sp_adduser",
        "sp_grantdbaccess",
        "sp_change_users_login",
        "sp_set_firewall_rule",
        "sp_set_database_firewall_rule",
        "sp_delete_firewall_rule",
        "sp_delete_database_firewall_rule",
        "sp_configure",
        "sp_executesql",
        "sp_OACreate",
        "sp_OAMethod",
        "sp_addextendedproc",
        "sp_send_dbmail",
        "sp_invoke_external_rest_endpoint",
        "xp_cmdshell",
        "xp_dirtree",
        "xp_fileexist",
    )
}
_SCHEMAS = {"SYS", "DBO", "MASTER", "MSDB"}

READ_KINDS = frozenset({"SELECT"})
WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE"})

# Never scan more than this: a statement is at most 4,000 characters in the audit; a forged
# record must not cost more.
_MAX_SCAN = 16_384


def is_read_kind(kind: str) -> bool:
    return kind in READ_KINDS


def is_write_kind(kind: str) -> bool:
    return kind.split(" ", 1)[0] in WRITE_VERBS


def statement_kind(statement: str) -> str | None:
    """The batch's kind; None for an empty statement, `OTHER` when no verb is known
    (`SET`, `DECLARE`, `USE`, `BEGIN TRAN`, garbage)."""
    # Applications send the same statements again and again (parameterised queries, the
    # empty statement of a login): a short one is classified once.
    if len(statement) <= _MAX_CACHED_CHARS:
        return _kind_cached(statement)
    return _kind(statement)


def _kind(statement: str) -> str | None:
    code = _masked(statement[:_MAX_SCAN]).upper()
    if not _ANY_TOKEN.search(code):
        return None
    best: tuple[int, str] | None = None
    depth = 0
    counted = 0
    # Verbs are found by one search over the masked text (in C); only around each verb is
    # any Python work done: a 4,000-character SELECT list costs almost nothing.
    for match in _VERB.finditer(code):
        start, end = match.span()
        segment = code[counted:start]
        depth = max(0, depth + segment.count("(") - segment.count(")"))
        counted = start
        verb = _ALIASES.get(match.group(), match.group())
        after = _FOLLOWING.findall(code, end, end + 200)[:7]
        rank = _RANK.get(verb)
        if verb == "ADD":
            if after[:2] != _CLASSIFICATION:
                continue
            # ADD SENSITIVITY CLASSIFICATION: a DDL statement whose verb is not CREATE.
            rank, verb = _RANK["ALTER"], "ADD SENSITIVITY CLASSIFICATION"
        if rank is None or depth != 0:
            continue
        before = _PREVIOUS.search(code, max(0, start - 64), start)
        if before and before.group(1) in _CLAUSE_BEFORE:
            continue
        if verb == "DROP" and after[:1] and after[0] in _NOT_DROP_STATEMENT:
            continue
        if best is None or rank < best[0]:
            best = (rank, _describe(verb, after))
    return best[1] if best else "OTHER"


def _describe(verb: str, after: list[str]) -> str:
    if verb in {"CREATE", "ALTER", "DROP"}:
        words = after
        if verb == "CREATE" and words[:2] in (["OR", "ALTER"],):
            words = words[2:]
        if words[:1] in (["UNIQUE"], ["CLUSTERED"], ["NONCLUSTERED"]):
            words = [w for w in words if w not in {"UNIQUE", "CLUSTERED", "NONCLUSTERED"}]
        for object_class in _OBJECT_CLASSES:
            if tuple(words[: len(object_class)]) == object_class:
                name = " ".join(_CANONICAL_CLASS.get(object_class, object_class))
                if verb == "ALTER" and name in {"ROLE", "SERVER ROLE"}:
                    member = _role_member_change(words[len(object_class) :])
                    if member:
                        return f"ALTER {name} {member}"
                return f"{verb} {name}"
        return verb
    if verb == "EXEC":
        procedure = _procedure(after)
        return f"EXEC {procedure}" if procedure else "EXEC"
    return verb


def _role_member_change(words: list[str]) -> str | None:
    # ALTER ROLE <name> ADD MEMBER <name>: the role's name is one token (a quoted or
    # bracketed one is a single `IDENT` token); it is skipped, never kept.
    for at, word in enumerate(words[:4]):
        if word in {"ADD", "DROP"} and words[at + 1 : at + 2] == ["MEMBER"]:
            return f"{word} MEMBER"
    return None


def _procedure(after: list[str]) -> str | None:
    words = list(after)
    if words[:1] and words[0].startswith("@"):  # EXEC @rc = proc
        words = words[2:] if words[1:2] == ["="] else words[1:]
    # sys.sp_x, master.dbo.xp_x: schema names and the dots between them.
    while len(words) >= 2 and (words[0] in _SCHEMAS or words[0] == "."):
        words = words[1:]
    if words[:1] == ["."]:
        words = words[1:]
    return _PROCEDURES.get(words[0]) if words else None


# Where a literal, a quoted identifier or a comment begins.
# A character class, which the engine scans fastest; `-` and `/` that start no comment
# are passed over in the loop.
_SPECIAL = re.compile(r"[-/'\"\[]")
_LITERAL = re.compile(r"'[^']*(?:''[^']*)*'?")
_DQUOTED = re.compile(r'"[^"]*(?:""[^"]*)*"?')
_BRACKETED = re.compile(r"\[[^\]]*(?:\]\][^\]]*)*\]?")
_BLOCK_EDGE = re.compile(r"/\*|\*/")
_WORD = r"[\w@#$]"
_VERB = re.compile(
    rf"(?<!{_WORD})(?=[SIUDMTCAGRE])(?:SELECT|INSERT|UPDATE|DELETE|MERGE|TRUNCATE|CREATE|ALTER|DROP|GRANT|DENY"
    rf"|REVOKE|EXECUTE|EXEC|ADD)(?!{_WORD})"
)
_FOLLOWING = re.compile(rf"{_WORD}+|[,;.=]")
_PREVIOUS = re.compile(rf"({_WORD}+|[,;.=()])\s*$")
_ANY_TOKEN = re.compile(rf"{_WORD}|[,;.=]")
_WORD_END = re.compile(rf"{_WORD}$")


def _masked(text: str) -> str:
    """`text` with every literal as ` LITERAL `, every quoted identifier as ` IDENT ` (or its
    name when the vocabulary knows it) and every comment as a space: what remains is
    keywords, names and punctuation. The loop runs once per literal or comment, not per
    character."""
    if not _SPECIAL.search(text):
        return text
    parts: list[str] = []
    at = 0
    end = len(text)
    while at < end:
        special = _SPECIAL.search(text, at)
        if special is None:
            parts.append(text[at:])
            break
        begin = special.start()
        opening = text[begin : begin + 2]
        if opening[0] in "-/" and opening not in ("--", "/*"):
            parts.append(text[at : begin + 1])
            at = begin + 1
            continue
        parts.append(text[at:begin])
        if opening == "--":
            newline = text.find("\n", special.end())
            at = end if newline < 0 else newline + 1
            parts.append(" ")
        elif opening == "/*":
            at = _skip_block_comment(text, special.start())
            parts.append(" ")
        elif opening[0] == "'":
            # N'...' is a literal too: the N just appended is part of it.
            if parts[-1][-1:] in ("N", "n") and not _WORD_END.search(parts[-1][:-1]):
                parts[-1] = parts[-1][:-1]
            literal = _LITERAL.match(text, begin)
            at = literal.end() if literal else end
            parts.append(" LITERAL ")
        else:
            pattern = _DQUOTED if opening == '"' else _BRACKETED
            quoted = pattern.match(text, begin)
            at = quoted.end() if quoted else end
            parts.append(f" {_quoted_name(text[begin + 1 : at - 1])} ")
    return "".join(parts)


def _quoted_name(name: str) -> str:
    """A quoted identifier as a token: its upper-cased name only when it is one of the schemas
    or procedures the vocabulary names (`[sys].[sp_set_firewall_rule]`), else `IDENT`."""
    upper = name.upper()
    return upper if upper in _SCHEMAS or upper in _PROCEDURES else "IDENT"


def _skip_block_comment(text: str, at: int) -> int:
    """Past the block comment starting at `at` (T-SQL block comments nest); an unterminated
    one runs to the end (a truncated statement)."""
    nesting = 0
    for edge in _BLOCK_EDGE.finditer(text, at):
        nesting += 1 if edge.group() == "/*" else -1
        if nesting == 0:
            return edge.end()
    return len(text)


_MAX_CACHED_CHARS = 4096
_kind_cached = lru_cache(maxsize=4096)(_kind)
