"""body (RFC 5173): tests on the message body.

:raw sees the body after the header as stored (no decoding); :content
"type" the MIME parts of those types (RFC 5173 section 5.2: "" any,
"text" a major type, "text/html" one type), decoded to UTF-8, where a
multipart contributes only its prologue and epilogue and a message/rfc822
only its header; :text (the default) the text/* parts decoded, text/html
without its markup, as Pigeonhole gives.  The message is read (at most
mimeparts.MAX_MESSAGE_BYTES) only when a body test runs.  As Pigeonhole,
a body test sets no match variables, and each selected part is one value,
which relational :value compares and :count counts (RFC 5231): an empty
body is no :raw value, a multipart's epilogue, when it has one, a value of
its own.  A part whose header no blank line ends (a message of header
fields only) has no body, so no value, as in Pigeonhole.  Unlike
Pigeonhole 0.5.19, a part of a
multipart/digest without Content-Type is a message/rfc822 for :content
(RFC 2046 section 5.1.5).
"""

from ..spec import MATCH, MATCH_DEFAULTS, STRINGS, Spec, tag

CAPABILITIES = ("body",)
COMMANDS = {}
TESTS = {
    "body": Spec("body", {**MATCH, ":raw": tag("transform", "raw"),
                          ":text": tag("transform", "text"),
                          ":content": tag("content", kind=STRINGS)},
                 [("keys", STRINGS)], MATCH_DEFAULTS),
}
TAGS = {}


def check_body(validator, node, built):
    validator.check_comparator(node, built)
    if "content" in built:
        if "transform" in built:
            validator.error(node.line, node.col,
                            f':content conflicts with :{built["transform"]}')
        built["transform"] = "content"
        for kind in built["content"]:
            if validator.constant(kind) and not valid_type(kind):
                validator.error(node.line, node.col, f'body :content "{kind}" is not a '
                                'content type ("", "type" or "type/subtype")')
    built.setdefault("transform", "text")


def valid_type(kind):
    major, slash, minor = kind.partition("/")
    return not slash or (bool(major) and bool(minor) and "/" not in minor)


def test_body(execution, node):
    from ..mimeparts import message_tree

    tree = message_tree(execution)
    values = texts(tree, node["transform"], execution.strings(node.get("content", [])))
    earlier = execution.match_values
    found = execution.matches(node, values, execution.strings(node["keys"]))
    execution.match_values = earlier  # RFC 5173 section 5: no match variables
    return found


def texts(tree, transform, kinds):
    """The strings a body test matches against, one per selected part."""
    if transform == "raw":
        if tree.body():
            yield tree.body().decode("utf-8", "replace")
        return
    for part in tree.walk():
        if not part.has_body:
            continue
        if transform == "text":
            if part.type == "text":
                yield part.text()
        elif any(selects(kind, part) for kind in kinds):
            yield from content(part)


def selects(kind, part):
    kind = kind.lower()
    return kind == "" or kind == part.type or kind == part.content_type


def content(part):
    """RFC 5173 section 5.2: a multipart's prologue and epilogue, a
    message/rfc822's header, any other part's decoded content."""
    if part.type == "multipart":
        yield part.prologue.decode("utf-8", "replace")
        if part.epilogue:
            yield part.epilogue.decode("utf-8", "replace")
    elif part.content_type == "message/rfc822" and part.children:
        yield part.children[0].header_bytes.decode("utf-8", "replace")
    else:
        yield part.decoded()
