# A flag that is no IMAP flag (RFC 5232 section 3; RFC 3501 section 9: a
# system flag other than the five, a keyword that is no atom) is dropped by
# setflag and addflag, so hasflag never sees it; hasflag reads a variable's
# flags the same way.  :flags drops only such system flags: a keyword that
# is no atom stays in the plan (and is refused where it would be stored).
require ["imap4flags", "fileinto", "variables", "relational"];
setflag ["\\", "\\Foo", "\\Recent", "a(b", "a%b", "x]y", "\\Seen"];
addflag "$Junk \\Bar ok a*b";
if hasflag :count "eq" "3" { fileinto "three-flags"; }
if hasflag :matches ["*(*", "*%*", "*]*", "*\\**"] { fileinto "saw-non-atom"; }
set "v" "";
addflag "v" ["\\Recent", "a{b", "fine"];
if string :is "${v}" "fine" { fileinto "variable-fine"; }
set "w" "\\Recent a)b ok";
if hasflag :count "eq" "w" "1" { fileinto "variable-one-flag"; }
keep;
fileinto :flags ["\\", "\\Foo", "\\Recent", "kept", "a(b", "\\Draft"] "Flagged";
