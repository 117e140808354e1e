# A header name that no field can have, written out in date and in
# duplicate's :header: Pigeonhole warns when it compiles the script and
# finds no such field when it runs (date counts 0 values, duplicate is
# false).  A script ManageSieve took must not stop filtering.
require ["date", "duplicate", "relational", "fileinto", "mailbox"];
if date :count "eq" "bad name" "year" "0" { fileinto :create "NoDate"; }
if duplicate :header "bad name" { fileinto :create "Seen"; }
fileinto :create "After";
