# date :count (RFC 5260 with RFC 5231) counts the one field it reads when
# that field holds a date-time: a missing or unreadable one is 0, not false.
require ["date", "relational", "index", "fileinto"];
if date :count "eq" "date" "hour" "1" { fileinto "date-one"; }
if date :count "eq" "x-missing" "hour" "0" { fileinto "missing-zero"; }
if date :count "eq" "subject" "hour" "0" { fileinto "not-a-date-zero"; }
if date :count "eq" "received" "hour" "1" { fileinto "received-one"; }
if date :count "eq" :index 4 "received" "hour" "0" { fileinto "beyond-zero"; }
if date :count "ne" :index 3 :last "received" "hour" "0" { fileinto "last-three"; }
