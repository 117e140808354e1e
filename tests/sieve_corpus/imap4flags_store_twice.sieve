# A second store into one folder carries the flags of the later store, as
# Pigeonhole's flags side effect merges them (the message lands there once;
# RFC 5228 section 2.10.3), :flags or the internal variable alike.
require ["imap4flags", "fileinto"];
keep :flags "\\Seen";
keep :flags "ok";
fileinto :flags "\\Seen" "A";
fileinto "A";
addflag "\\Flagged";
fileinto "B";
removeflag "\\Flagged";
addflag "later";
fileinto "B";
addflag "\\Answered";
fileinto :flags "\\Draft" "C";
fileinto "C";
