require ["date", "fileinto"];
# RFC 5322 3.3: CFWS may stand before and between the parts of a date-time
if date :originalzone :is "date" "iso8601" "2026-11-24T10:05:09+01:00" { fileinto "Commented"; }
# minutes and seconds are two digits (RFC 5322 3.3 time-of-day); Pigeonhole
# refuses 1:2:3 and takes a one-digit hour
if date :is "resent-date" "year" "2026" { fileinto "ShortTime"; }
if date :originalzone :is "x-sent" "time" "01:02:03" { fileinto "ShortHour"; }
