require "fileinto";
# As Pigeonhole unfolds a field (RFC 5322 section 2.2.3): the line break
# goes, the white space of the next line stays, a tab that starts it as a
# space; a filter written against the subject its client shows matches.
if header :is "subject" "[list] a rather long subject    that Outlook folded" {
  fileinto "Subject";
}
if header :contains "subject" "subject that" { fileinto "Collapsed"; }
if header :is "x-tab" "one two" { fileinto "Tab"; }
if header :is "x-trailing" "left   right" { fileinto "Trailing"; }
if header :is "x-crlf" "up   down" { fileinto "Crlf"; }
