"""RFC 2047 encoded-words decoded, without email.header.

email.header imports re, base64 and the email package's charset tables;
this needs binascii alone, imported when a word is decoded.  decode_words()
does the part lda's Sieve header tests use: each "=?charset?B|Q?text?="
decoded in its charset (an RFC 2231 language tag dropped), the white space
between two adjacent encoded-words dropped.  Left out: encoding (Header,
make_header), decode_header's (bytes, charset) pairs, and its errors: a
malformed word, or one in a charset Python does not know, stays as written.
"""


def decode_words(value):
    """RFC 2047: "=?charset?B|Q?text?=" decoded; the white space between two
    adjacent encoded-words goes (section 6.2); a malformed or unknown one
    stays as written."""
    out, i, last_was_word = [], 0, False
    while True:
        start = value.find("=?", i)
        if start < 0:
            out.append(value[i:])
            return "".join(out)
        decoded, end = _encoded_word(value, start)
        if decoded is None:
            out.append(value[i:start + 2])
            i, last_was_word = start + 2, False
            continue
        between = value[i:start]
        if not (last_was_word and between.strip(" \t") == ""):
            out.append(between)
        out.append(decoded)
        i, last_was_word = end, True


def _encoded_word(value, start):
    parts = value[start + 2:].split("?", 3)
    if len(parts) < 4 or not parts[3].startswith("="):
        return None, start
    charset, encoding, payload = parts[0].split("*", 1)[0], parts[1].upper(), parts[2]
    if " " in payload or encoding not in ("B", "Q") or not charset:
        return None, start
    end = start + 2 + len(parts[0]) + len(parts[1]) + len(payload) + 4
    import binascii

    try:
        if encoding == "B":
            data = binascii.a2b_base64(payload + "=" * (-len(payload) % 4))
        else:
            data = binascii.a2b_qp(payload.replace("_", " ").encode("ascii"))
        return data.decode(charset, "replace"), end
    except (LookupError, ValueError, binascii.Error, UnicodeEncodeError):
        return None, start
