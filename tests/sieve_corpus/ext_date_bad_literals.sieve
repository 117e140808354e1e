# A date-part and a :zone Pigeonhole warns about when it compiles the
# script, and runs it anyway: the test with the part is false, the zone is
# the local one.  A script ManageSieve took must not stop filtering.
require ["date", "fileinto", "mailbox"];
if date :is "date" "yearx" "2026" { fileinto :create "Never"; }
if currentdate :zone "+2400" :matches "year" "*" { fileinto :create "Zoned"; }
fileinto :create "After";
