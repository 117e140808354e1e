# An included script without imap4flags stores with no flags of its own,
# so the earlier store's flags stay (Pigeonhole adds no flags side effect
# to its keep); one with imap4flags replaces them.
require ["imap4flags", "include", "fileinto"];
keep :flags "\\Seen";
fileinto :flags "\\Flagged" "A";
include :personal "plain_keep_and_fileinto";
fileinto :flags "\\Draft" "B";
include :personal "flags_fileinto";
