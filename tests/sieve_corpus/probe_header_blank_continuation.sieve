require "fileinto";
# As Pigeonhole reads a value: a continuation line of only white space adds
# nothing, and spaces and tabs at its end are dropped, also those an
# encoded-word decodes to
if header :is "subject" "Beep" { fileinto "Subject"; }
if header :is "x-blank" "" { fileinto "Blank"; }
if header :is "x-padded" "spaces" { fileinto "Padded"; }
if header :is "x-folded" "two" { fileinto "Folded"; }
if header :is "x-encoded" "x" { fileinto "Encoded"; }
