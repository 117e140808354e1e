require ["comparator-i;ascii-numeric", "fileinto", "variables"];
# An empty string starts with no digit: positive infinity, as "abc" is
# (RFC 4790 section 9.1.1).
if string :is :comparator "i;ascii-numeric" "${unset}" "abc" { fileinto "BothInfinite"; }
