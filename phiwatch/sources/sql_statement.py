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
    tokens = _tokens(statement[:_MAX_SCAN])
    if not tokens:
        return None
    best: tuple[int, str] | None = None
    for at, (token, depth) in enumerate(tokens):
        verb = _ALIASES.get(token, token)
        rank = _RANK.get(verb)
        if verb == "ADD" and [t for t, _ in tokens[at + 1 : at + 3]] == _CLASSIFICATION:
            # ADD SENSITIVITY CLASSIFICATION: a DDL statement whose verb is not CREATE.
            rank, verb = _RANK["ALTER"], "ADD SENSITIVITY CLASSIFICATION"
        if rank is None or depth != 0:
            continue
        before = tokens[at - 1][0] if at else ""
        if before in _CLAUSE_BEFORE:
            continue
        after = [t for t, _ in tokens[at + 1 : at + 8]]
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


def _tokens(text: str) -> list[tuple[str, int]]:
    """Upper-cased words and the punctuation the scanner needs, with their parenthesis
    depth; literals, quoted identifiers and comments become one `IDENT`/nothing."""
    tokens: list[tuple[str, int]] = []
    depth = 0
    at = 0
    end = len(text)
    while at < end:
        char = text[at]
        if char.isspace():
            at += 1
        elif char == "-" and text.startswith("--", at):
            newline = text.find("\n", at)
            at = end if newline < 0 else newline + 1
        elif char == "/" and text.startswith("/*", at):
            at = _skip_block_comment(text, at)
        elif char == "'" or (char in "Nn" and text.startswith("'", at + 1)):
            at = _skip_quoted(text, at + (char != "'"), "'")
            tokens.append(("LITERAL", depth))
        elif char == '"':
            start = at
            at = _skip_quoted(text, at, '"')
            tokens.append((_quoted_name(text[start + 1 : at - 1]), depth))
        elif char == "[":
            start = at
            at = _skip_quoted(text, at, "]")
            tokens.append((_quoted_name(text[start + 1 : at - 1]), depth))
        elif char == "(":
            depth += 1
            at += 1
        elif char == ")":
            depth = max(0, depth - 1)
            at += 1
        elif char in ",;.=":
            tokens.append((char, depth))
            at += 1
        elif char.isalnum() or char in "_@#$":
            start = at
            while at < end and (text[at].isalnum() or text[at] in "_@#$"):
                at += 1
            tokens.append((text[start:at].upper(), depth))
        else:
            at += 1
    return tokens


def _skip_block_comment(text: str, at: int) -> int:
    # T-SQL block comments nest.
    nesting = 0
    end = len(text)
    while at < end:
        if text.startswith("/*", at):
            nesting += 1
            at += 2
        elif text.startswith("*/", at):
            nesting -= 1
            at += 2
            if nesting == 0:
                return at
        else:
            at += 1
    return end


def _quoted_name(name: str) -> str:
    """A quoted identifier as a token: its upper-cased name only when it is one of the schemas
    or procedures the vocabulary names (`[sys].[sp_set_firewall_rule]`), else `IDENT`."""
    upper = name.upper()
    return upper if upper in _SCHEMAS or upper in _PROCEDURES else "IDENT"


def _skip_quoted(text: str, at: int, closing: str) -> int:
    """Past a literal or quoted identifier starting at `at`; a doubled closing character is
    an escaped one. An unterminated one runs to the end (a truncated statement)."""
    at += 1
    end = len(text)
    while at < end:
        found = text.find(closing, at)
        if found < 0:
            return end
        if text.startswith(closing * 2, found):
            at = found + 2
            continue
        return found + 1
    return end
