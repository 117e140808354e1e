require "fileinto";
if header :is "subject" "Café und Kuchen am Sonntag" { fileinto "Joined"; }
if header :contains "from" "Jörg" { fileinto "Joerg"; }
