require ["variables", "fileinto"];
if header :matches "subject" "I**you" { fileinto "Stars"; }
if header :matches "subject" "*?" { fileinto "AnyOne"; }
