require "fileinto";
if header :contains "from" "André" { fileinto "Andre"; }
if address :is "from" "andre@example.fr" { fileinto "Address"; }
if header :contains "x-note" "Grüße" { fileinto "Latin1"; }
