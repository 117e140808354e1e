require "fileinto";
# RFC 5228 section 2.7.1: "?" matches exactly one character, so "?a*"
# cannot match "I have a present for you" (its second character is " ").
if header :matches "subject" "?a*" { fileinto "Wrong"; }
